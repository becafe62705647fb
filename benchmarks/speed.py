"""Speed of pse_nmf's NMF core against its peers, in one run, on the same matrices.

Usage::

    python benchmarks/speed.py               # full run (a few minutes)
    python benchmarks/speed.py --quick       # one shape, fewer repetitions
    python benchmarks/speed.py --threads 1   # single-threaded BLAS for every contender

Part 1, the update: ms per iteration of the beta-divergence multiplicative
update for pse_nmf (float32 and float64), scikit-learn's ``NMF(solver="mu")``
(same beta, same iteration count, ``tol=0``, same initial factors), a plain
NumPy float32 implementation, and torch on the CPU (if installed). Shapes of
speech work: 513 bins x 1,000-10,000 frames, 50-400 atoms; all atoms free, and
the semi-supervised case (all but 8 atoms fixed, which scikit-learn cannot
do). Also printed: GFLOP/s-equivalent (8 F K T flops per iteration), the
ratio to scikit-learn, and the matrix-product bound: the time of the four
products of one update measured on this machine, and a large SGEMM's
throughput as the machine's ceiling.

Part 2, end to end: real-time factor of ``denoise`` for every estimator at its
default settings on 10 s and 60 s clips, peak memory of the call (tracemalloc
sees NumPy's allocations), and, in fresh subprocesses, ``import pse_nmf``
plus the first ``denoise`` with an empty Numba cache (compile time) and with a
warm one.

Every timing is the median of several repetitions after a warm-up; the
contenders take turns within each repetition, so that load from elsewhere
falls on all of them alike. ms per iteration is the marginal cost: each
contender runs n and 2n iterations, and (t(2n) - t(n)) / n is reported, so
that what a call costs apart from its iterations (input checks, copies,
scikit-learn's final reconstruction error) is left out for every contender
alike and shown on its own (ms/call). pse_nmf runs as its estimators run it,
without evaluating the final objective. On 2 cores, OpenBLAS's spinning workers make any
2-thread product many times slower while another process holds a core: for
figures to compare across runs, run on an idle machine, or with --threads 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO_ROOT, add_quiet_argument, format_machine_info, format_table, machine_info, make_out_dir, progress,
    write_json,
)


# -- contenders -------------------------------------------------------------------------------------------
def _numpy_mu(X, A, D, beta, n_iter):
    """Textbook multiplicative updates in NumPy (all atoms free), X ~ A @ D."""
    eps = np.finfo(X.dtype).eps
    for _ in range(n_iter):
        for side in ("A", "D"):
            WH = np.maximum(A @ D, eps)
            if beta == 1:
                R = X / WH
                if side == "A":
                    A *= (R @ D.T) / D.sum(axis=1)
                else:
                    D *= (A.T @ R) / A.sum(axis=0)[:, None]
                continue
            num = X * WH ** (beta - 2) if beta != 2 else X
            den = WH ** (beta - 1) if beta != 2 else WH
            if side == "A":
                A *= (num @ D.T) / np.maximum(den @ D.T, eps)
            else:
                D *= (A.T @ num) / np.maximum(A.T @ den, eps)
    return A, D


def _torch_mu(X, A, D, beta, n_iter):
    import torch

    X, A, D = (torch.from_numpy(np.ascontiguousarray(m)) for m in (X, A, D))
    eps = torch.finfo(X.dtype).eps
    with torch.no_grad():
        for _ in range(n_iter):
            for side in ("A", "D"):
                WH = (A @ D).clamp_min_(eps)
                if beta == 1:
                    R = X / WH
                    if side == "A":
                        A *= (R @ D.T) / D.sum(dim=1)
                    else:
                        D *= (A.T @ R) / A.sum(dim=0)[:, None]
                    continue
                num = X * WH ** (beta - 2) if beta != 2 else X
                den = WH ** (beta - 1) if beta != 2 else WH
                if side == "A":
                    A *= (num @ D.T) / (den @ D.T).clamp_min_(eps)
                else:
                    D *= (A.T @ num) / (A.T @ den).clamp_min_(eps)
    return A.numpy(), D.numpy()


def _pse_nmf(X, A, D, beta, n_iter, free):
    from pse_nmf.decomposition._nmf import _solve

    # as the estimators run it: no final objective (they do not use it; _solve(objective=True) adds it)
    _solve(X, A, D, beta=beta, free=free, max_iter=n_iter, tol=0, objective=False)
    return A, D


def _sklearn(X, A, D, beta, n_iter):
    from sklearn.decomposition import NMF

    loss = {0: "itakura-saito", 1: "kullback-leibler", 2: "frobenius"}[beta]
    model = NMF(D.shape[0], solver="mu", beta_loss=loss, init="custom", max_iter=n_iter, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        A = model.fit_transform(X, W=A, H=D)
    return A, model.components_


def _product_bound_ms(T, F, K, dtype, reps):
    """Median time of the four products of one all-free update (A@D, R@D.T, A@D, A.T@R)."""
    rng = np.random.default_rng(0)
    A = rng.random((T, K)).astype(dtype)
    D = rng.random((K, F)).astype(dtype)
    R = rng.random((T, F)).astype(dtype)
    out = np.empty((T, F), dtype)

    def four():
        np.matmul(A, D, out=out)
        R @ D.T
        np.matmul(A, D, out=out)
        A.T @ R

    four()
    times = []
    for _ in range(reps * 5):
        t0 = time.perf_counter()
        four()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def _sgemm_ceiling():
    a = np.random.default_rng(0).random((2048, 2048)).astype(np.float32)
    a @ a
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    return 2 * 2048**3 / np.median(times) / 1e9


#: Pause before each timed run, so that the thread pools of the previous contender (torch's OpenMP workers,
#: OpenBLAS's) stop spinning first: without it, whoever ran right after torch paid ~18 ms per call on 2 cores.
_SETTLE_S = 0.1


def _contenders(with_torch):
    names = []
    for tag in ("f32", "f64"):
        names += [f"pse_nmf {tag}", f"pse_nmf {tag} semi (8 free)", f"scikit-learn {tag}"]
    names.append("numpy f32")
    if with_torch:
        names.append("torch f32")
    return names


def _make_case(name, T, F, K, beta):
    """The timed function ``fn(n_iter)`` of one contender on the benchmark's matrices (seeded)."""
    rng = np.random.default_rng(0)
    X64 = rng.gamma(1.0, 1.0, size=(T, F)) + 1e-3  # positive (Itakura-Saito needs it)
    A64 = rng.random((T, K)) + 0.1
    D64 = rng.random((K, F)) + 0.1
    dtype = np.float64 if "f64" in name else np.float32
    X, A0, D0 = (m.astype(dtype) for m in (X64, A64, D64))
    if name.startswith("pse_nmf"):
        free = (np.arange(K) >= K - 8) if "semi" in name else None
        return lambda n: _pse_nmf(X, A0.copy(), D0.copy(), beta, n, free)
    if name.startswith("scikit-learn"):
        return lambda n: _sklearn(X, A0.copy(), D0.copy(), beta, n)
    if name == "numpy f32":
        return lambda n: _numpy_mu(X, A0.copy(), D0.copy(), beta, n)
    if name == "torch f32":
        return lambda n: _torch_mu(X, A0.copy(), D0.copy(), beta, n)
    raise ValueError(name)


