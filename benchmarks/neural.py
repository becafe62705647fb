"""Neural benchmark: a small GRU before and after test-time distillation, and the adaptive DAE.

Protocol (see benchmarks/README.md, section "neural.py"):

* the same seeded, gender-stratified target speakers as ``quality.py``
  (8, or 2 with ``--quick``); the other 24 speakers train the generalists;
* the noise clips are split: even-indexed clips of every type train the
  generalists, odd-indexed clips make the test mixtures and the noisy-only
  recordings, so no test noise clip was seen in training;
* per target, :func:`pse_nmf.datasets.make_personalization_task` gives 30 s of clean
  enrollment (used by the NMF teacher only), ``--n-test`` test utterances
  mixed at -5, 0 and 5 dB, and noisy-only recordings of other utterances
  (about ``--noisy-seconds``), the only data the adaptive methods see;
* rows: the 2x64 GRU generalist (the student before adaptation), the
  personal semi-supervised NMF teacher, the student distilled from that
  teacher on the noisy recordings (:class:`pse_nmf.neural.DistilledStudent`),
  the DAE generalist and the same DAE adapted on the noisy recordings
  (:class:`pse_nmf.neural.AdaptiveDAE`), with the noisy input and the oracle
  ratio mask as references.

Trained generalists are cached in ``benchmarks/results/neural-cache/`` keyed
by their settings and training data, so reruns skip training.

Run ``python benchmarks/neural.py --quick`` (2 speakers) or
``python benchmarks/neural.py`` (8 speakers).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_DATA,
    add_quiet_argument,
    progress,
    RESULTS_DIR,
    check_data,
    ci95,
    derived_seeds,
    format_machine_info,
    format_table,
    machine_info,
    make_out_dir,
    mean,
    parse_speakers,
    read_speakers,
    take_seconds,
    timed,
    write_csv,
    write_json,
)

import numpy as np  # noqa: E402

import pse_nmf  # noqa: E402

try:
    import torch
    from pse_nmf.neural import AdaptiveDAE, DistilledStudent, GRUEnhancer, complexity
except ImportError as exc:  # pragma: no cover - the benchmark needs the neural extra
    sys.exit(f'benchmarks/neural.py needs PyTorch: pip install "pse_nmf[neural]" ({exc})')

SR = 16000
SNRS = (-5.0, 0.0, 5.0)
CACHE_DIR = RESULTS_DIR / "neural-cache"

#: Distillation settings (issue 7, session 3; see DistilledStudent's docstring for the measurements): SI-SDR loss,
#: and the generalists' training noise (even-indexed clips, never the test clips) added to every noisy recording.
DISTILL_PARAMS = dict(loss="si_sdr", max_epochs=100, learning_rate=1e-3, batch_size=4, patience=10,
                      augment_probability=1.0, augment_snr_range=(5.0, 15.0))

STUDENT = "GRU 2x64 generalist"
TEACHER = "SSNMF personal (teacher)"
DISTILLED = "GRU 2x64 distilled"
DAE_PRE = "DAE generalist"
DAE_ADAPTED = "DAE adapted (ADAE)"
ROWS = ("noisy", "oracle IRM", STUDENT, TEACHER, DISTILLED, DAE_PRE, DAE_ADAPTED)
REFERENCE_ROWS = ("noisy", "oracle IRM")


def _student(args):
    return GRUEnhancer(hidden_size=64, num_layers=2, max_epochs=args.max_epochs, patience=args.patience,
                       random_state=args.seed)


def _dae(args):
    return AdaptiveDAE(max_epochs=args.max_epochs, patience=args.patience, random_state=args.seed)


def _teacher(seed):
    return pse_nmf.SemiSupervisedNMF(random_state=seed)


def nmf_macs_per_second(model):
    r"""Analytic multiply-accumulates per second of a semi-supervised NMF at test time.

    Each of the ``test_max_iter`` multiplicative updates (beta = 1) of a
    frame's activations over :math:`K` = ``n_components + n_noise_components``
    atoms and :math:`F` = ``n_fft // 2 + 1`` bins costs about :math:`4FK`
    multiply-adds per frame: the reconstruction :math:`AD` (:math:`FK`), the
    numerator :math:`(X / AD) D^T` (:math:`FK`), and, for the noise atoms
    learned at test time, their update's two products (at most :math:`2FK`).
    So

    .. math:: \text{MAC/s} \approx 4 F K \cdot \text{test\_max\_iter} \cdot \frac{sr}{hop}.

    An upper bound when the solver stops early on ``tol``; elementwise work
    (the ratio, the mask) and the STFT are not counted, as for the networks.
    """
    p = model.get_params()
    F = p["n_fft"] // 2 + 1
    K = p["n_components"] + p["n_noise_components"]
    per_frame = 4 * F * K * p["test_max_iter"]
    return {"parameters": int(F * p["n_components"]), "macs_per_frame": int(per_frame),
            "macs_per_second": float(per_frame * p["sr"] / p["hop_length"])}


# -- data -------------------------------------------------------------------------------------------------
def split_noise(data):
    """Noise clips per type: even-indexed ones for training, odd-indexed ones for testing."""
    clips = pse_nmf.datasets.list_recordings(data / "noise")
    train = {k: v[0::2] for k, v in clips.items()}
    test = {k: v[1::2] for k, v in clips.items() if len(v) >= 2}
    return train, test


def make_task(data, test_noise, speaker, n_test, noisy_seconds, enroll_seconds, seed, n_utts):
    """The target's task and about ``noisy_seconds`` of noisy-only recordings.

    The noisy-only recordings are first every utterance left after the
    enrollment and the test (``task.noisy``); when they hold less than
    ``noisy_seconds`` (most speakers: 55-148 s in all), the enrollment
    utterances (cycled if need be) are mixed with further odd-indexed clips
    (seeded, SNR drawn from ``SNRS``) until there is enough: a user who
    enrolled also records in noise, and the teacher having seen those
    utterances clean does not touch the test utterances. The test
    utterances are never used, and the test mixtures do not depend on
    ``n_noisy`` (make_personalization_task draws the test set first).
    """
    for n_noisy in range(n_utts - n_test - 1, 0, -1):
        try:
            task = pse_nmf.datasets.make_personalization_task(
                data / "speech", test_noise, speaker, enroll_seconds=enroll_seconds, snrs=SNRS, n_test=n_test,
                n_noisy=n_noisy, random_state=seed,
            )
        except ValueError as exc:
            if "n_noisy" in str(exc):
                continue
            raise
        return task, extend_noisy(task, test_noise, noisy_seconds, seed)
    raise SystemExit(f"speaker {speaker} has no utterance left for noisy-only recordings")


def extend_noisy(task, test_noise, noisy_seconds, seed):
    """``task.noisy`` cut or extended to about ``noisy_seconds`` (see :func:`make_task`)."""
    want = noisy_seconds * SR
    noisy, total = [], 0
    for y in task.noisy:
        if total >= want:
            return noisy
        noisy.append(y)
        total += y.size
    rng = np.random.RandomState(seed + 7919)
    clips = [c for k in sorted(test_noise) for c in test_noise[k]]
    cache = {}
    sources = list(task.enrollment)
    if not sources:
        return noisy
    k = 0
    while total < want:
        s = sources[k % len(sources)]
        k += 1
        for _ in range(20):
            j = int(rng.randint(len(clips)))
            if j not in cache:
                cache[j] = pse_nmf.audio.read_audio(clips[j], sr=SR)[0]
            try:
                mixture, _ = pse_nmf.datasets.mix_at_snr(s, cache[j], SNRS[rng.randint(len(SNRS))], random_state=rng)
            except ValueError:  # a silent excerpt of an event noise: draw again
                continue
            noisy.append(mixture.astype(np.float32))
            total += mixture.size
            break
        else:
            raise SystemExit("20 silent noise excerpts in a row")
    return noisy


# -- cached generalists -----------------------------------------------------------------------------------
def _cache_key(model, data_spec):
    spec = {"class": type(model).__name__, "params": model.get_params(), "data": data_spec,
            "pse_nmf": pse_nmf.__version__, "torch": torch.__version__}
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_fit(model, data_spec, train_speech, train_noise, use_cache):
    """Fit ``model``, or load it from the cache; returns (model, train seconds, log lines)."""
    torch.set_num_threads(1)
    log = []
    name = type(model).__name__
    path = CACHE_DIR / f"{name}-{_cache_key(model, data_spec)}.npz"
    info_path = path.with_suffix(".json")
    if use_cache and path.exists() and info_path.exists():
        loaded = pse_nmf.load(path, expected=type(model))
        info = json.loads(info_path.read_text())
        log.append(f"{name}: loaded from {path.name} (trained in {info['train_s']:.0f} s)")
        return loaded, info["train_s"], log
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted, seconds = timed(model.fit, train_speech.load(), train_noise)
    for w in caught:
        log.append(f"{name}: {w.category.__name__}: {str(w.message).splitlines()[0][:100]}")
    if use_cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        fitted.save(path, overwrite=True)
        info_path.write_text(json.dumps({"train_s": seconds, "n_epochs": fitted.n_epochs_,
                                         "best_epoch": fitted.best_epoch_}))
    log.append(f"{name}: trained in {seconds:.0f} s, {fitted.n_epochs_} epochs (best {fitted.best_epoch_})")
    return fitted, seconds, log


class OtherSpeech:
    """The other speakers' training speech, loaded on demand (picklable, so a worker process can load it)."""

    def __init__(self, data, others, seconds, seed):
        self.data, self.others, self.seconds, self.seed = data, others, seconds, seed

    def load(self):
        seeds = derived_seeds(self.seed, len(self.others), stream=1)
        return [y for spk, s in zip(self.others, seeds)
                for y in take_seconds(self.data / "speech", spk, self.seconds, s, sr=SR)]


