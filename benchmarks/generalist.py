"""Generalist benchmark: the pretrained neural generalist beside RNNoise and the other baselines (issue 14).

Protocol (see benchmarks/README.md, section "generalist.py"): the dev protocol of ``neural.py``, so the
figures are comparable with it:

* the same seeded, gender-stratified target speakers (8, or 2 with ``--quick``);
* the same noise split: even-indexed clips of every type train the old GRU generalist, odd-indexed clips
  make the test mixtures;
* per target, the same test mixtures (``neural.make_task``: :func:`pse_nmf.datasets.make_personalization_task`
  with ``--n-test`` utterances at -5, 0 and 5 dB) and the same 30 s of clean enrollment, used by the
  personal SemiSupervisedNMF only;
* rows: the noisy input, the oracle ratio mask (ceiling), RNNoise (:class:`pse_nmf.RNNoiseEnhancer`),
  noisereduce, the personal SemiSupervisedNMF, the old 2x64 GRU generalist (trained, or loaded from
  ``neural.py``'s cache, exactly as there), the pretrained generalist (``pse_nmf.neural.pretrained(
  "generalist")``, or ``--generalist PATH``), and any ``--extra NAME=PATH`` saved models;
* SI-SDRi, wide-band PESQ, eSTOI, parameters, MMAC/s and the real-time factor on one thread; a 10 s input
  timed separately, and the first call of the generalist (and of RNNoise) in a fresh process;
* with ``--dnsmos``, the no-reference DNSMOS P.835 scores (``pse_nmf.metrics.dnsmos``: sig, bak, ovrl, p808) of
  every row's output, the scores a user without clean references would see.

Run ``python benchmarks/generalist.py --quick`` (2 speakers) or ``python benchmarks/generalist.py``.
Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_DATA,
    add_quiet_argument,
    progress,
    REPO_ROOT,
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
    timed,
    write_csv,
    write_json,
)

# the dev protocol and the old generalist's training and cache come from neural.py (which needs torch)
from neural import (  # noqa: E402
    SNRS,
    SR,
    STUDENT,
    OtherSpeech,
    _count,
    _score,
    _student,
    _teacher,
    cached_fit,
    make_task,
    nmf_macs_per_second,
    split_noise,
    torch,
)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import pse_nmf  # noqa: E402
from pse_nmf.neural import complexity  # noqa: E402

RNNOISE = "RNNoise"
NOISEREDUCE = "noisereduce"
PERSONAL = "SSNMF personal"
OLD_GRU = STUDENT  # "GRU 2x64 generalist", the name neural.py gives it
GENERALIST = "pretrained generalist"
REFERENCE_ROWS = ("noisy", "oracle IRM")
#: Seconds of audio of the separately timed input.
TIMING_SECONDS = 10.0
TIMING_REPEATS = 3


DNSMOS_KEYS = ("sig", "bak", "ovrl", "p808")

def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


# -- models -----------------------------------------------------------------------------------------------
def load_generalist(path):
    """The pretrained generalist and where it came from: ``path`` if given, else ``pretrained("generalist")``.

    Returns ``(None, reason)`` when neither is available (the row is then skipped).
    """
    if path is not None:
        return pse_nmf.load(path), {"kind": "file", "path": str(Path(path).resolve())}
    try:
        from pse_nmf.neural import pretrained
    except ImportError:
        return None, {"kind": None, "reason": "pse_nmf.neural.pretrained does not exist (yet); pass --generalist PATH"}
    return pretrained("generalist"), {"kind": "pretrained", "name": "generalist"}


def parse_extra(values):
    """``--extra NAME=PATH`` values as ``[(name, path)]``."""
    out = []
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise SystemExit(f"--extra expects NAME=PATH, got {value!r}")
        if not Path(path).is_file():
            raise SystemExit(f"--extra {name}: no model file at {path!r}")
        out.append((name.strip(), Path(path.strip())))
    return out


def neural_cost(model):
    """``complexity(model)`` as the table's cost dict, or None when it does not apply."""
    try:
        c = complexity(model)
    except (ValueError, TypeError, AttributeError):
        return None
    return {"parameters": c["parameters"], "macs_per_second": c["macs_per_second"]}


