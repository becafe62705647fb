"""Can the ensemble's weights be chosen per input? Bounds for input-conditioned weights (issue 15).

The ensemble of the pretrained generalist and a personal SemiSupervisedNMF
reaches about +1 dB over the generalist with weights fitted on each test
mixture (its oracle) but a quarter of that with weights fitted per target on
validation mixtures (``benchmarks/selection.py``). This script asks whether
weights conditioned on something known, or estimable, at test time close the
gap. On the dev protocol of ``selection.py`` (8 targets x 4 utterances x 3
SNRs, validation mixtures from other utterances and the even-indexed noise
clips) it collects both members' outputs once, then scores the waveform
ensemble ``w * generalist + (1 - w) * ssnmf`` on a grid of ``w`` with ``w``:

* fixed (1 = generalist, 0 = SSNMF, 0.5 = equal), per target (``fit_weights``),
* per *true* input SNR band (an oracle of the SNR, per target or pooled),
* regressed from no-reference features of the input and of the two outputs
  (the shipped ``pretrained("snr")`` predicted SNR, the outputs' correlation
  and level ratio, each output's level relative to the input), fitted on the
  validation mixtures,
* per noise type, fitted on the validation clips of that type (what a perfect
  noise classifier would allow) and on the test mixtures themselves (oracle),
* per test mixture (the oracle weights).

Run: OMP_NUM_THREADS=1 python benchmarks/ensemble_conditioning.py [--out runs/ensemble_conditioning]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DEFAULT_DATA, add_quiet_argument, check_data, derived_seeds, parse_speakers, progress, read_speakers,
)
from neural import SR, _teacher, make_task, split_noise, torch  # noqa: E402
from selection import validation_mixtures  # noqa: E402

from pse_nmf.metrics import si_sdr  # noqa: E402

GRID = np.linspace(0.0, 1.0, 51)
FEATURES = ("predicted_snr", "correlation", "level_ratio", "kept_generalist", "kept_ssnmf")


def _db(a, b):
    return float(10 * np.log10(np.sum(a**2) / max(np.sum(b**2), 1e-20)))


def collect(args):
    """Per mixture: the SI-SDRi curve over GRID and the no-reference features."""
    from pse_nmf.neural import pretrained

    torch.set_num_threads(1)
    data = check_data(args.data)
    speakers = read_speakers(data)
    targets, _ = parse_speakers(args.speakers, speakers, args.seed)
    train_noise, test_noise = split_noise(data)
    generalist, snr = pretrained("generalist"), pretrained("snr")
    rows = []
    for spk, seed in progress(list(zip(targets, derived_seeds(args.seed, len(targets), stream=0))), "targets",
                              quiet=args.quiet):
        task, _ = make_task(data, test_noise, spk, args.n_test, 0.0, 30.0, seed, int(speakers[spk]["n_utts"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            personal = _teacher(args.seed).fit(task.enrollment)
        valid = validation_mixtures(data, train_noise, spk, task, args.n_test, args.n_valid, seed)
        for split, mixtures in (("test", task.test), ("valid", valid)):
            for m in mixtures:
                g, s = generalist.denoise(m.mixture, sr=SR), personal.denoise(m.mixture, sr=SR)
                base = si_sdr(m.mixture, m.speech)
                curve = np.array([si_sdr(w * g + (1 - w) * s, m.speech) for w in GRID]) - base
                rows.append({
                    "speaker": spk, "split": split, "snr_db": m.snr_db, "noise_type": m.noise_type, "curve": curve,
                    "predicted_snr": float(np.mean(np.clip(snr.predict_snr(m.mixture, sr=SR), -20, 30))),
                    "correlation": float(np.corrcoef(g, s)[0, 1]), "level_ratio": _db(g, s),
                    "kept_generalist": _db(g, m.mixture), "kept_ssnmf": _db(s, m.mixture)})
    return rows


def _best(curves):
    return int(np.argmax(np.mean(curves, axis=0)))


def analyse(rows):
    """Mean test SI-SDRi of each way of choosing the weight."""
    test = [r for r in rows if r["split"] == "test"]
    valid = [r for r in rows if r["split"] == "valid"]
    speakers = sorted({r["speaker"] for r in rows})

    def score(index_of):
        return float(np.mean([r["curve"][index_of(r)] for r in test]))

    out = {"generalist (w = 1)": score(lambda r: -1), "SSNMF (w = 0)": score(lambda r: 0),
           "equal (w = 0.5)": score(lambda r: len(GRID) // 2)}
    per_target = {s: _best([r["curve"] for r in valid if r["speaker"] == s]) for s in speakers}
    out["per target (fit_weights)"] = score(lambda r: per_target[r["speaker"]])
    bands = sorted({r["snr_db"] for r in rows})
    by_band = {(s, b): _best([r["curve"] for r in valid if r["speaker"] == s and r["snr_db"] == b])
               for s in speakers for b in bands}
    out["per target and true SNR (SNR oracle)"] = score(lambda r: by_band[(r["speaker"], r["snr_db"])])
    pooled = {b: _best([r["curve"] for r in valid if r["snr_db"] == b]) for b in bands}
    out["per true SNR, pooled (SNR oracle)"] = score(lambda r: pooled[r["snr_db"]])
    target_w = np.array([GRID[np.argmax(r["curve"])] for r in valid])
    for feats in (("predicted_snr",), ("correlation",), ("level_ratio",), FEATURES):
        design = lambda rs: np.array([[1.0, *[r[f] for f in feats]] for r in rs])  # noqa: E731
        beta = np.linalg.lstsq(design(valid), target_w, rcond=None)[0]
        w = np.clip(design(test) @ beta, 0, 1)
        out[f"regressed on {' + '.join(feats)}"] = float(np.mean([np.interp(v, GRID, r["curve"])
                                                                for v, r in zip(w, test)]))
    types = sorted({r["noise_type"] for r in test})
    fallback = _best([r["curve"] for r in valid])
    by_type = {n: (_best(c) if (c := [r["curve"] for r in valid if r["noise_type"] == n]) else fallback)
               for n in types}
    out["per noise type, fitted on its validation clips"] = score(lambda r: by_type[r["noise_type"]])
    by_type_oracle = {n: _best([r["curve"] for r in test if r["noise_type"] == n]) for n in types}
    out["per noise type, fitted on the test mixtures (oracle)"] = score(lambda r: by_type_oracle[r["noise_type"]])
    out["per mixture (oracle weights)"] = float(np.mean([r["curve"].max() for r in test]))
    return out, len(test), len(valid)


def main(argv=None):
    """Collect, analyse and print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--speakers", default="8", help="number of target speakers or a comma list (as selection.py)")
    p.add_argument("--n-test", type=int, default=4)
    p.add_argument("--n-valid", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    add_quiet_argument(p)
    args = p.parse_args(argv)
    scores, n_test, n_valid = analyse(collect(args))
    generalist = scores["generalist (w = 1)"]
    print(f"{n_test} test and {n_valid} validation mixtures; SI-SDRi of w * generalist + (1 - w) * personal SSNMF")
    print(f"{'weights chosen':58s} {'SI-SDRi':>8s} {'- generalist':>12s}")
    for name, value in scores.items():
        print(f"{name:58s} {value:+8.2f} {value - generalist:+12.2f}")


if __name__ == "__main__":
    main()