# -- running ----------------------------------------------------------------------------------------------
def _score(estimate, speech):
    return {
        "si_sdr": pse_nmf.metrics.si_sdr(estimate, speech),
        "pesq": pse_nmf.metrics.pesq(estimate, speech, sr=SR),
        "estoi": pse_nmf.metrics.estoi(estimate, speech, sr=SR),
    }


def _count(caught, counts):
    for w in caught:
        key = (w.category.__name__, str(w.message).splitlines()[0][:100])
        counts[key] = counts.get(key, 0) + 1


def run_target(job):
    """Everything for one target speaker: task, teacher, distillation, adaptation, scores (a picklable job)."""
    torch.set_num_threads(1)
    speaker, gender, student, dae = job["speaker"], job["gender"], job["student"], job["dae"]
    seed = job["seed"]
    task, noisy = make_task(job["data"], job["test_noise"], speaker, job["n_test"], job["noisy_seconds"],
                            job["enroll_seconds"], job["task_seed"], job["n_utts"])
    seconds = sum(y.size for y in noisy) / SR
    wcounts = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        teacher, t_teacher = timed(_teacher(seed).fit, task.enrollment)
        distilled, t_distill = timed(DistilledStudent(student, teacher, random_state=seed, **DISTILL_PARAMS).fit,
                                     noisy, noise=job["train_noise"])
        adapted, t_adapt = timed(copy.deepcopy(dae).adapt, noisy)
    _count(caught, wcounts)
    enhancers = {
        "noisy": lambda m: m.mixture,
        "oracle IRM": lambda m: pse_nmf.audio.oracle_mask_denoise(m.mixture, m.speech),
        STUDENT: lambda m: student.denoise(m.mixture),
        TEACHER: lambda m: teacher.denoise(m.mixture),
        DISTILLED: lambda m: distilled.denoise(m.mixture),
        DAE_PRE: lambda m: dae.denoise(m.mixture),
        DAE_ADAPTED: lambda m: adapted.denoise(m.mixture),
    }
    rows = []
    for m in task.test:
        mix = _score(m.mixture, m.speech)
        for name, enhance in enhancers.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                est = enhance(m)
            _count(caught, wcounts)
            s = mix if name == "noisy" else _score(est, m.speech)
            rows.append({
                "method": name, "speaker": speaker, "gender": gender, "utterance": m.utterance,
                "noise_type": m.noise_type, "snr_db": m.snr_db, "si_sdr": s["si_sdr"],
                "si_sdri": s["si_sdr"] - mix["si_sdr"], "pesq": s["pesq"], "estoi": s["estoi"],
                "pesq_mixture": mix["pesq"], "estoi_mixture": mix["estoi"],
            })

    def sdri(name):
        return mean(r["si_sdri"] for r in rows if r["method"] == name)

    line = (f"{speaker}: noisy-only {seconds:.0f} s ({len(noisy)} utts); teacher fit {t_teacher:.1f} s, distillation "
            f"{t_distill:.1f} s ({distilled.student_.n_epochs_} epochs), ADAE adaptation {t_adapt:.1f} s; SI-SDRi "
            f"student {sdri(STUDENT):+.2f}, teacher {sdri(TEACHER):+.2f}, distilled {sdri(DISTILLED):+.2f}, "
            f"DAE {sdri(DAE_PRE):+.2f}, ADAE {sdri(DAE_ADAPTED):+.2f} dB")
    return {"rows": rows, "noisy_s": seconds, "times": {TEACHER: t_teacher, DISTILLED: t_distill,
                                                         DAE_ADAPTED: t_adapt},
            "warnings": wcounts, "line": line, "n_test": len(task.test) // len(SNRS)}


def _map(fn, jobs, n_jobs):
    """``fn`` over ``jobs`` in order, in ``n_jobs`` spawned processes (1: in this process), yielding as they end."""
    if n_jobs <= 1:
        for job in jobs:
            yield fn(job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: forking a process whose torch/OpenMP pools are initialised can deadlock
    with ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(fn, jobs)


def _fit_job(job):
    return cached_fit(*job)


def run(args):
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    data = check_data(args.data)
    speakers = read_speakers(data)
    targets, others = parse_speakers(args.speakers, speakers, args.seed)
    info = machine_info()
    out = make_out_dir(args.out, "neural")
    train_noise, test_noise = split_noise(data)

    print(format_machine_info(info))
    print(f"data: {data}; seed {args.seed}; torch {torch.__version__} (1 thread per process, {args.jobs} "
          f"process(es))")
    print(f"{len(targets)} target(s): "
          + ", ".join(f"{s} ({speakers[s]['gender']}, {speakers[s]['age_group']})" for s in targets))
    print(f"generalists: {len(others)} other speakers x ~{args.other_seconds:g} s of speech, even-indexed noise "
          f"clips ({sum(map(len, train_noise.values()))} clips); test and noisy-only recordings: odd-indexed clips "
          f"({sum(map(len, test_noise.values()))} clips)")
    print(f"per target: {args.n_test} test utterance(s) x SNRs {', '.join(f'{s:g}' for s in SNRS)} dB; "
          f"~{args.noisy_seconds:g} s of noisy-only recordings; {args.enroll_seconds:g} s enrollment (teacher only)")
    print(f"teacher: SemiSupervisedNMF {_teacher(args.seed).get_params()}")
    print(f"distillation: {DISTILL_PARAMS}; ADAE: {_dae(args).get_params()}")
    print(flush=True)

    data_spec = {"others": others, "other_seconds": args.other_seconds, "seed": args.seed,
                 "noise": "even-indexed clips", "data": str(data)}
    speech = OtherSpeech(data, others, args.other_seconds, args.seed)
    fit_jobs = [(_student(args), data_spec, speech, train_noise, not args.no_cache),
                (_dae(args), data_spec, speech, train_noise, not args.no_cache)]
    (student, student_train_s, log1), (dae, dae_train_s, log2) = _map(_fit_job, fit_jobs, min(args.jobs, 2))
    for line in log1 + log2:
        print("  " + line, flush=True)

    costs = {
        "noisy": None, "oracle IRM": None,
        STUDENT: complexity(student), DISTILLED: complexity(student),
        TEACHER: nmf_macs_per_second(_teacher(args.seed)),
        DAE_PRE: complexity(dae), DAE_ADAPTED: complexity(dae),
    }
    times = {name: [] for name in ROWS}  # per-target fit / adaptation seconds
    noisy_s, rows, wcounts = [], [], {}
    task_seeds = derived_seeds(args.seed, len(targets), stream=0)
    jobs = [{"speaker": spk, "gender": speakers[spk]["gender"], "student": student, "dae": dae, "seed": args.seed,
             "data": data, "test_noise": test_noise, "train_noise": train_noise, "n_test": args.n_test,
             "noisy_seconds": args.noisy_seconds, "enroll_seconds": args.enroll_seconds, "task_seed": ts, "n_utts": int(speakers[spk]["n_utts"])}
            for spk, ts in zip(targets, task_seeds)]
    n_test = args.n_test
    for k, res in enumerate(progress(_map(run_target, jobs, args.jobs), "targets", total=len(jobs), quiet=args.quiet)):
        rows.extend(res["rows"])
        noisy_s.append(res["noisy_s"])
        for name, t in res["times"].items():
            times[name].append(t)
        for key, n in res["warnings"].items():
            wcounts[key] = wcounts.get(key, 0) + n
        n_test = res["n_test"]
        print(f"[{k + 1}/{len(targets)}] {res['line']}", flush=True)

    times[STUDENT] = [student_train_s]
    times[DAE_PRE] = [dae_train_s]
    summary = summarize(rows, costs, times)
    checks = target_checks(rows, summary, times, noisy_s)
    total_s = time.perf_counter() - t_start
    print()
    print(report(rows, summary, targets, n_test))
    print()
    print(format_checks(checks))
    if wcounts:
        print("\nwarnings:")
        for (cat, msg), n in sorted(wcounts.items()):
            print(f"  {n} x {cat}: {msg}")
    print(f"\ntotal wall time {total_s:.0f} s ({total_s / 60:.1f} min)")
    write_csv(rows, out / "mixtures.csv")
    write_json({
        "benchmark": "neural",
        "protocol": {"seed": args.seed, "targets": targets, "other_speakers": others, "n_test": args.n_test,
                     "snrs_db": list(SNRS), "other_seconds": args.other_seconds, "noisy_seconds": noisy_s,
                     "teacher_params": _teacher(args.seed).get_params(), "distill_params": DISTILL_PARAMS,
                     "student_params": student.get_params(), "dae_params": dae.get_params(), "quick": args.quick,
                     "jobs": args.jobs},
        "machine": info, "methods": summary, "checks": checks, "total_wall_s": total_s,
        "warnings": [{"category": c, "message": msg, "count": n} for (c, msg), n in wcounts.items()],
    }, out / "summary.json")
    print(f"wrote {out / 'mixtures.csv'} and {out / 'summary.json'}")
    return summary, checks


def summarize(rows, costs, times):
    out = {}
    for name in ROWS:
        mr = [r for r in rows if r["method"] == name]
        if not mr:
            continue
        c = costs.get(name) or {}
        s = {
            "n": len(mr),
            "si_sdri": mean(r["si_sdri"] for r in mr),
            "si_sdri_ci95": ci95([r["si_sdri"] for r in mr]),
            "pesq": mean(r["pesq"] for r in mr),
            "estoi": mean(r["estoi"] for r in mr),
            "parameters": c.get("parameters"),
            "mmacs_per_second": None if not c else c["macs_per_second"] / 1e6,
            "time_s": mean(times.get(name, [])) if times.get(name) else None,
        }
        for snr in SNRS:
            s[f"si_sdri@{snr:g}"] = mean(r["si_sdri"] for r in mr if r["snr_db"] == snr)
        out[name] = s
    return out


def _paired(rows, a, b):
    key = lambda r: (r["speaker"], r["utterance"], r["snr_db"])  # noqa: E731
    rb = {key(r): r["si_sdri"] for r in rows if r["method"] == b}
    return [r["si_sdri"] - rb[key(r)] for r in rows if r["method"] == a and key(r) in rb]


def target_checks(rows, summary, times, noisy_s):
    gain = _paired(rows, DISTILLED, STUDENT)
    gap = _paired(rows, TEACHER, DISTILLED)
    adae = _paired(rows, DAE_ADAPTED, DAE_PRE)
    ratio = summary[TEACHER]["mmacs_per_second"] / summary[DISTILLED]["mmacs_per_second"]
    per60 = [t * 60 / s for t, s in zip(times[DISTILLED], noisy_s)]
    per60_adae = [t * 60 / s for t, s in zip(times[DAE_ADAPTED], noisy_s)]
    return [
        {"target": "distilled student gains >= 1 dB SI-SDR over the student before adaptation",
         "value": f"{mean(gain):+.2f} dB (±{ci95(gain):.2f})", "met": bool(mean(gain) >= 1.0)},
        {"target": "distilled student within 1 dB of its teacher",
         "value": f"teacher - distilled = {mean(gap):+.2f} dB (±{ci95(gap):.2f})", "met": bool(mean(gap) <= 1.0)},
        {"target": "student MACs <= 1/20 of the teacher's",
         "value": f"teacher / student = {ratio:.0f}x", "met": bool(ratio >= 20)},
        {"target": "distillation on 60 s of noisy audio <= 2 min (incl. the teacher's inference)",
         "value": f"max {max(per60):.0f} s per 60 s (mean {mean(per60):.0f} s; {mean(noisy_s):.0f} s of audio)",
         "met": bool(max(per60) <= 120)},
        {"target": "ADAE adaptation on 60 s of noisy audio <= 2 min",
         "value": f"max {max(per60_adae):.0f} s per 60 s (mean {mean(per60_adae):.0f} s)",
         "met": bool(max(per60_adae) <= 120)},
        {"target": "(for information) ADAE gain over its pretrained DAE",
         "value": f"{mean(adae):+.2f} dB (±{ci95(adae):.2f})", "met": None},
    ]


def format_checks(checks):
    lines = ["Targets (issue 7)"]
    for c in checks:
        mark = "   " if c["met"] is None else ("MET" if c["met"] else "NOT MET")
        lines.append(f"  [{mark}] {c['target']}: {c['value']}")
    return "\n".join(lines)


def report(rows, summary, targets, n_test):
    snr_cols = [(f"si_sdri@{s:g}", f"@{s:+g}dB", "+.2f") for s in SNRS]
    parts = [format_table(
        [{"method": name, **s} for name, s in summary.items()],
        [("method", "method", "s"), ("n", "n", "d"), ("si_sdri", "SI-SDRi", "+.2f"), ("si_sdri_ci95", "±95%", ".2f"),
         *snr_cols, ("pesq", "PESQ", ".2f"), ("estoi", "eSTOI", ".3f"), ("parameters", "params", "d"),
         ("mmacs_per_second", "MMAC/s", ".1f"), ("time_s", "train/adapt s", ".1f")],
        title=(f"Neural: {len(targets)} target(s) x {n_test} utterance(s) x {len(SNRS)} SNRs (means; SI-SDRi dB; "
               "PESQ wide band; MMAC/s = 1e6 multiply-accumulates per second of audio; train/adapt s = wall "
               "seconds on one thread: generalists once, teacher fit / distillation / adaptation per target)"),
    )]
    methods = [n for n in summary if n not in REFERENCE_ROWS]
    by_speaker = []
    for spk in targets:
        row = {"speaker": spk}
        for name in methods:
            row[name] = mean(r["si_sdri"] for r in rows if r["method"] == name and r["speaker"] == spk)
        by_speaker.append(row)
    short = {STUDENT: "student", TEACHER: "teacher", DISTILLED: "distilled", DAE_PRE: "DAE", DAE_ADAPTED: "ADAE"}
    parts.append(format_table(
        by_speaker, [("speaker", "speaker", "s"), *[(n, short.get(n, n), "+.2f") for n in methods]],
        title="SI-SDRi (dB) per target speaker",
    ))
    for metric, fmt in (("pesq", ".2f"), ("estoi", ".3f")):
        by_snr = []
        for snr in SNRS:
            row = {"snr": f"{snr:+g} dB"}
            for name in summary:
                row[name] = mean(r[metric] for r in rows if r["method"] == name and r["snr_db"] == snr)
            by_snr.append(row)
        parts.append(format_table(
            by_snr, [("snr", "SNR", "s"), *[(n, short.get(n, n), fmt) for n in summary]],
            title=f"{metric.upper() if metric == 'pesq' else 'eSTOI'} per input SNR",
        ))
    return "\n\n".join(parts)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"developer audio set [default {DEFAULT_DATA}]")
    p.add_argument("--out", type=Path, default=None, help="output folder [default benchmarks/results/neural-<time>/]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speakers", default=None, help="count or comma-separated ids [default 8; 2 with --quick]")
    p.add_argument("--n-test", type=int, default=4, help="test utterances per target [default 4]")
    p.add_argument("--other-seconds", type=float, default=None,
                   help="speech per other speaker for the generalists [default 24; 6 with --quick]")
    p.add_argument("--noisy-seconds", type=float, default=60.0, help="noisy-only audio per target [default 60]")
    p.add_argument("--enroll-seconds", type=float, default=30.0, help="the teacher's enrollment [default 30]")
    p.add_argument("--max-epochs", type=int, default=None, help="generalists' max epochs [default 50; 10 with --quick]")
    p.add_argument("--patience", type=int, default=5, help="generalists' early-stopping patience [default 5]")
    p.add_argument("--no-cache", action="store_true", help="train the generalists even if cached (and do not cache)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes (targets run in parallel; 2 also trains the generalists side by side) "
                        "[default 1]")
    p.add_argument("--quick", action="store_true", help="2 speakers, smaller generalists' training")
    add_quiet_argument(p)
    args = p.parse_args(argv)
    if args.speakers is None:
        args.speakers = "2" if args.quick else "8"
    if args.other_seconds is None:
        args.other_seconds = 6.0 if args.quick else 24.0
    if args.max_epochs is None:
        args.max_epochs = 10 if args.quick else 50
    if args.n_test < 1:
        p.error("--n-test must be at least 1")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    return args


def main(argv=None):
    run(parse_args(argv))


if __name__ == "__main__":
    main()
