"""Personalization benchmark (issue 16): PseudoSE, purification, contrastive mixtures, distillation.

Protocol: the dev protocol of ``benchmarks/generalist.py`` (the seeded, gender-stratified target speakers,
their test mixtures: ``--n-test`` utterances at -5, 0 and 5 dB with the odd-indexed noise clips). Per target:

* the user's "noisy recordings": the target's utterances that are neither test nor enrollment, then the
  enrollment utterances, up to ``--noisy-seconds``, each mixed with an even-indexed noise clip (the
  generalist's training half: disjoint from the test clips) at an SNR drawn from -5, 0, 5 dB;
* the user's clean speech, ``--amounts`` seconds (0, 3, 10, 30): the first seconds of the enrollment
  (never a test utterance);
* the noise added by the adaptations (``noise=``): the even-indexed clips;
* rows: noisy, RNNoise, the pretrained generalist, the personal SemiSupervisedNMF (fitted on each amount of
  clean speech), PseudoSE with and without purification, self-distillation from the generalist
  (DistilledStudent, teacher = student = generalist), with ``--methods ...,teachers`` the same student distilled
  from teachers that need no clean speech of the user (RNNoise, a zero-shot USM fitted on the developer-set
  speakers that are not targets of the run, the equal-weight ensemble of the generalist and RNNoise; the USM
  itself is a row too), with ``--methods ...,small`` a new student of a quarter
  of the generalist's size distilled from it on the noisy recordings alone, plain fine-tuning and ContrastiveMixtures on each amount
  of clean speech, and with ``--oracle`` the limits: PseudoSE with the noisy recordings' own clean speech as
  targets, and fine-tuning on the test utterances' own clean speech;
* SI-SDRi, PESQ, eSTOI; adaptation seconds per minute of noisy audio on one thread (ContrastiveMixtures: its
  stage 1 is run once per target and its time added to each amount's stage 2).

Run ``OMP_NUM_THREADS=1 python benchmarks/personalize.py --quick`` (2 targets, amounts 0 and 3 s) or
``python benchmarks/personalize.py --speakers 8``. Progress to stderr, tables to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_DATA,
    add_quiet_argument,
    progress,
    check_data,
    ci95,
    derived_seeds,
    format_table,
    machine_info,
    make_out_dir,
    mean,
    parse_speakers,
    read_speakers,
    write_csv,
    write_json,
)
from neural import SNRS, SR, _score, make_task, split_noise, torch  # noqa: E402

import numpy as np  # noqa: E402

import pse_nmf  # noqa: E402


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def user_noisy(data, task, train_noise, seconds, seed):
    """The target's noisy recordings and their clean speech (for the oracle): see the module docstring."""
    files = {Path(f).stem: f for f in pse_nmf.datasets.list_recordings(data / "speech")[task.speaker]}
    clean = [pse_nmf.audio.read_audio(files[u], sr=SR)[0] for u in task.noisy_utterances] + list(task.enrollment)
    clips = [c for k in sorted(train_noise) for c in train_noise[k]]
    rng = np.random.RandomState(seed)
    out, used, total, cache = [], [], 0, {}
    for s in clean:
        if total >= seconds * SR:
            break
        for _ in range(20):
            j = int(rng.randint(len(clips)))
            if j not in cache:
                cache[j] = pse_nmf.audio.read_audio(clips[j], sr=SR)[0]
            try:
                mix, _ = pse_nmf.datasets.mix_at_snr(s, cache[j], SNRS[rng.randint(len(SNRS))], random_state=rng)
            except ValueError:
                continue
            out.append(mix.astype(np.float32))
            used.append(s)
            total += mix.size
            break
    return out, used


def first_seconds(recordings, seconds):
    """The first ``seconds`` of a list of recordings, as one waveform."""
    y = np.concatenate(recordings)
    return y[: int(round(seconds * SR))]


