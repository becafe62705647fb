"""Helpers shared by the benchmarks: data set-up, timing, tables, machine info, output files.

Benchmarks are scripts, not tests: they import nothing from ``tests/`` and
nothing from pytest. Run them from anywhere; paths resolve from this file.
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The developer audio set lives beside the repository: ``<repo>/../shared/data``.
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


class Unavailable(RuntimeError):
    """Raised by a method factory whose optional dependency is missing: the row is skipped."""


# -- data -------------------------------------------------------------------------------------------------
def check_data(data):
    """Return ``data`` as a Path after checking it holds ``speech/``, ``noise/`` and ``speakers.csv``.

    Exits with a readable message instead of a traceback when it does not.
    """
    data = Path(data).expanduser().resolve()
    missing = [name for name in ("speech", "noise", "speakers.csv") if not (data / name).exists()]
    if missing:
        sys.exit(
            f"data folder {str(data)!r} lacks {', '.join(missing)}; pass the developer audio set "
            f"(speech/, noise/, speakers.csv) with --data (default {DEFAULT_DATA})"
        )
    return data


def read_speakers(data):
    """Rows of ``speakers.csv`` as dicts keyed by speaker id, in file order."""
    with open(Path(data) / "speakers.csv", newline="") as f:
        return {row["speaker_id"]: row for row in csv.DictReader(f)}


def pick_targets(speakers, n, seed):
    """Choose ``n`` held-out target speakers, stratified by gender, with a seeded RNG.

    Each gender's speakers are shuffled, then taken alternately (M, F, M, F,
    ...), so the first ``n`` of the order hold ``n // 2`` of each gender
    (one more of the first gender when ``n`` is odd), and a smaller ``n``
    picks a prefix of a larger one's choice (``--quick``'s targets are among
    the full run's).

    Parameters
    ----------
    speakers : dict of str to dict
        From :func:`read_speakers`; needs a ``gender`` field.
    n : int
    seed : int

    Returns
    -------
    targets, others : list of str
        ``others`` is every speaker not in ``targets``, in file order.
    """
    rng = np.random.RandomState(seed)
    by_gender = {}
    for spk, row in speakers.items():
        by_gender.setdefault(row["gender"], []).append(spk)
    queues = [list(rng.permutation(by_gender[g])) for g in sorted(by_gender, reverse=True)]  # M first
    order = []
    while any(queues):
        for q in queues:
            if q:
                order.append(str(q.pop(0)))
    if not 1 <= n <= len(order) - 1:
        raise ValueError(f"number of target speakers must be in 1..{len(order) - 1}, got {n}")
    targets = order[:n]
    others = [spk for spk in speakers if spk not in targets]
    return targets, others


def parse_speakers(value, speakers, seed):
    """``--speakers``: a count (seeded, gender-stratified choice) or comma-separated speaker ids."""
    value = str(value).strip()
    if value.isdigit():
        return pick_targets(speakers, int(value), seed)
    targets = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in targets if s not in speakers]
    if unknown:
        raise SystemExit(f"unknown speaker(s) {unknown}; known: {', '.join(speakers)}")
    return targets, [spk for spk in speakers if spk not in targets]


def take_seconds(speech_root, speaker, seconds, seed, sr=16000):
    """About ``seconds`` of one speaker's clean speech: whole utterances in a seeded random order.

    Utterances are added until the total reaches ``seconds`` (so it may run
    over by up to one utterance).

    Returns
    -------
    list of ndarray of shape (n_samples,)
    """
    from pse_nmf.audio import read_audio
    from pse_nmf.datasets import list_recordings

    files = list_recordings(speech_root)[speaker]
    rng = np.random.RandomState(seed)
    out, total = [], 0
    for i in rng.permutation(len(files)):
        if total >= seconds * sr:
            break
        y, _ = read_audio(files[i], sr=sr)
        out.append(y)
        total += y.size
    return out


def derived_seeds(seed, n, stream=0):
    """``n`` int seeds drawn from ``(seed, stream)``, e.g. one per speaker so that noise draws differ.

    The first ``k`` seeds do not depend on ``n``, so a smaller run reuses a
    prefix of a larger run's seeds; different ``stream`` values give
    independent sequences.
    """
    rng = np.random.RandomState([seed, stream])
    return [int(s) for s in rng.randint(np.iinfo(np.int32).max, size=n)]


# -- progress ---------------------------------------------------------------------------------------------
def add_quiet_argument(parser):
    """Give a benchmark's ``parser`` the ``--quiet`` flag that turns its progress bars off."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars (none either when stderr is not a "
                                                               "terminal)")


