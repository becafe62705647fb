"""Selection benchmark: test-time model selection and combination beside the generalist (issue 15, item 6).

Protocol: the dev protocol of ``generalist.py`` / ``neural.py`` (the same seeded, gender-stratified 8 target
speakers, or 2 with ``--quick``; per target the same ``--n-test`` test utterances at -5, 0 and 5 dB with the
odd-indexed noise clips and the same 30 s of clean enrollment). Rows:

* the noisy input, RNNoise, the personal SemiSupervisedNMF (fitted on the enrollment), the pretrained generalist;
* ``ensemble gen+SSNMF``: :class:`pse_nmf.EnsembleEnhancer` of the generalist and the personal SSNMF, equal
  waveform weights; ``... fit_weights``: weights fitted per target on other utterances of the target mixed with
  the even-indexed clips (as in ``ensemble.py``);
* for every sparse mixture of experts given (``--experts NAME=PATH``, default ``pretrained("experts")``): the
  gated model (one specialist per segment), the same with one choice per input (``segment_seconds=None``), and
  the **oracle specialist** (per mixture the specialist of the best SI-SDR, each run alone: the gate's upper
  bound);
* ``... oracle weights``: the ensemble's weights fitted on each test mixture itself (its upper bound);
* ``AE selector``: :class:`pse_nmf.neural.AutoencoderSelector` over (generalist, RNNoise, the equal-weight
  ensemble) scored by the personal SSNMF speech model's reconstruction error, and its oracle (the best
  candidate of the three per mixture).

Metrics: SI-SDRi, wide-band PESQ, eSTOI, parameters, MMAC/s (``complexity``: the networks that run per frame)
and the real-time factor on one thread (enhancement time / audio time over the test mixtures).

Run ``python benchmarks/selection.py --quick`` (2 speakers) or ``python benchmarks/selection.py``.
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
from neural import SNRS, SR, _score, _teacher, make_task, nmf_macs_per_second, split_noise, torch  # noqa: E402

import numpy as np  # noqa: E402

import pse_nmf  # noqa: E402
from pse_nmf.neural import complexity  # noqa: E402

GEN = "pretrained generalist"
NMF = "SSNMF personal"
RNN = "RNNoise"
ENS = "ensemble gen+SSNMF"
ENS_FIT = "ensemble gen+SSNMF fit_weights"


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def parse_models(values):
    out = []
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"expected NAME=PATH of an existing file, got {value!r}")
        out.append((name, Path(path)))
    return out


def cost(model):
    try:
        c = complexity(model)
    except (ValueError, TypeError, AttributeError):
        return None
    return {"parameters": c["parameters"], "macs_per_second": c["macs_per_second"]}


def validation_mixtures(data, even, speaker, task, n_test, n_valid, seed):
    """Other utterances of the target mixed with even-indexed clips, for fit_weights (as ensemble.py)."""
    more = pse_nmf.datasets.make_personalization_task(data / "speech", even, speaker, enroll_seconds=30.0, snrs=SNRS,
                                             n_test=n_test + n_valid, random_state=seed)
    used = {t.utterance for t in task.test} | set(task.enrollment_utterances)
    return [t for t in more.test if t.utterance not in used]


def run(args):
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    data = check_data(args.data)
    speakers = read_speakers(data)
    targets, _ = parse_speakers("2" if args.quick else args.speakers, speakers, args.seed)
    info = machine_info()
    out = make_out_dir(args.out, "selection")
    train_noise, test_noise = split_noise(data)
    log(format_machine_info(info))
    log(f"{len(targets)} target(s): {', '.join(targets)}")

    from pse_nmf.neural import AutoencoderSelector, pretrained, pretrained_models

    generalist = pretrained("generalist")
    rnnoise = pse_nmf.RNNoiseEnhancer(sr=SR)
    mixtures_of_experts = parse_models(args.experts)
    if not mixtures_of_experts and "experts" in pretrained_models():
        mixtures_of_experts = [("experts", None)]
    moes = {}
    for name, path in mixtures_of_experts:
        moes[name] = pretrained("experts") if path is None else pse_nmf.load(path)
        log(f"{name}: {type(moes[name]).__name__}, partition {moes[name].partition}, "
            f"{[n for n, _ in moes[name].experts]}")

    shared = {RNN: lambda x: rnnoise.denoise(x, sr=SR), GEN: lambda x: generalist.denoise(x, sr=SR)}
    costs = {RNN: None, GEN: cost(generalist), NMF: nmf_macs_per_second(_teacher(args.seed))}
    whole = {}
    for name, moe in moes.items():
        shared[f"{name} (gate, {moe.segment_seconds:g} s segments)" if moe.segment_seconds else f"{name} (gate)"] = \
            (lambda x, m=moe: m.denoise(x, sr=SR))
        costs[list(shared)[-1]] = cost(moe)
        whole[name] = _clone_whole(moe)
        shared[f"{name} (gate, one choice per input)"] = lambda x, m=whole[name]: m.denoise(x, sr=SR)
        costs[list(shared)[-1]] = cost(moe)

    rows, enhance_s, audio_s, choices = [], {}, {}, {}
    pairs = list(zip(targets, derived_seeds(args.seed, len(targets), stream=0)))
    for k, (spk, seed) in enumerate(progress(pairs, "targets", quiet=args.quiet)):
        t0 = time.perf_counter()
        task, _ = make_task(data, test_noise, spk, args.n_test, 0.0, 30.0, seed, int(speakers[spk]["n_utts"]))
        if args.skip_baselines:  # the generalist and the mixtures of experts only
            methods = {"noisy": lambda x: x, GEN: shared[GEN],
                       **{n: f for n, f in shared.items() if n not in (RNN, GEN)}}
            _run_mixtures(task, spk, methods, moes, rows, enhance_s, audio_s, choices, ensembles=None)
            log(f"[{k + 1}/{len(targets)}] {spk} ({time.perf_counter() - t0:.0f} s)")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            personal = _teacher(args.seed).fit(task.enrollment)
        ens = pse_nmf.EnsembleEnhancer([("generalist", generalist), ("ssnmf", personal)]).fit()
        valid = validation_mixtures(data, train_noise, spk, task, args.n_test, args.n_valid, seed)
        ens_fit = pse_nmf.EnsembleEnhancer([("generalist", generalist), ("ssnmf", personal)]).fit_weights(
            [t.mixture for t in valid], [t.speech for t in valid])
        # the SSNMF's own output is left out of the candidates: its speech dictionary scores it (its output is
        # the dictionary's reconstruction, masked), which it prefers every time (measured: 6 of 6 in --quick)
        selector = AutoencoderSelector([("generalist", generalist), ("rnnoise", rnnoise), ("ensemble", ens)],
                                       scorer=personal).fit()
        methods = {"noisy": lambda x: x, NMF: lambda x: personal.denoise(x, sr=SR), **shared,
                   ENS: lambda x: ens.denoise(x, sr=SR), ENS_FIT: lambda x: ens_fit.denoise(x, sr=SR),
                   "AE selector (SSNMF speech model)": lambda x: selector.denoise(x, sr=SR)}
        _run_mixtures(task, spk, methods, moes, rows, enhance_s, audio_s, choices,
                      ensembles=(generalist, personal))
        outputs = {r["method"]: None for r in rows if r["speaker"] == spk}
        line = ", ".join(f"{n} {mean(r['si_sdri'] for r in rows if r['speaker'] == spk and r['method'] == n):+.2f}"
                         for n in (GEN, NMF, ENS, *[r for r in outputs if "oracle" in r or "gate" in r]))
        log(f"[{k + 1}/{len(targets)}] {spk}: {line} ({time.perf_counter() - t0:.0f} s); fit_weights "
            f"{np.round(ens_fit.weights_, 2).tolist()}")

    order = list(dict.fromkeys(r["method"] for r in rows))
    summary = {}
    for name in order:
        mr = [r for r in rows if r["method"] == name]
        c = costs.get(name) or {}
        summary[name] = {
            "n": len(mr), "si_sdri": mean(r["si_sdri"] for r in mr), "ci95": ci95([r["si_sdri"] for r in mr]),
            **{f"si_sdri@{s:g}": mean(r["si_sdri"] for r in mr if r["snr_db"] == s) for s in SNRS},
            "pesq": mean(r["pesq"] for r in mr), "estoi": mean(r["estoi"] for r in mr),
            "parameters": c.get("parameters"),
            "mmacs_per_second": c["macs_per_second"] / 1e6 if c else None,
            "rtf": enhance_s[name] / audio_s[name] if name in enhance_s and name != "noisy" else None,
        }
    key = lambda r: (r["speaker"], r["utterance"], r["snr_db"])  # noqa: E731

    def paired(a, b):
        rb = {key(r): r["si_sdri"] for r in rows if r["method"] == b}
        d = [r["si_sdri"] - rb[key(r)] for r in rows if r["method"] == a]
        return {"mean": mean(d), "ci95": ci95(d), "wins": float(np.mean(np.array(d) > 0))}

    pairs = [(n, GEN) for n in order if n not in (GEN, "noisy", ENS, ENS_FIT)]
    if NMF in summary:
        better = GEN if summary[GEN]["si_sdri"] >= summary[NMF]["si_sdri"] else NMF
        pairs = [(ENS, better), (ENS_FIT, better)] + pairs
    diffs = {f"{a} - {b}": paired(a, b) for a, b in pairs}
    agreement = {name: float(np.mean([c["oracle"] == max(set(c["gate"]), key=c["gate"].count) for c in cs]))
                 for name, cs in choices.items()}
    total_s = time.perf_counter() - t_start
    print(format_machine_info(info))
    print()
    print(format_table([{"method": n, **s} for n, s in summary.items()],
                       [("method", "method", "s"), ("n", "n", "d"), ("si_sdri", "SI-SDRi", "+.2f"), ("ci95", "±95%", ".2f"),
                        *[(f"si_sdri@{s:g}", f"@{s:+g}dB", "+.2f") for s in SNRS], ("pesq", "PESQ", ".2f"),
                        ("estoi", "eSTOI", ".3f"), ("parameters", "params", "d"), ("mmacs_per_second", "MMAC/s", ".1f"),
                        ("rtf", "RTF", ".4f")],
                       title=f"dev protocol, {len(targets)} target(s), {args.n_test} utterances x {len(SNRS)} SNRs"))
    print()
    print(format_table([{"pair": p, **d} for p, d in diffs.items()],
                       [("pair", "paired difference", "s"), ("mean", "dSI-SDRi", "+.2f"), ("ci95", "±95%", ".2f"),
                        ("wins", "wins", ".0%")]))
    for name, a in agreement.items():
        print(f"{name}: the gate's (majority) choice is the oracle specialist on {a:.0%} of the mixtures")
    print(f"\ntotal wall time {total_s:.0f} s")
    write_csv(rows, out / "mixtures.csv")
    write_json({"benchmark": "selection", "protocol": {"seed": args.seed, "targets": targets, "n_test": args.n_test,
                "n_valid": args.n_valid, "snrs_db": list(SNRS), "experts": {n: str(p) for n, p in mixtures_of_experts}},
                "machine": info, "methods": summary, "paired": diffs, "gate_oracle_agreement": agreement,
                "choices": choices, "total_wall_s": total_s}, out / "summary.json")
    print(f"wrote {out / 'summary.json'}")
    return summary, diffs


def _run_mixtures(task, spk, methods, moes, rows, enhance_s, audio_s, choices, ensembles):
    """Enhance and score every test mixture of a target with every method, and the oracles."""
    for m in task.test:
        mix = _score(m.mixture, m.speech)
        outputs = {}
        for name, f in methods.items():
            est, seconds = timed(f, m.mixture)
            outputs[name] = est
            enhance_s[name] = enhance_s.get(name, 0.0) + seconds
            audio_s[name] = audio_s.get(name, 0.0) + m.mixture.size / SR
        # oracles: the best specialist of each mixture of experts, the best candidate of the selector
        for name, moe in moes.items():
            alone = {n: e.denoise(m.mixture, sr=SR) for n, e in moe._members()}
            best = max(alone, key=lambda n: pse_nmf.metrics.si_sdr(alone[n], m.speech))
            outputs[f"{name} oracle specialist"] = alone[best]
            choices.setdefault(name, []).append({"speaker": spk, "snr_db": m.snr_db, "oracle": best,
                                                 "gate": moe.choose(m.mixture, sr=SR)})
        if ensembles is not None:
            generalist, personal = ensembles
            # the ensemble's upper bound: weights fitted on the test mixture itself
            oracle_w = pse_nmf.EnsembleEnhancer([("generalist", generalist), ("ssnmf", personal)]).fit_weights(
                [m.mixture], [m.speech])
            outputs[f"{ENS} oracle weights"] = oracle_w.denoise(m.mixture, sr=SR)
            cands = {"generalist": outputs[GEN], "rnnoise": outputs[RNN], "ensemble": outputs[ENS]}
            outputs["AE selector oracle"] = cands[max(cands, key=lambda n: pse_nmf.metrics.si_sdr(cands[n], m.speech))]
        for name, est in outputs.items():
            s = mix if name == "noisy" else _score(est, m.speech)
            rows.append({"method": name, "speaker": spk, "utterance": m.utterance, "noise_type": m.noise_type,
                         "snr_db": m.snr_db, "si_sdr": s["si_sdr"], "si_sdri": s["si_sdr"] - mix["si_sdr"],
                         "pesq": s["pesq"], "estoi": s["estoi"]})


def _clone_whole(moe):
    """The same fitted mixture of experts with one choice per input (``segment_seconds=None``)."""
    import copy

    other = copy.copy(moe)
    other.set_params(segment_seconds=None)
    other.module_ = copy.copy(moe.module_)  # the networks shared, the segment length its own
    return other


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speakers", default="8", help="count or ids [default 8]")
    p.add_argument("--quick", action="store_true", help="2 target speakers")
    p.add_argument("--n-test", type=int, default=4)
    p.add_argument("--n-valid", type=int, default=4, help="validation utterances per target for fit_weights")
    p.add_argument("--experts", action="append", help="NAME=PATH of a SparseMixtureOfExperts (repeatable)")
    p.add_argument("--skip-baselines", action="store_true",
                   help="only the generalist and the mixtures of experts (and their oracles)")
    add_quiet_argument(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    run(parse_args())