def report(rows, adapt, targets, args):
    """Print the table (SI-SDRi, the paired difference to the generalist, PESQ, eSTOI, adaptation time)."""
    order = list(dict.fromkeys(r["method"] for r in rows))
    gen = {(r["speaker"], r["utterance"], r["snr_db"]): r for r in rows if r["method"] == "pretrained generalist"}
    table = []
    for name in order:
        mr = [r for r in rows if r["method"] == name]
        d = [r["si_sdri"] - gen[(r["speaker"], r["utterance"], r["snr_db"])]["si_sdri"] for r in mr]
        ad = [a["seconds_per_noisy_min"] for a in adapt if a["method"] == name]
        table.append({"method": name, "n": len(mr), "SI-SDRi": mean(r["si_sdri"] for r in mr),
                      "±95%": ci95([r["si_sdri"] for r in mr]), "vs gen.": mean(d), "±95% ": ci95(d),
                      "PESQ": mean(r["pesq"] for r in mr), "eSTOI": mean(r["estoi"] for r in mr),
                      "s/noisy min": mean(ad) if ad else None})
    cols = [("method", "method", ""), ("n", "n", ""), ("SI-SDRi", "SI-SDRi", "+.2f"), ("±95%", "±95%", ".2f"),
            ("vs gen.", "vs generalist", "+.2f"), ("±95% ", "±95%", ".2f"), ("PESQ", "PESQ", ".2f"),
            ("eSTOI", "eSTOI", ".3f"), ("s/noisy min", "adapt s / noisy min", ".1f")]
    print(f"targets: {', '.join(targets)}; {args.n_test} test utterances x {len(SNRS)} SNRs each; noisy audio "
          f"{mean(a['noisy_min'] for a in adapt) if adapt else 0:.2f} min per target; amounts {args.amounts} s")
    print(format_table(table, cols))
    key = lambda r: (r["speaker"], r["utterance"], r["snr_db"])  # noqa: E731
    pairs = [("PseudoSE + purification", "PseudoSE")]
    pairs += [(f"contrastive {a}", f"fine-tune {a}") for a in
              sorted({m.split()[1] for m in order if m.startswith("contrastive ")}, key=lambda v: float(v[:-1]))]
    lines = []
    for a, b in pairs:
        rb = {key(r): r for r in rows if r["method"] == b}
        d = [r["si_sdri"] - rb[key(r)]["si_sdri"] for r in rows if r["method"] == a and key(r) in rb]
        if d:
            lines.append(f"  {a} - {b}: {mean(d):+.2f} dB (±{ci95(d):.2f}), better on "
                         f"{mean(float(v > 0) for v in d):.0%} of {len(d)} mixtures")
    if lines:
        print("\npaired SI-SDRi differences")
        print("\n".join(lines))
    return table


def combine(dirs):
    """Merge the mixtures.csv and adaptation.csv of several runs (e.g. targets split over two processes)."""
    import csv
    import json

    rows, adapt, targets = [], [], []
    for d in dirs:
        d = Path(d)
        with open(d / "mixtures.csv", newline="") as f:
            rows += [{k: (v if k in ("method", "speaker", "utterance") else float(v)) for k, v in r.items()}
                     for r in csv.DictReader(f)]
        with open(d / "adaptation.csv", newline="") as f:
            adapt += [{k: (v if k in ("method", "speaker") else float(v)) for k, v in r.items()}
                      for r in csv.DictReader(f)]
        summary = json.loads((d / "summary.json").read_text())
        targets += summary["targets"]
        args = argparse.Namespace(**summary["args"])
    print(f"combined runs: {', '.join(str(d) for d in dirs)}")
    return report(rows, adapt, targets, args)


