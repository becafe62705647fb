"""Import time and ``denoise`` real-time factor of every estimator, for before/after comparisons.

Usage::

    python benchmarks/denoise_rtf.py                       # this checkout
    python benchmarks/denoise_rtf.py --repos OLD NEW       # two checkouts, taking turns

Each repetition runs, in a fresh interpreter per checkout (``PYTHONPATH`` set to it), ``import pse_nmf``
(timed) and then ``denoise`` of a 10 s clip (0 dB, tram noise) with every estimator at its defaults, fitted
on the bundled example speakers (each checkout's ``speed.py`` end-to-end set-up). Checkouts take turns within each
repetition, so that load from elsewhere on a shared machine falls on both alike; medians are reported.
BLAS runs on one thread (``OPENBLAS_NUM_THREADS=1``) unless the caller's environment says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import add_quiet_argument, progress  # noqa: E402

_IMPORT = "import time; t0 = time.perf_counter(); import pse_nmf; print(time.perf_counter() - t0)"

_RTF = r"""
import json, sys, time, warnings
sys.path.insert(0, {bench!r})
import numpy as np
from speed import _example_clip, _fitted_estimators
from pse_nmf.datasets import load_example
data = load_example()
warnings.simplefilter("ignore")
models = _fitted_estimators(data)
clip = _example_clip(10.0, data)
out = {{}}
for name, model in models.items():
    model.denoise(clip[: data.sr * 2])
    times = []
    for _ in range({reps}):
        t0 = time.perf_counter()
        model.denoise(clip)
        times.append(time.perf_counter() - t0)
    out[name] = float(np.median(times)) / 10.0
print(json.dumps(out))
"""


def _run(repo, code):
    env = dict(os.environ, PYTHONPATH=str(repo))
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=repo, capture_output=True, text=True,
                          timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return proc.stdout.strip().splitlines()[-1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repos", nargs="+", type=Path, default=[HERE.parent], help="checkouts to compare")
    p.add_argument("--import-reps", type=int, default=5, help="fresh interpreters per checkout [5]")
    p.add_argument("--rtf-rounds", type=int, default=3, help="fresh interpreters for the RTF [3]")
    p.add_argument("--reps", type=int, default=5, help="timed denoise calls per estimator and round [5]")
    add_quiet_argument(p)
    args = p.parse_args(argv)
    repos = [r.resolve() for r in args.repos]
    imports = {r: [] for r in repos}
    for _ in progress(range(args.import_reps), "import timings", quiet=args.quiet):
        for r in repos:
            imports[r].append(float(_run(r, _IMPORT)))
    rtfs = {r: [] for r in repos}
    for _ in progress(range(args.rtf_rounds), "RTF rounds", quiet=args.quiet):
        for r in repos:  # each checkout's own speed.py set-up (its imports match its package)
            rtfs[r].append(json.loads(_run(r, _RTF.format(bench=str(r / "benchmarks"), reps=args.reps))))
    for r in repos:
        print(f"## {r}")
        print(f"import pse_nmf: median {np.median(imports[r]):.3f} s over {len(imports[r])} "
              f"({', '.join(f'{t:.3f}' for t in imports[r])})")
        for name in rtfs[r][0]:
            vals = [d[name] for d in rtfs[r]]
            print(f"denoise RTF (10 s) {name:18s} median {np.median(vals):.4f}  "
                  f"({', '.join(f'{v:.4f}' for v in vals)})")


if __name__ == "__main__":
    main()