def _worker(conn, name, threads):
    """One contender's process: runs ``fn(n)`` on request and sends back the wall time in ms."""
    warnings.simplefilter("ignore")
    with _threads(threads):
        key = fn = None
        while True:
            msg = conn.recv()
            if msg is None:
                return
            T, F, K, beta, n = msg
            if key != (T, F, K, beta):
                key, fn = (T, F, K, beta), None
                fn = _make_case(name, T, F, K, beta)
                fn(n)  # warm-up (compilation, caches, thread pools)
            t0 = time.perf_counter()
            fn(n)
            conn.send((time.perf_counter() - t0) * 1e3)


def bench_updates(shapes, betas, n_iter, reps, with_torch, threads=None, quiet=False):
    """ms per iteration of every contender, each in a process of its own, the processes taking turns.

    Own processes: in one shared interpreter, each contender ran in the heap and thread-pool state the
    others left (scikit-learn's float64 KL update took 6 ms per iteration there and 16-17 ms in a fresh
    interpreter, allocating its temporaries anew). Taking turns, one at a time: load from elsewhere falls
    on all of them alike, and no two compete for the cores.
    """
    import multiprocessing as mp

    # The bounds are timed before the workers start: a worker starting up (imports, Numba compilation) while
    # the first shape's bound was timed made that bound 10x too slow.
    bounds_by_shape = {shape: {"f32": _product_bound_ms(*shape, np.float32, reps),
                               "f64": _product_bound_ms(*shape, np.float64, reps)} for shape in shapes}
    ctx = mp.get_context("spawn")
    names = _contenders(with_torch)
    workers = {}
    for name in names:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, name, threads), daemon=True)
        proc.start()
        workers[name] = (parent, proc)
    rows = []
    try:
        for T, F, K in progress(shapes, "shapes", quiet=quiet):
            flops = 8.0 * F * K * T
            bounds = bounds_by_shape[(T, F, K)]
            for beta in betas:
                # Each contender runs n and 2n iterations; the difference of the medians over n is the
                # marginal cost of an iteration, and 2 t(n) - t(2n) the cost of a call apart from its
                # iterations (input checks, copies, the final objective scikit-learn always computes).
                samples = {name: ([], []) for name in names}
                for _ in range(reps):
                    for name in names:
                        conn = workers[name][0]
                        for k, n in enumerate((n_iter, 2 * n_iter)):
                            time.sleep(_SETTLE_S)
                            conn.send((T, F, K, beta, n))
                            samples[name][k].append(conn.recv())
                results = {}
                for name in names:
                    t1, t2 = (float(np.median(v)) for v in samples[name])
                    results[name] = ((t2 - t1) / n_iter, 2 * t1 - t2)
                for name, (ms, call_ms) in results.items():
                    tag = "f64" if "f64" in name else "f32"
                    ref = results.get(f"scikit-learn {tag}", (np.nan,))[0]
                    rows.append({
                        "shape": f"{F}x{T} K={K}", "beta": beta, "impl": name, "ms_per_iter": ms,
                        "call_ms": call_ms, "gflops": flops / (ms * 1e-3) / 1e9, "vs_sklearn": ref / ms,
                        "vs_bound": ms / bounds[tag], "bound_ms": bounds[tag],
                    })
    finally:
        for conn, proc in workers.values():
            try:
                conn.send(None)
            except OSError:
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return rows