def run(args):
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    from pse_nmf.neural import ContrastiveMixtures, DistilledStudent, PseudoSE, pretrained

    data = check_data(args.data)
    speakers = read_speakers(data)
    targets, _ = parse_speakers(args.speakers, speakers, args.seed)
    train_noise, test_noise = split_noise(data)
    noise_list = [c for k in sorted(train_noise) for c in train_noise[k]]
    noise_audio = [pse_nmf.audio.read_audio(c, sr=SR)[0] for c in noise_list]
    amounts = [float(a) for a in args.amounts.split(",")]
    methods = set(args.methods.split(","))
    generalist = pretrained("generalist")
    rnnoise = pse_nmf.RNNoiseEnhancer(sr=SR)
    out = make_out_dir(args.out, "personalize")
    rows, adapt = [], []
    seeds = derived_seeds(args.seed, len(targets), stream=0)
    usm_cache = []

    def usm_zero_shot():
        """USM on the developer-set speakers that are not targets of this run (fitted once)."""
        if not usm_cache:
            pool = sorted(set(speakers) - set(targets))
            speech = {p: [str(f) for f in pse_nmf.datasets.list_recordings(data / "speech")[p][:4]] for p in pool}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                usm_cache.append(pse_nmf.USM(random_state=args.seed).fit(list(speech.values())))
            log(f"  USM zero-shot fitted on {len(pool)} non-target speakers")
        return usm_cache[0]
    kw = dict(random_state=args.seed)
    if args.max_epochs is not None:
        kw["max_epochs"] = args.max_epochs
    if args.learning_rate is not None:
        kw["learning_rate"] = args.learning_rate
    for k, (spk, ts) in enumerate(progress(list(zip(targets, seeds)), "targets", quiet=args.quiet)):
        task, _ = make_task(data, test_noise, spk, args.n_test, 0.0, 30.0, ts, int(speakers[spk]["n_utts"]))
        noisy, noisy_clean = user_noisy(data, task, train_noise, args.noisy_seconds, ts + 1)
        minutes = sum(y.size for y in noisy) / SR / 60
        models = {"RNNoise": rnnoise, "pretrained generalist": generalist}

        def adapted(name, make, amount, extra=0.0):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                model = make()
                sec = time.perf_counter() - t0 + extra
            adapt.append({"method": name, "speaker": spk, "clean_s": amount, "noisy_min": minutes,
                          "seconds": sec, "seconds_per_noisy_min": sec / minutes})
            log(f"  {name}: {sec:.1f} s ({sec / minutes:.1f} s per minute of noisy audio)")
            models[name] = model

        if "pseudo" in methods:
            adapted("PseudoSE", lambda: PseudoSE(**kw).fit(noisy, noise=noise_audio), 0.0)
        if "purify" in methods:
            adapted("PseudoSE + purification", lambda: PseudoSE(purify=True, **kw).fit(noisy, noise=noise_audio), 0.0)
        if args.oracle and "pseudo" in methods:
            adapted("oracle PseudoSE (clean targets)", lambda: PseudoSE(**kw).fit(noisy_clean, noise=noise_audio), 0.0)
        if "distill" in methods:
            adapted("distilled from generalist", lambda: DistilledStudent(
                None, generalist, max_epochs=args.max_epochs or 8, patience=3, learning_rate=3e-4, batch_size=8,
                segment_seconds=3.0, validation_fraction=0.2, random_state=args.seed).fit(noisy, noise=noise_audio),
                0.0)
        if "teachers" in methods:  # distillation from the new base with other teachers that need no clean speech
            teachers = {"RNNoise": rnnoise, "USM zero-shot": usm_zero_shot(),
                        "ensemble generalist + RNNoise": pse_nmf.EnsembleEnhancer(
                            [("generalist", generalist), ("rnnoise", rnnoise)]).fit()}
            for tname, teacher in teachers.items():
                adapted(f"distilled from {tname}", lambda t=teacher: DistilledStudent(
                    None, t, max_epochs=args.max_epochs or 8, patience=3, learning_rate=3e-4, batch_size=8,
                    segment_seconds=3.0, validation_fraction=0.2, random_state=args.seed).fit(noisy, noise=noise_audio),
                    0.0)
                if tname == "USM zero-shot":
                    models[tname] = teacher
        if "small" in methods:  # the "lossless compression" attempt: a new, smaller network on the teacher's outputs
            from pse_nmf.neural import CompactEnhancer

            small = CompactEnhancer(conv_channels=32, hidden_size=48, hidden_size2=32, random_state=args.seed)
            adapted("small student (26k) distilled", lambda: DistilledStudent(
                small, generalist, max_epochs=args.small_epochs, patience=5, learning_rate=3e-3, batch_size=8,
                segment_seconds=3.0, validation_fraction=0.2, random_state=args.seed).fit(noisy, noise=noise_audio),
                0.0)
        stage1 = None
        if "contrastive" in methods and any(a > 0 for a in amounts):
            # stage 1 does not depend on the clean speech: run once, time it once, add it to every amount's time
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stage1 = ContrastiveMixtures(max_epochs=0, **kw).fit(noisy, noise=noise_audio)
            stage1_s = time.perf_counter() - t0
            log(f"  contrastive stage 1: {stage1_s:.1f} s")
        for a in amounts:
            if a <= 0:
                continue
            clean = first_seconds(task.enrollment, a)
            if "ssnmf" in methods:
                adapted(f"SSNMF personal {a:g}s", lambda: pse_nmf.SemiSupervisedNMF(random_state=args.seed).fit([clean]), a)
            if "finetune" in methods:
                adapted(f"fine-tune {a:g}s", lambda: ContrastiveMixtures(pretrain_epochs=0, **kw).fit(
                    noisy, speech=clean, noise=noise_audio), a)
            if "contrastive" in methods:
                # the same split and seeds as one fit with both stages (the random draws do not depend on
                # pretrain_epochs), so this is stage 2 of ContrastiveMixtures(**kw).fit(noisy, speech=clean, ...)
                adapted(f"contrastive {a:g}s", lambda: ContrastiveMixtures(stage1.student_, pretrain_epochs=0, **kw)
                        .fit(noisy, speech=clean, noise=noise_audio), a, extra=stage1_s)
            if args.oracle:
                test_clean = first_seconds([m.speech for m in task.test if m.snr_db == 0.0], a)
                adapted(f"oracle fine-tune {a:g}s (test speech)", lambda: ContrastiveMixtures(pretrain_epochs=0, **kw)
                        .fit(noisy, speech=test_clean, noise=noise_audio), a)
                test_noise_audio = [m.noise for m in task.test if m.snr_db == 0.0]
                adapted(f"oracle fine-tune {a:g}s (test speech + test noise)", lambda: ContrastiveMixtures(
                    pretrain_epochs=0, **kw).fit(noisy, speech=test_clean, noise=test_noise_audio), a)
        for m in task.test:
            mix = _score(m.mixture, m.speech)
            rows.append({"method": "noisy", "speaker": spk, "snr_db": m.snr_db, "utterance": m.utterance,
                         "si_sdri": 0.0, "pesq": mix["pesq"], "estoi": mix["estoi"]})
            for name, model in models.items():
                s = _score(model.denoise(m.mixture, sr=SR), m.speech)
                rows.append({"method": name, "speaker": spk, "snr_db": m.snr_db, "utterance": m.utterance,
                             "si_sdri": s["si_sdr"] - mix["si_sdr"], "pesq": s["pesq"], "estoi": s["estoi"]})
        mine = [r for r in rows if r["speaker"] == spk]
        log(f"[{k + 1}/{len(targets)}] {spk} ({minutes:.2f} min noisy): " + ", ".join(
            f"{n} {mean(r['si_sdri'] for r in mine if r['method'] == n):+.2f}" for n in ["noisy", *models]))
    table = report(rows, adapt, targets, args)
    total = time.perf_counter() - t_start
    print(f"\ntotal wall time {total:.0f} s ({total / 60:.1f} min)")
    write_csv(rows, out / "mixtures.csv")
    write_csv(adapt, out / "adaptation.csv")
    write_json({"benchmark": "personalize", "args": vars(args), "targets": targets, "table": table,
                "machine": machine_info(), "total_wall_s": total}, out / "summary.json")
    print(f"wrote {out / 'summary.json'}")
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speakers", default=None, help="count or ids [default 8; 2 with --quick]")
    p.add_argument("--n-test", type=int, default=4)
    p.add_argument("--noisy-seconds", type=float, default=60.0)
    p.add_argument("--amounts", default=None, help="clean seconds, comma-separated [default 0,3,10,30; 0,3 quick]")
    p.add_argument("--methods", default="pseudo,purify,distill,ssnmf,finetune,contrastive")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--small-epochs", type=int, default=40, help="epochs of the small distilled student [40]")
    p.add_argument("--oracle", action="store_true",
                   help="also PseudoSE with the noisy recordings' clean speech as targets, and fine-tuning on the "
                   "test utterances' own clean speech")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--combine", nargs="+", default=None, metavar="DIR", help="only merge and print earlier runs")
    add_quiet_argument(p)
    args = p.parse_args(argv)
    if args.combine:
        return combine(args.combine)
    if args.speakers is None:
        args.speakers = "2" if args.quick else "8"
    if args.amounts is None:
        args.amounts = "0,3" if args.quick else "0,3,10,30"
    return run(args)


if __name__ == "__main__":
    main()
