"""Target speaker extraction benchmark: SpeakerExtractor beside the generalist and RNNoise (issue 16, item 5).

Protocol, built on the dev protocol of ``generalist.py`` (same targets, same seeds, same test utterances):

* targets: the 8 seeded, gender-stratified developer speakers (2 with ``--quick``); per target the test
  mixtures of ``neural.make_task`` (4 utterances x -5/0/5 dB, odd-indexed noise clips, never seen in
  training) and its 30 s of clean enrollment (the user's clean speech: its first 3, 10 or 30 s enroll);
* **talker condition**: each test utterance + an interfering talker at 0 dB (SIR over active samples) + the
  mixture's own noise made 5 dB quieter (so 0, 5 and 10 dB SNR against the target). The talker is an
  utterance of another target speaker (the next one in the list, then the one after...; seeded choice, tiled or
  cut to length): an unseen voice, as every target is;
* **plain condition**: the dev-protocol mixtures as they are (noise only, -5/0/5 dB), to see what conditioning
  costs where there is no talker;
* rows: the noisy input, the oracle ratio mask of the target against everything else (ceiling), the oracle
  band mask of the extractor's own STFT and band layout (what a perfect network of this form would reach), RNNoise, the
  pretrained generalist, the extractor enrolled with 3 / 10 / 30 s, and the extractor enrolled with the
  *talker's* speech (10 s of its other utterances: it should then follow the talker, so its SI-SDR against
  the target drops: the enrollment is what picks the voice);
* SI-SDRi (against the target), wide-band PESQ, eSTOI; paired differences with 95 % intervals;
* with ``--seen N``, a diagnosis: the talker condition on N *training* speakers (``../shared/pretrain``), whose
  voices the extractor saw in training (the mixtures and the noise clips it did not): a large gap to the
  unseen targets says that generalising to new voices, i.e. the number of training speakers, is the limit.

Run ``python benchmarks/extraction.py [--quick] [--extractor PATH]``; progress on stderr, tables on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    DEFAULT_DATA,
    add_quiet_argument,
    check_data,
    ci95,
    derived_seeds,
    format_machine_info,
    format_table,
    machine_info,
    make_out_dir,
    mean,
    parse_speakers,
    progress,
    read_speakers,
    write_csv,
    write_json,
)
from neural import SNRS, SR, make_task, split_noise  # noqa: E402

import pse_nmf  # noqa: E402

SIR_DB = 0.0
NOISE_QUIETER_DB = 5.0
ENROLL_SECONDS = (3, 10, 30)


def _power(y):
    a = y[y != 0]
    return float(np.mean(np.square(a, dtype=np.float64))) if a.size else 0.0


def _fit_length(y, n, rng):
    if y.size < n:
        y = np.tile(y, int(np.ceil(n / y.size)) + 1)
    start = rng.randint(y.size - n + 1)
    return y[start : start + n]


def talker_mixtures(tasks, recordings, seed):
    """Per target, its test mixtures with a talker at SIR_DB and the noise NOISE_QUIETER_DB dB quieter."""
    rng = np.random.RandomState(seed)
    names = [t.speaker for t in tasks]
    out = {}
    for k, task in enumerate(tasks):
        rows = []
        for j, tm in enumerate(task.test):
            other = names[(k + 1 + j % (len(names) - 1)) % len(names)] if len(names) > 1 else None
            if other is None:
                raise SystemExit("the talker condition needs at least 2 target speakers")
            files = recordings[other]
            talker_file = files[rng.randint(len(files))]
            talker = pse_nmf.audio.read_audio(talker_file, sr=SR)[0]
            talker = _fit_length(talker, tm.speech.size, rng)
            talker = talker * np.float32(np.sqrt(_power(tm.speech) / (_power(talker) * 10 ** (SIR_DB / 10))))
            noise = tm.noise * np.float32(10 ** (-NOISE_QUIETER_DB / 20))
            rows.append({"mixture": (tm.speech + talker + noise).astype(np.float32), "speech": tm.speech,
                         "rest": (talker + noise).astype(np.float32), "talker": other, "talker_file": talker_file,
                         "snr_db": tm.snr_db + NOISE_QUIETER_DB})
        out[task.speaker] = rows
    return out


def seen_mixtures(pretrain, n_speakers, test_noise, n_test, seed):
    """The talker condition on ``n_speakers`` *training* speakers (../shared/pretrain), a diagnosis.

    Per speaker: ``n_test`` of its utterances as targets, 30 s of its other utterances as the enrollment, the
    next chosen speaker's utterances as talkers (SIR_DB), test-half noise clips at the talker condition's
    SNRs. The voices (and the words) were seen in training, the mixtures and the noise clips were not.
    """
    rng = np.random.RandomState(seed)
    recs = pse_nmf.datasets.list_recordings(pretrain / "speech")
    names = sorted(rng.permutation(sorted(recs))[:n_speakers].tolist())
    clips = [c for k in sorted(test_noise) for c in test_noise[k]]
    read = {}

    def audio(path):
        if path not in read:
            read[path] = pse_nmf.audio.read_audio(path, sr=SR)[0]
        return read[path]

    out = []
    for k, spk in enumerate(names):
        files = list(rng.permutation(recs[spk]))
        test, rest = files[:n_test], files[n_test:]
        enroll = np.concatenate([audio(f) for f in rest])[: 30 * SR]
        other = recs[names[(k + 1) % len(names)]]
        mixtures = []
        for j, f in enumerate(test):
            s = audio(f)
            for snr in SNRS:
                t = _fit_length(audio(other[rng.randint(len(other))]), s.size, rng)
                t = t * np.float32(np.sqrt(_power(s) / (_power(t) * 10 ** (SIR_DB / 10))))
                noise = _fit_length(audio(clips[rng.randint(len(clips))]), s.size, rng)
                snr_db = snr + NOISE_QUIETER_DB
                noise = noise * np.float32(np.sqrt(_power(s) / (_power(noise) * 10 ** (snr_db / 10))))
                mixtures.append({"mixture": (s + t + noise).astype(np.float32), "speech": s, "snr_db": snr_db})
        out.append({"speaker": spk, "enrollment": enroll, "mixtures": mixtures})
    return out


def oracle_band_mask(model, mixture, speech):
    """The best output of the extractor's own form: what a perfect mask network of its layout would give.

    Its STFT, one gain per band (its band layout), gains in [0, 1] equal to the band amplitude ratio of the
    target to the mixture, spread to the bins as the network spreads its gains: the ceiling of the form.
    """
    import torch

    net = model.module_
    win = torch.hann_window(model.n_fft, periodic=True)

    def spec(y):
        return torch.stft(torch.from_numpy(np.ascontiguousarray(y, np.float32)), model.n_fft, model.hop_length,
                          window=win, center=True, pad_mode="constant", return_complex=True)

    X, S = spec(mixture), spec(speech)
    with torch.no_grad():
        px = torch.matmul(torch.abs(X).T ** 2, net.compress)
        ps = torch.matmul(torch.abs(S).T ** 2, net.compress)
        gains = torch.clamp(torch.sqrt(ps / torch.clamp(px, min=1e-20)), max=1.0)
        mask = torch.matmul(gains, net.expand).T
        y = torch.istft(X * mask, model.n_fft, model.hop_length, window=win, center=True, length=mixture.size)
    return y.numpy()


def score(estimate, speech, mixture):
    """SI-SDR, its improvement over the mixture, PESQ and eSTOI of an estimate against the target."""
    si = pse_nmf.metrics.si_sdr(estimate, speech)
    return {"si_sdr": si, "si_sdri": si - pse_nmf.metrics.si_sdr(mixture, speech),
            "pesq": pse_nmf.metrics.pesq(estimate, speech, sr=SR),
            "estoi": pse_nmf.metrics.estoi(estimate, speech, sr=SR)}


def main(argv=None):
    """Run the benchmark (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA, type=Path)
    ap.add_argument("--speakers", default="8", help="number of targets, or a comma-separated list")
    ap.add_argument("--quick", action="store_true", help="2 targets")
    ap.add_argument("--n-test", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extractor", default=None, help="model file (default: pretrained('extractor'))")
    ap.add_argument("--no-rnnoise", action="store_true")
    ap.add_argument("--out", default=None, help="results folder (default: benchmarks/results/extraction-<stamp>)")
    ap.add_argument("--seen", type=int, default=0, metavar="N",
                    help="also N *training* speakers (../shared/pretrain) in the talker condition: the gap to the "
                    "unseen targets tells whether generalising to new voices is the limit")
    add_quiet_argument(ap)
    args = ap.parse_args(argv)

    from pse_nmf.neural import pretrained

    data = check_data(args.data)
    print(format_machine_info(machine_info()))
    speakers = read_speakers(data)
    targets, _ = parse_speakers("2" if args.quick else args.speakers, speakers, args.seed)
    _, test_noise = split_noise(data)
    recordings = pse_nmf.datasets.list_recordings(data / "speech")
    task_seeds = derived_seeds(args.seed, len(targets), stream=0)
    tasks = [make_task(data, test_noise, spk, args.n_test, 0.0, 30.0, ts, len(recordings[spk]))[0]
             for spk, ts in zip(targets, task_seeds)]
    talk = talker_mixtures(tasks, recordings, args.seed + 1)

    generalist = pretrained("generalist")
    extractor = pretrained("extractor") if args.extractor is None else pse_nmf.load(args.extractor)
    rnnoise = None
    if not args.no_rnnoise:
        try:
            rnnoise = pse_nmf.RNNoiseEnhancer(sr=SR)
        except ImportError as exc:
            print(f"RNNoise skipped: {exc}", file=sys.stderr)

    rows = []
    t0 = time.perf_counter()
    for task in progress(tasks, "targets", quiet=args.quiet):
        enroll = np.concatenate(task.enrollment)
        embeddings = {}
        for s in ENROLL_SECONDS:
            extractor.enroll(enroll[: s * SR])
            embeddings[f"extractor, {s} s enrollment"] = extractor.enrollment_.copy()
        for cond, mixtures in (("talker", talk[task.speaker]),
                               ("plain", [{"mixture": m.mixture, "speech": m.speech, "rest": m.noise,
                                           "talker": "", "snr_db": m.snr_db} for m in task.test])):
            for i, m in enumerate(mixtures):
                x, s = m["mixture"], m["speech"]
                outs = {"noisy": x,
                        "oracle IRM": pse_nmf.audio.oracle_mask_denoise(x, s),
                        "oracle band mask (the extractor's layout)": oracle_band_mask(extractor, x, s),
                        "pretrained generalist": generalist.denoise(x, sr=SR)}
                if rnnoise is not None:
                    outs["RNNoise"] = rnnoise.denoise(x, sr=SR)
                for label, e in embeddings.items():
                    extractor.enrollment_ = e
                    outs[label] = extractor.denoise(x, sr=SR)
                if cond == "talker":
                    other = [f for f in recordings[m["talker"]] if f != m["talker_file"]]  # not the talker's words
                    wrong = np.concatenate([pse_nmf.audio.read_audio(f, sr=SR)[0] for f in other[-4:]])[: 10 * SR]
                    extractor.enroll(wrong)
                    outs["extractor enrolled with the talker (10 s)"] = extractor.denoise(x, sr=SR)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for label, y in outs.items():
                        rows.append({"condition": cond, "method": label, "target": task.speaker, "mixture": i,
                                     "snr_db": m["snr_db"], **score(y, s, x)})
    if args.seen:
        for item in progress(seen_mixtures(data.parent / "pretrain", args.seen, test_noise, args.n_test, args.seed),
                             "seen speakers", quiet=args.quiet):
            extractor.enroll(item["enrollment"][: 10 * SR])
            for i, m in enumerate(item["mixtures"]):
                x, s = m["mixture"], m["speech"]
                outs = {"noisy": x,
                        "oracle band mask (the extractor's layout)": oracle_band_mask(extractor, x, s),
                        "pretrained generalist": generalist.denoise(x, sr=SR),
                        "extractor, 10 s enrollment": extractor.denoise(x, sr=SR)}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for label, y in outs.items():
                        rows.append({"condition": "seen", "method": label, "target": item["speaker"],
                                     "mixture": i, "snr_db": m["snr_db"], **score(y, s, x)})
    seconds = time.perf_counter() - t0

    out = make_out_dir(args.out, "extraction")
    write_csv(rows, out / "rows.csv")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    summary = {}
    for cond in ("talker", "plain", "seen"):
        base = {(r["target"], r["mixture"]): r["si_sdri"] for r in rows
                if r["condition"] == cond and r["method"] == "pretrained generalist"}
        table = []
        for meth in methods:
            rs = [r for r in rows if r["condition"] == cond and r["method"] == meth]
            if not rs or not base:
                continue
            d = [r["si_sdri"] - base[(r["target"], r["mixture"])] for r in rs]
            entry = {"method": meth, "n": len(rs), "SI-SDRi": mean([r["si_sdri"] for r in rs]),
                     "±95%": ci95([r["si_sdri"] for r in rs]), "vs generalist": mean(d), "±95% ": ci95(d),
                     "PESQ": mean([r["pesq"] for r in rs]), "eSTOI": mean([r["estoi"] for r in rs])}
            for snr in sorted({r["snr_db"] for r in rs}):
                entry[f"SI-SDRi @{snr:+.0f} dB"] = mean([r["si_sdri"] for r in rs if r["snr_db"] == snr])
            table.append(entry)
            summary.setdefault(cond, {})[meth] = entry
        if not table:
            continue
        title = ({"talker": f"Talker condition: target + talker at {SIR_DB:.0f} dB + noise at "
                            f"{', '.join(f'{v + NOISE_QUIETER_DB:+.0f}' for v in SNRS)} dB SNR",
                  "plain": "Plain condition: the dev-protocol mixtures (noise only, -5/0/5 dB)",
                  "seen": "Diagnosis: the talker condition on training speakers (../shared/pretrain; voices seen in "
                          "training, mixtures and noise clips not)"}[cond]
                 + f"; {args.seen if cond == 'seen' else len(targets)} speakers x {args.n_test} utterances x "
                   f"{len(SNRS)}")
        fmts = {"n": "d", "PESQ": ".2f", "eSTOI": ".3f", "±95%": ".2f", "±95% ": ".2f"}
        columns = [(c, c.strip(), "s" if c == "method" else fmts.get(c, "+.2f")) for c in table[0]]
        print(format_table(table, columns, title=title))
        print()
    ex = summary["talker"]
    best = max((k for k in ex if k.startswith("extractor,")), key=lambda k: ex[k]["SI-SDRi"])
    print("targets (issue 16, item 5):")
    for s in ENROLL_SECONDS:
        k = f"extractor, {s} s enrollment"
        print(f"  extractor ({s} s enrollment) SI-SDRi >= 6 dB on the talker condition: {ex[k]['SI-SDRi']:+.2f} dB "
              f"-> {'met' if ex[k]['SI-SDRi'] >= 6 else 'not met'}")
    print(f"  generalist below 3 dB there: {ex['pretrained generalist']['SI-SDRi']:+.2f} dB")
    print(f"  best extractor row: {best}; oracle IRM {ex['oracle IRM']['SI-SDRi']:+.2f} dB")
    print(f"{seconds / 60:.1f} min")
    write_json({"summary": summary, "targets": targets, "seconds": seconds,
                "protocol": {"sir_db": SIR_DB, "noise_quieter_db": NOISE_QUIETER_DB, "n_test": args.n_test,
                             "seed": args.seed, "enroll_seconds": list(ENROLL_SECONDS)}},
               out / "summary.json")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