# -- end to end -------------------------------------------------------------------------------------------
def _example_clip(seconds, data):
    from pse_nmf.datasets import mix_at_snr

    speaker = sorted(data.speech)[0]
    speech = np.concatenate(data.speech[speaker])
    speech = np.tile(speech, int(np.ceil(seconds * data.sr / speech.size)))[: int(seconds * data.sr)]
    noise = data.noise["street_tram_bus"][0]
    mixture, _ = mix_at_snr(speech, noise, 0.0, random_state=0)
    return mixture


def _fitted_estimators(data):
    import pse_nmf

    speakers = sorted(data.speech)
    enrollment = data.speech[speakers[0]]
    others = {s: data.speech[s] for s in speakers[1:]}
    models = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models["SemiSupervisedNMF"] = pse_nmf.SemiSupervisedNMF(random_state=0).fit(enrollment)
        models["USM"] = pse_nmf.USM(random_state=0).fit(others)
        models["MLD"] = pse_nmf.MLD(random_state=0).fit(enrollment)
        models["ExemplarNMF"] = pse_nmf.ExemplarNMF(random_state=0).fit(enrollment)
        models["OnlineNMF"] = pse_nmf.OnlineNMF(random_state=0).fit(enrollment)
    return models


def bench_end_to_end(durations, reps, quiet=False):
    from pse_nmf.datasets import load_example

    data = load_example()
    models = _fitted_estimators(data)
    rows = []
    for seconds in durations:
        clip = _example_clip(seconds, data)
        for name, model in progress(list(models.items()), f"{seconds} s clips", quiet=quiet):
            model.denoise(clip[: data.sr * 2])  # warm-up
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                model.denoise(clip)
                times.append(time.perf_counter() - t0)
            tracemalloc.start()
            model.denoise(clip)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            t = float(np.median(times))
            rows.append({"estimator": name, "clip_s": seconds, "denoise_s": t, "rtf": t / seconds,
                         "peak_mib": peak / 2**20})
    return rows


_FIRST_CALL = r"""
import time, json, warnings
t0 = time.perf_counter()
import numpy as np
import pse_nmf
t_import = time.perf_counter() - t0
from pse_nmf.datasets import load_example
data = load_example()
spk = sorted(data.speech)[0]
warnings.simplefilter("ignore")
model = pse_nmf.SemiSupervisedNMF(random_state=0, max_iter=5).fit(data.speech[spk][:1])
x = np.concatenate(data.speech[spk])[: 10 * 16000]
t1 = time.perf_counter()
model.denoise(x)
t_first = time.perf_counter() - t1
t2 = time.perf_counter()
model.denoise(x)
print(json.dumps({"import_s": t_import, "first_denoise_s": t_first, "second_denoise_s": time.perf_counter() - t2}))
"""