def progress(items, desc, *, total=None, quiet=False):
    """Iterate ``items`` with a tqdm bar on stderr, or plainly with ``quiet`` or when stderr is not a terminal.

    The one progress helper of the benchmarks: each long loop (over targets,
    mixtures, files, repeats) goes through it, with ``quiet=args.quiet``. The
    bar is not left behind (``leave=False``), so the printed tables stay as
    they were; tqdm's text bar, not ``tqdm.auto`` (which wants ipywidgets in
    notebooks).
    """
    if quiet or not sys.stderr.isatty():
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency of pse_nmf, but a bar is not worth failing for
        return items
    if total is None:
        try:
            total = len(items)
        except TypeError:
            total = None
    return tqdm(items, desc=desc, total=total, leave=False, file=sys.stderr, dynamic_ncols=True)


# -- timing -----------------------------------------------------------------------------------------------
def timed(fn, *args, **kwargs):
    """Call ``fn`` and return ``(result, wall seconds)`` measured with ``time.perf_counter``."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


@dataclass
class SharedCache:
    """One-off objects shared by every target (e.g. a generic model), with their build times.

    ``build_seconds[key]`` is exclusive: when one build triggers another (a
    generic model loading its training speech), the inner build's time is
    counted under its own key only, so the times add up to the wall time.
    """

    objects: dict = field(default_factory=dict)
    build_seconds: dict = field(default_factory=dict)
    _nested: list = field(default_factory=list, repr=False)

    def get(self, key, build):
        """Return the object under ``key``, building it (timed) the first time."""
        if key not in self.objects:
            self._nested.append(0.0)
            try:
                obj, seconds = timed(build)
            finally:
                inner = self._nested.pop()
            self.objects[key] = obj
            self.build_seconds[key] = seconds - inner
            if self._nested:
                self._nested[-1] += seconds
        return self.objects[key]


# -- statistics -------------------------------------------------------------------------------------------
def mean(values):
    """Mean over the finite values; NaN if there are none."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def ci95(values):
    """Half-width of a normal-approximation 95 % interval of the mean (1.96 standard errors)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float("nan")
    return float(1.96 * v.std(ddof=1) / math.sqrt(v.size))


# -- tables -----------------------------------------------------------------------------------------------
def _cell(value, fmt):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return format(value, fmt)


def format_table(rows, columns, title=None):
    """Plain-text table.

    Parameters
    ----------
    rows : list of dict
    columns : list of (key, header, format)
        ``format`` is a format spec such as ``"+.2f"``; strings are printed
        as they are, None and NaN as ``-``. The first column is left-aligned.
    """
    cells = [[_cell(row.get(key), fmt) for key, _, fmt in columns] for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(items):
        return "  ".join(
            item.ljust(w) if i == 0 else item.rjust(w) for i, (item, w) in enumerate(zip(items, widths))
        ).rstrip()

    out = [] if title is None else [title]
    out.append(line(headers))
    out.append(line(["-" * w for w in widths]))
    out.extend(line(c) for c in cells)
    return "\n".join(out)


# -- machine and output -----------------------------------------------------------------------------------
def _version(module):
    try:
        return importlib.import_module(module).__version__
    except Exception:  # optional package missing or without a version
        return None


def machine_info():
    """Cores, CPU, Python and library versions, and the BLAS thread pools."""
    info = {
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for mod in ("pse_nmf", "numpy", "scipy", "numba", "sklearn", "librosa", "noisereduce", "pesq", "pystoi"):
        info[mod] = _version(mod)
    info["env_threads"] = {
        k: os.environ[k]
        for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
        if k in os.environ
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)" for p in threadpool_info()
        ]
    except ImportError:
        info["blas"] = []
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def format_machine_info(info):
    libs = ", ".join(
        f"{m} {info[m]}" for m in ("pse_nmf", "numpy", "numba", "sklearn", "scipy", "librosa", "noisereduce")
        if info.get(m)
    )
    lines = [
        f"machine: {info['usable_cores']} usable cores of {info['cpu_count']} ({info['cpu']}); "
        f"Python {info['python']} on {info['platform']}",
        f"libraries: {libs}",
        f"BLAS: {'; '.join(info['blas']) or 'unknown'}"
        + (f"; env {info['env_threads']}" if info["env_threads"] else ""),
    ]
    return "\n".join(lines)


def make_out_dir(out, name):
    """The output folder: ``out`` if given, else ``benchmarks/results/<name>-<timestamp>/``; created."""
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"{name}-{stamp}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_csv(rows, path):
    """Write a list of flat dicts (the union of their keys, first-seen order) to CSV."""
    keys = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def write_json(obj, path):
    """Write ``obj`` as indented JSON; NaN and inf become null, unknown objects their ``str``."""
    with open(path, "w") as f:
        json.dump(_jsonable(obj), f, indent=2)
        f.write("\n")
