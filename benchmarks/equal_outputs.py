"""Default outputs of every dictionary denoiser on a few developer mixtures, to compare two checkouts.

Issue 18 (lean estimators) renames and removes constructor parameters but must keep the default behaviour:
run this script once with an old checkout on ``PYTHONPATH`` and once with the new one, then compare::

    PYTHONPATH=<old checkout> python benchmarks/equal_outputs.py run --out runs/eq_old
    PYTHONPATH=<new checkout> python benchmarks/equal_outputs.py run --out runs/eq_new
    python benchmarks/equal_outputs.py compare runs/eq_old runs/eq_new

Every estimator is built with its defaults (plus ``random_state``), so the script runs unchanged on both
sides of a rename. ``compare`` prints, per estimator, the largest absolute sample difference and the SI-SDR
(against the clean speech) of both sides.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path

import numpy as np

from _common import add_quiet_argument, progress

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _build(name, task, others):
    import pse_nmf

    if name == "SemiSupervisedNMF":
        return pse_nmf.SemiSupervisedNMF(random_state=0).fit(task.enrollment)
    if name == "MLD":
        return pse_nmf.MLD(random_state=0).fit(task.enrollment)
    if name == "ExemplarNMF":
        return pse_nmf.ExemplarNMF(random_state=0).fit(task.enrollment)
    if name == "OnlineNMF":
        return pse_nmf.OnlineNMF(random_state=0).fit(task.enrollment)
    if name in ("USM", "USM few-shot"):
        model = pse_nmf.USM(random_state=0).fit(others)
        if name == "USM few-shot":
            model = copy.deepcopy(model).personalize(task.enrollment, "target", mode="few-shot")
        return model
    if name == "AdaptiveDAE":  # small and 2 epochs: the check is equality, not quality
        from pse_nmf.audio import read_audio
        from pse_nmf.neural import AdaptiveDAE

        noise = [read_audio(f)[0] for f in sorted((DATA / "noise").rglob("*.flac"))[::40]]
        model = AdaptiveDAE(hidden_size=64, bottleneck_size=16, max_epochs=2, adapt_epochs=2, n_threads=1,
                            random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit([y for u in others.values() for y in u], noise)
        return model.adapt([t.mixture for t in task.test])
    raise ValueError(name)


NAMES = ("SemiSupervisedNMF", "USM", "USM few-shot", "MLD", "ExemplarNMF", "OnlineNMF", "AdaptiveDAE")


def run(out, speakers, n_test, names, quiet=False):
    from pse_nmf.audio import read_audio
    from pse_nmf.datasets import make_personalization_task

    warnings.simplefilter("ignore")
    out.mkdir(parents=True, exist_ok=True)
    all_speakers = sorted(p.name for p in (DATA / "speech").iterdir())
    targets = all_speakers[:speakers]
    # USM's universal blocks: 4 other speakers, 6 utterances each (small, to keep the run short)
    others = {s: [read_audio(f)[0] for f in sorted((DATA / "speech" / s).glob("*.flac"))[:6]]
              for s in all_speakers[speakers:speakers + 4]}
    for spk in progress(targets, "targets", quiet=quiet):
        task = make_personalization_task(DATA / "speech", DATA / "noise", spk, snrs=(0,), n_test=n_test,
                                         random_state=0)
        for name in names:
            model = _build(name, task, others)
            for i, t in enumerate(task.test):
                np.save(out / f"{spk}_{i}_{name.replace(' ', '_')}.npy", model.denoise(t.mixture))
                np.save(out / f"{spk}_{i}_clean.npy", t.speech)
            print(f"{spk} {name} done", flush=True)


def compare(a, b):
    from pse_nmf.metrics import si_sdr

    files = sorted(p.name for p in a.glob("*.npy") if not p.name.endswith("_clean.npy"))
    worst = {}
    for f in files:
        if not (b / f).exists():
            print(f"missing in {b}: {f}")
            continue
        x, y = np.load(a / f), np.load(b / f)
        spk_i = "_".join(f.split("_")[:3])
        clean = np.load(a / f"{spk_i}_clean.npy")
        name = f[len(spk_i) + 1:-4]
        d = float(np.max(np.abs(x.astype(np.float64) - y))) if x.shape == y.shape else np.inf
        dsdr = abs(si_sdr(x, clean) - si_sdr(y, clean))
        w = worst.setdefault(name, [0, 0.0, 0.0, 0])
        w[0] += 1
        w[1] = max(w[1], d)
        w[2] = max(w[2], dsdr)
        w[3] += int(d == 0.0)
    print(f"{'estimator':20s} {'outputs':>7s} {'bit-equal':>9s} {'max |diff|':>11s} {'max dSI-SDR dB':>15s}")
    for name, (n, d, dsdr, eq) in worst.items():
        print(f"{name:20s} {n:7d} {eq:9d} {d:11.3g} {dsdr:15.3g}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--speakers", type=int, default=2)
    r.add_argument("--n-test", type=int, default=2)
    r.add_argument("--only", nargs="*", default=list(NAMES))
    add_quiet_argument(r)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "run":
        run(args.out, args.speakers, args.n_test, args.only, args.quiet)
    else:
        compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