def bench_first_call():
    """Import + first 10 s denoise in fresh interpreters: cold Numba cache, then warm."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold cache", "warm cache"):
            proc = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True,
                                  cwd=REPO_ROOT, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@contextlib.contextmanager
def _threads(n):
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    try:
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(n)
    except ImportError:
        torch = None
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(old)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one shape, 3 repetitions, no 60 s clip")
    parser.add_argument("--threads", type=int, default=None, help="BLAS/torch threads for every contender")
    parser.add_argument("--iters", type=int, default=20, help="iterations per timed run (default 20)")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions; the median is reported (default 7; 3 with --quick)")
    parser.add_argument("--betas", default="1,0,2", help="comma-separated betas (default 1,0,2)")
    parser.add_argument("--shapes", default=None,
                        help="comma-separated FRAMESxCOMPONENTS at 513 bins, e.g. 1000x100,10000x100 "
                             "(default: the four of the full run; 1000x100 with --quick)")
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results/speed-<time>)")
    add_quiet_argument(parser)
    args = parser.parse_args(argv)
    betas = [float(b) if "." in b else int(b) for b in args.betas.split(",")]
    if args.quick:
        shapes, reps, durations = [(1000, 513, 100)], args.reps or 3, [10]
    else:
        shapes = [(1000, 513, 100), (1000, 513, 50), (1000, 513, 400), (10000, 513, 100)]
        reps, durations = args.reps or 7, [10, 60]
    if args.shapes:
        shapes = [(int(t), 513, int(k)) for t, k in (item.lower().split("x") for item in args.shapes.split(","))]
    try:
        import torch  # noqa: F401

        with_torch = True
    except ImportError:
        with_torch = False
    t_start = time.perf_counter()
    print(format_machine_info(machine_info()))
    with _threads(args.threads):
        ceiling = _sgemm_ceiling()
        print(f"SGEMM 2048^3 ceiling: {ceiling:.1f} GFLOP/s (threads: {args.threads or 'default'})"
              + ("" if with_torch else "; torch not installed: its row is skipped"))
        rows = bench_updates(shapes, betas, args.iters, reps, with_torch, args.threads, args.quiet)
    print()
    print(format_table(rows, [
        ("shape", "shape (bins x frames)", ""), ("beta", "beta", "g"), ("impl", "implementation", ""),
        ("ms_per_iter", "ms/iter", ".2f"), ("call_ms", "ms/call", ".1f"), ("gflops", "GFLOP/s-eq", ".1f"), ("vs_sklearn", "x faster than sklearn", ".2f"),
        ("vs_bound", "x product bound", ".2f"), ("bound_ms", "bound ms", ".2f"),
    ], title=(f"Multiplicative update: ms/iter = (t({2 * args.iters} iterations) - t({args.iters})) / {args.iters}, "
              f"ms/call = the rest of a call; medians of {reps} repetitions")))
    result = {"ceiling_gflops": ceiling, "updates": rows, "threads": args.threads}
    if not args.skip_end_to_end:
        e2e = bench_end_to_end(durations, max(1, reps // 2), args.quiet)
        print()
        print(format_table(e2e, [
            ("estimator", "estimator", ""), ("clip_s", "clip s", "g"), ("denoise_s", "denoise s", ".3f"),
            ("rtf", "RTF", ".4f"), ("peak_mib", "peak MiB", ".1f"),
        ], title="denoise at default settings (models fitted on the embedded example data)"))
        first = bench_first_call()
        print()
        for label, rec in first.items():
            print(f"fresh interpreter, {label}: import pse_nmf {rec['import_s']:.2f} s, first 10 s denoise "
                  f"{rec['first_denoise_s']:.2f} s (then {rec['second_denoise_s']:.2f} s); import + first call "
                  f"{rec['import_s'] + rec['first_denoise_s']:.2f} s")
        result.update(end_to_end=e2e, first_call=first)
    out = make_out_dir(args.out, "speed")
    write_json(result, out / "speed.json")
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s; results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