def _noisereduce():
    try:
        import noisereduce
    except ImportError:
        return None
    return lambda x: noisereduce.reduce_noise(y=x, sr=SR)


# -- timing -----------------------------------------------------------------------------------------------
def timing_input(task):
    """About ``TIMING_SECONDS`` of one target's 0 dB test mixtures, concatenated and cut."""
    parts = [m.mixture for m in task.test if m.snr_db == 0.0]
    y = np.concatenate(parts)
    while y.size < TIMING_SECONDS * SR:
        y = np.concatenate([y, y])
    return np.ascontiguousarray(y[: int(TIMING_SECONDS * SR)], dtype=np.float32)


def time_10s(enhance, x):
    """Median RTF of ``TIMING_REPEATS`` calls on ``x`` after one warm-up call."""
    enhance(x)
    seconds = [timed(enhance, x)[1] for _ in range(TIMING_REPEATS)]
    return float(np.median(seconds)) / (x.size / SR)


_FIRST_CALL = r"""
import json, os, sys, time
import numpy as np
x = np.load(sys.argv[1])
t0 = time.perf_counter()
import pse_nmf
{imports}
t1 = time.perf_counter()
{build}
t2 = time.perf_counter()
y = model.denoise(x, sr=16000)
t3 = time.perf_counter()
assert y.shape == x.shape
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "first_call_s": t3 - t2}}))
"""


def first_call(source, x_path):
    """Import, load and first-denoise times of a model in a fresh one-thread process (a dict), or None."""
    if source["kind"] == "rnnoise":
        imports, build = "", "model = pse_nmf.RNNoiseEnhancer()"
    elif source["kind"] == "pretrained":
        imports = "import torch; torch.set_num_threads(1); from pse_nmf.neural import pretrained"
        build = f"model = pretrained({source['name']!r})"
    elif source["kind"] == "file":
        imports = "import torch; torch.set_num_threads(1); import pse_nmf.neural"
        build = f"model = pse_nmf.load({source['path']!r})"
    else:
        return None
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    code = _FIRST_CALL.format(imports=imports, build=build)
    proc = subprocess.run([sys.executable, "-c", code, str(x_path)], capture_output=True, text=True, env=env,
                          cwd=str(REPO_ROOT))
    if proc.returncode != 0:
        log(f"first-call measurement failed ({source}):\n{proc.stderr.strip()[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- running ----------------------------------------------------------------------------------------------
def run(args):
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    data = check_data(args.data)
    speakers = read_speakers(data)
    targets, others = parse_speakers(args.speakers, speakers, args.seed)
    info = machine_info()
    for mod in ("torch", "pyrnnoise"):
        try:
            info[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            info[mod] = None
    out = make_out_dir(args.out, "generalist")
    train_noise, test_noise = split_noise(data)
    extras = parse_extra(args.extra)

    log(format_machine_info(info))
    log(f"data: {data}; seed {args.seed}; torch {info['torch']}, pyrnnoise {info['pyrnnoise']}; one thread")
    log(f"{len(targets)} target(s): " + ", ".join(f"{s} ({speakers[s]['gender']}, {speakers[s]['age_group']})"
                                                  for s in targets))

    # every model shared by the targets, built before the per-target loop
    generalist, g_source = load_generalist(args.generalist)
    if generalist is None:
        log(f"{GENERALIST}: skipped: {g_source['reason']}")
    else:
        log(f"{GENERALIST}: {g_source}: {type(generalist).__name__}")
    data_spec = {"others": others, "other_seconds": args.other_seconds, "seed": args.seed,
                 "noise": "even-indexed clips", "data": str(data)}
    speech = OtherSpeech(data, others, args.other_seconds, args.seed)
    old_gru, old_gru_train_s, lines = cached_fit(_student(args), data_spec, speech, train_noise, not args.no_cache)
    for line in lines:
        log("  " + line)
    rnnoise = pse_nmf.RNNoiseEnhancer(sr=SR)
    reduce = _noisereduce()
    if reduce is None:
        log(f"{NOISEREDUCE}: skipped: noisereduce is not installed (pip install noisereduce)")

    shared = {RNNOISE: lambda x: rnnoise.denoise(x, sr=SR)}
    if reduce is not None:
        shared[NOISEREDUCE] = reduce
    shared[OLD_GRU] = lambda x: old_gru.denoise(x, sr=SR)
    if generalist is not None:
        shared[GENERALIST] = lambda x, g=generalist: g.denoise(x, sr=SR)
    extra_models = {}
    for name, path in extras:
        extra_models[name] = pse_nmf.load(path)
        shared[name] = lambda x, m=extra_models[name]: m.denoise(x, sr=SR)
        log(f"extra {name}: {path} ({type(extra_models[name]).__name__})")

    costs = {"noisy": None, "oracle IRM": None, RNNOISE: None, NOISEREDUCE: None,
             PERSONAL: nmf_macs_per_second(_teacher(args.seed)), OLD_GRU: neural_cost(old_gru)}
    if generalist is not None:
        costs[GENERALIST] = neural_cost(generalist)
    for name, model in extra_models.items():
        costs[name] = neural_cost(model)
    order = ["noisy", "oracle IRM", RNNOISE, NOISEREDUCE, PERSONAL, OLD_GRU, GENERALIST, *extra_models]

    rows, wcounts, fit_s = [], {}, []
    enhance_s = {name: 0.0 for name in order}
    audio_s = {name: 0.0 for name in order}
    warmed = set()
    timing_x = None
    task_seeds = derived_seeds(args.seed, len(targets), stream=0)
    for k, (spk, ts) in enumerate(progress(list(zip(targets, task_seeds)), "targets", quiet=args.quiet)):
        task, _ = make_task(data, test_noise, spk, args.n_test, 0.0, args.enroll_seconds, ts,
                            int(speakers[spk]["n_utts"]))
        if timing_x is None:
            timing_x = timing_input(task)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            personal, t_fit = timed(_teacher(args.seed).fit, task.enrollment)
        _count(caught, wcounts)
        fit_s.append(t_fit)
        enhancers = {"noisy": lambda m: m.mixture,
                     "oracle IRM": lambda m: pse_nmf.audio.oracle_mask_denoise(m.mixture, m.speech)}
        for name in order[2:]:
            if name == PERSONAL:
                enhancers[name] = lambda m, p=personal: p.denoise(m.mixture, sr=SR)
            elif name in shared:
                enhancers[name] = lambda m, f=shared[name]: f(m.mixture)
        for name, enhance in enhancers.items():
            if name not in warmed:  # lazy imports, Numba compilation and caches stay out of the timings
                enhance(task.test[0])
                warmed.add(name)
        for m in task.test:
            mix = _score(m.mixture, m.speech)
            for name, enhance in enhancers.items():
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    est, seconds = timed(enhance, m)
                _count(caught, wcounts)
                if est.shape != m.mixture.shape:
                    raise RuntimeError(f"{name} returned {est.shape} for a mixture of {m.mixture.shape}")
                enhance_s[name] += seconds
                audio_s[name] += m.mixture.size / SR
                s = mix if name == "noisy" else _score(est, m.speech)
                rows.append({
                    "method": name, "speaker": spk, "gender": speakers[spk]["gender"], "utterance": m.utterance,
                    "noise_type": m.noise_type, "snr_db": m.snr_db, "si_sdr": s["si_sdr"],
                    "si_sdri": s["si_sdr"] - mix["si_sdr"], "pesq": s["pesq"], "estoi": s["estoi"],
                    "pesq_mixture": mix["pesq"], "estoi_mixture": mix["estoi"], "enhance_s": seconds,
                })
                if args.dnsmos:  # no-reference P.835 scores (pse_nmf.metrics.dnsmos), of this output alone
                    rows[-1].update({f"dnsmos_{k}": v for k, v in pse_nmf.metrics.dnsmos(est, SR).items()})
        mine = [r for r in rows if r["speaker"] == spk]
        parts = ", ".join(f"{name} {mean(r['si_sdri'] for r in mine if r['method'] == name):+.2f}"
                          for name in enhancers if name not in REFERENCE_ROWS)
        log(f"[{k + 1}/{len(targets)}] {spk}: SSNMF fit {t_fit:.1f} s; SI-SDRi {parts} dB")

    log(f"timing: {TIMING_SECONDS:g} s input, median of {TIMING_REPEATS} calls after a warm-up, one thread")
    rtf10 = {}
    for name in order[2:]:
        if name == PERSONAL:
            continue  # fitted per target; its RTF on the test mixtures is in the table
        if name in shared:
            rtf10[name] = time_10s(shared[name], timing_x)
    first = {}
    with tempfile.TemporaryDirectory() as tmp:
        x_path = Path(tmp) / "x.npy"
        np.save(x_path, timing_x)
        log("first call after import, in a fresh process")
        first[RNNOISE] = first_call({"kind": "rnnoise"}, x_path)
        if generalist is not None:
            first[GENERALIST] = first_call(g_source, x_path)

    summary = summarize(rows, order, costs, enhance_s, audio_s, rtf10, first)
    checks = target_checks(rows, summary, generalist is not None)
    total_s = time.perf_counter() - t_start
    print(format_machine_info(info))
    print(f"generalist: {g_source}")
    print()
    print(report(rows, summary, targets, args.n_test, extras))
    print()
    print(format_checks(checks))
    if wcounts:
        print("\nwarnings:")
        for (cat, msg), n in sorted(wcounts.items()):
            print(f"  {n} x {cat}: {msg}")
    print(f"\ntotal wall time {total_s:.0f} s ({total_s / 60:.1f} min)")
    write_csv(rows, out / "mixtures.csv")
    write_json({
        "benchmark": "generalist",
        "protocol": {"seed": args.seed, "targets": targets, "other_speakers": others, "n_test": args.n_test,
                     "snrs_db": list(SNRS), "enroll_seconds": args.enroll_seconds, "quick": args.quick,
                     "personal_params": _teacher(args.seed).get_params(), "old_gru_params": old_gru.get_params(),
                     "old_gru_train_s": old_gru_train_s, "generalist": g_source,
                     "generalist_params": None if generalist is None else generalist.get_params(),
                     "extras": {name: str(path) for name, path in extras}, "timing_seconds": TIMING_SECONDS},
        "machine": info, "methods": summary, "checks": checks, "personal_fit_s": fit_s, "total_wall_s": total_s,
        "warnings": [{"category": c, "message": msg, "count": n} for (c, msg), n in wcounts.items()],
    }, out / "summary.json")
    print(f"wrote {out / 'mixtures.csv'} and {out / 'summary.json'}")
    return summary, checks


def summarize(rows, order, costs, enhance_s, audio_s, rtf10, first):
    out = {}
    for name in order:
        mr = [r for r in rows if r["method"] == name]
        if not mr:
            continue
        c = costs.get(name) or {}
        f = first.get(name) or {}
        s = {
            "n": len(mr),
            "si_sdri": mean(r["si_sdri"] for r in mr),
            "si_sdri_ci95": ci95([r["si_sdri"] for r in mr]),
            "pesq": mean(r["pesq"] for r in mr),
            "estoi": mean(r["estoi"] for r in mr),
            "parameters": c.get("parameters"),
            "mmacs_per_second": None if not c else c["macs_per_second"] / 1e6,
            "rtf": None if name == "noisy" else enhance_s[name] / audio_s[name],
            "rtf_10s": rtf10.get(name),
            "import_s": f.get("import_s"),
            "load_s": f.get("load_s"),
            "first_call_s": f.get("first_call_s"),
        }
        for snr in SNRS:
            s[f"si_sdri@{snr:g}"] = mean(r["si_sdri"] for r in mr if r["snr_db"] == snr)
        for key in DNSMOS_KEYS:
            if all(f"dnsmos_{key}" in r for r in mr):
                s[f"dnsmos_{key}"] = mean(r[f"dnsmos_{key}"] for r in mr)
        out[name] = s
    return out


def paired(rows, a, b, metric="si_sdri"):
    """Per-mixture differences ``a - b`` of ``metric`` on the mixtures both were scored on."""
    key = lambda r: (r["speaker"], r["utterance"], r["snr_db"])  # noqa: E731
    rb = {key(r): r[metric] for r in rows if r["method"] == b}
    return [r[metric] - rb[key(r)] for r in rows if r["method"] == a and key(r) in rb]


def target_checks(rows, summary, have_generalist):
    if not have_generalist:
        return [{"target": "pretrained generalist", "value": "not measured (no model)", "met": None}]
    d = {m: paired(rows, GENERALIST, RNNOISE, m) for m in ("si_sdri", "estoi", "pesq")}
    d_personal = paired(rows, GENERALIST, PERSONAL)
    g = summary[GENERALIST]
    checks = [
        {"target": "generalist - RNNoise SI-SDRi >= 1 dB",
         "value": f"{mean(d['si_sdri']):+.2f} dB (±{ci95(d['si_sdri']):.2f})", "met": bool(mean(d["si_sdri"]) >= 1.0)},
        {"target": "generalist - RNNoise eSTOI > 0",
         "value": f"{mean(d['estoi']):+.3f} (±{ci95(d['estoi']):.3f})", "met": bool(mean(d["estoi"]) > 0)},
        {"target": "generalist - RNNoise PESQ > 0",
         "value": f"{mean(d['pesq']):+.2f} (±{ci95(d['pesq']):.2f})", "met": bool(mean(d["pesq"]) > 0)},
        {"target": "generalist - personal SSNMF SI-SDRi > 0",
         "value": f"{mean(d_personal):+.2f} dB (±{ci95(d_personal):.2f})", "met": bool(mean(d_personal) > 0)},
    ]
    params = g["parameters"]
    checks.append({"target": "generalist parameters <= 100k",
                   "value": "unknown" if params is None else f"{params}",
                   "met": None if params is None else bool(params <= 100_000)})
    rtf = g["rtf_10s"]
    checks.append({"target": f"generalist RTF <= 0.05 on one thread ({TIMING_SECONDS:g} s input)",
                   "value": "-" if rtf is None else f"{rtf:.4f} (RNNoise {summary[RNNOISE]['rtf_10s']:.4f})",
                   "met": None if rtf is None else bool(rtf <= 0.05)})
    fc = g["first_call_s"]
    if fc is None:
        checks.append({"target": "generalist first call after import <= 2 s", "value": "-", "met": None})
    else:
        total = g["load_s"] + fc
        checks.append({"target": "generalist first call after import <= 2 s (model load + first denoise)",
                       "value": f"{total:.2f} s (load {g['load_s']:.2f} + denoise {fc:.2f}; the import itself "
                                f"{g['import_s']:.2f} s)",
                       "met": bool(total <= 2.0)})
    return checks


def format_checks(checks):
    lines = ["Targets (issue 14)"]
    for c in checks:
        mark = "   " if c["met"] is None else ("MET" if c["met"] else "NOT MET")
        lines.append(f"  [{mark}] {c['target']}: {c['value']}")
    return "\n".join(lines)


def report(rows, summary, targets, n_test, extras):
    snr_cols = [(f"si_sdri@{s:g}", f"@{s:+g}dB", "+.2f") for s in SNRS]
    dnsmos_cols = [(f"dnsmos_{k}", f"DNSMOS {k}", ".2f") for k in DNSMOS_KEYS
                   if any(f"dnsmos_{k}" in s for s in summary.values())]
    parts = [format_table(
        [{"method": name, **s} for name, s in summary.items()],
        [("method", "method", "s"), ("n", "n", "d"), ("si_sdri", "SI-SDRi", "+.2f"), ("si_sdri_ci95", "±95%", ".2f"),
         *snr_cols, ("pesq", "PESQ", ".2f"), ("estoi", "eSTOI", ".3f"), *dnsmos_cols, ("parameters", "params", "d"),
         ("mmacs_per_second", "MMAC/s", ".1f"), ("rtf", "RTF", ".4f"), ("rtf_10s", "RTF 10s", ".4f")],
        title=(f"Generalist: {len(targets)} target(s) x {n_test} utterance(s) x {len(SNRS)} SNRs (means; SI-SDRi "
               "dB; PESQ wide band; MMAC/s = 1e6 multiply-accumulates per second of audio; RTF = enhancement time "
               f"/ audio duration on one thread, over the test mixtures and on one {TIMING_SECONDS:g} s input)"),
    )]
    compared = [n for n in (GENERALIST, *(name for name, _ in extras), OLD_GRU) if n in summary]
    pairs = [(a, b) for a in compared for b in (RNNOISE, PERSONAL)] + [(RNNOISE, PERSONAL)]
    diff_rows = []
    for a, b in pairs:
        if a not in summary or b not in summary:
            continue
        d = paired(rows, a, b)
        diff_rows.append({"pair": f"{a} - {b}", "n": len(d), "d": mean(d), "ci": ci95(d),
                          "dpesq": mean(paired(rows, a, b, "pesq")), "destoi": mean(paired(rows, a, b, "estoi")),
                          "wins": f"{100 * np.mean(np.asarray(d) > 0):.0f}%"})
    if diff_rows:
        parts.append(format_table(
            diff_rows, [("pair", "paired difference", "s"), ("n", "n", "d"), ("d", "dSI-SDRi", "+.2f"),
                        ("ci", "±95%", ".2f"), ("dpesq", "dPESQ", "+.2f"), ("destoi", "deSTOI", "+.3f"),
                        ("wins", "wins", "s")],
            title="Differences on the same mixtures (wins = share of mixtures where the first has the higher SI-SDR)"))
    first_rows = [{"method": n, **summary[n]} for n in summary if summary[n].get("first_call_s") is not None]
    if first_rows:
        parts.append(format_table(
            first_rows, [("method", "method", "s"), ("import_s", "import s", ".2f"), ("load_s", "load s", ".2f"),
                         ("first_call_s", f"1st denoise ({TIMING_SECONDS:g} s) s", ".2f")],
            title="First call after import, in a fresh one-thread process"))
    parts.append(
        "Notes: RNNoise's parameters and MACs are not counted: its C library does not expose its weights, and the "
        "bundled 2024 weights are not the 2018 model whose size and FLOPS Valin (2018) reports. "
        "SSNMF personal's MMAC/s is the analytic upper bound of neural.py; its RTF includes learning the noise "
        "atoms of each mixture. noisereduce: no parameters in this sense.")
    return "\n\n".join(parts)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"developer audio set [default {DEFAULT_DATA}]")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder [default benchmarks/results/generalist-<time>/]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speakers", default=None, help="count or comma-separated ids [default 8; 2 with --quick]")
    p.add_argument("--n-test", type=int, default=4, help="test utterances per target [default 4]")
    p.add_argument("--enroll-seconds", type=float, default=30.0, help="the personal SSNMF's enrollment [default 30]")
    p.add_argument("--generalist", type=Path, default=None,
                   help="the pretrained generalist as a saved model file "
                        '[default pse_nmf.neural.pretrained("generalist")]')
    p.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                   help="a further saved model as a row (repeatable)")
    p.add_argument("--other-seconds", type=float, default=None,
                   help="old GRU generalist: speech per other speaker [default 24; 6 with --quick] (as neural.py)")
    p.add_argument("--max-epochs", type=int, default=None,
                   help="old GRU generalist: max epochs [default 50; 10 with --quick] (as neural.py)")
    p.add_argument("--patience", type=int, default=5, help="old GRU generalist: early-stopping patience [default 5]")
    p.add_argument("--no-cache", action="store_true",
                   help="train the old GRU generalist even if cached (and do not cache)")
    p.add_argument("--dnsmos", action="store_true",
                   help="add DNSMOS P.835 columns (sig, bak, ovrl, p808; no reference; needs the dnsmos extra)")
    p.add_argument("--quick", action="store_true", help="2 speakers, smaller old generalist's training")
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
    if args.generalist is not None and not args.generalist.is_file():
        p.error(f"--generalist: no model file at {str(args.generalist)!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    with threadpool_limits(limits=1):
        run(args)


if __name__ == "__main__":
    main()
