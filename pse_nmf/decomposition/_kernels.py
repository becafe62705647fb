"""Numba kernels for the beta-divergence multiplicative updates.

Each kernel takes C-contiguous ndarrays and scalars only, works in place,
and has a slow NumPy oracle in ``tests/test_kernels.py``. Matrix products are
left to NumPy's BLAS; these kernels fuse the elementwise passes between the
products so that no full-size temporary is allocated per iteration.

Orientation follows the rest of the library: ``X`` and ``WH`` are
(n_frames, n_bins). ``eps`` guards divisions and logarithms; it comes from the
dtype (``np.finfo(dtype).eps``), never a hard-coded constant. No kernel uses
``fastmath``: the guards must not be optimised away.

Threads: the kernels are serial on purpose. NumPy's OpenBLAS keeps its
worker threads spinning for a while after each product; a parallel Numba
pool started in between competes with them for the cores. On the 2-core
project machine that made a 10 s denoise 22x slower (3.3 s instead of 0.15 s).
The matrix products carry almost all the flops (8 F K T per iteration against
a few passes of F T for the kernels), so the threads go to BLAS.
"""

from __future__ import annotations

import contextlib
import os

import numba
import numpy as np
from numba import njit

__all__ = ["beta_divergence_kernel", "beta_terms", "is_terms", "kl_terms", "mu_step", "mu_step_cols", "mu_step_rows",
           "thread_limit"]

# error_model="numpy": a float division by zero gives inf instead of raising, as in NumPy. The
# default ("python") puts a zero check on every division, which stops LLVM from vectorising the
# loops: the KL ratio pass on 1000 x 513 float32 took 0.42 ms with it and 0.056 ms without.
# The guards stay explicit (max(v, eps)); this is not fastmath.
_OPTS = dict(cache=True, nogil=True, error_model="numpy")


@njit(**_OPTS)
def kl_terms(X, WH, eps, with_div):
    """KL (beta = 1): ``WH <- X / max(WH, eps)``; returns D_KL(X | WH) when asked.

    The divergence is of the model passed in (before it is overwritten):
    sum(X log(X / WH) - X + WH), with 0 log 0 = 0.
    """
    n, m = X.shape
    div = 0.0
    for i in range(n):
        acc = 0.0
        for j in range(m):
            v = max(WH[i, j], eps)
            x = X[i, j]
            if with_div:
                if x > 0:
                    acc += x * np.log(x / v) - x + v
                else:
                    acc += v
            WH[i, j] = x / v
        div += acc
    return div


@njit(**_OPTS)
def is_terms(X, WH, NUM, eps, with_div):
    """Itakura-Saito (beta = 0): ``NUM <- X / WH**2``, ``WH <- 1 / WH``.

    Zeros in ``X`` are read as ``eps`` (the divergence is infinite otherwise).
    Returns D_IS(X | WH) = sum(X/WH - log(X/WH) - 1) when asked.
    """
    n, m = X.shape
    div = 0.0
    for i in range(n):
        acc = 0.0
        for j in range(m):
            v = max(WH[i, j], eps)
            x = max(X[i, j], eps)
            inv = 1.0 / v
            r = x * inv
            if with_div:
                acc += r - np.log(r) - 1.0
            NUM[i, j] = r * inv
            WH[i, j] = inv
        div += acc
    return div


@njit(**_OPTS)
def beta_terms(X, WH, NUM, beta, eps, with_div):
    """Any beta: ``NUM <- X * WH**(beta-2)``, ``WH <- WH**(beta-1)``.

    Returns the beta-divergence
    sum(X**b + (b-1) WH**b - b X WH**(b-1)) / (b (b-1)) when asked
    (beta not in {0, 1}; those have their own kernels).
    """
    n, m = X.shape
    div = 0.0
    c = 1.0 / (beta * (beta - 1.0))
    for i in range(n):
        acc = 0.0
        for j in range(m):
            v = max(WH[i, j], eps)
            x = X[i, j]
            vb2 = v ** (beta - 2.0)
            vb1 = vb2 * v
            if with_div:
                acc += (x**beta + (beta - 1.0) * vb1 * v - beta * x * vb1) * c
            NUM[i, j] = x * vb2
            WH[i, j] = vb1
        div += acc
    return div


@njit(**_OPTS)
def _power(r, gamma):
    # gamma is 1 (beta in [1, 2]), 1/2 (Itakura-Saito) or 1/(2 - beta), 1/(beta - 1) otherwise.
    # sqrt is a vector instruction; pow is a libm call per element (0.83 ms for 100 x 1000 float32
    # against ~0.05 ms), which made the Itakura-Saito update a third slower than scikit-learn's.
    if gamma == 1.0:
        return r
    if gamma == 0.5:
        return np.sqrt(r)
    return r**gamma


@njit(**_OPTS)
def mu_step(A, num, den, gamma, eps):
    """Multiplicative update in place: ``A <- A * (num / max(den, eps))**gamma``."""
    n, m = A.shape
    for i in range(n):
        for j in range(m):
            A[i, j] *= _power(num[i, j] / max(den[i, j], eps), gamma)


@njit(**_OPTS)
def mu_step_cols(A, num, den, gamma, eps):
    """``mu_step`` with a denominator constant down each column: ``den`` of shape (m,).

    KL's activation update divides by the atoms' sums, the same for every
    frame; this spares the (n_frames, n_atoms) denominator array.
    """
    n, m = A.shape
    for i in range(n):
        for j in range(m):
            A[i, j] *= _power(num[i, j] / max(den[j], eps), gamma)


@njit(**_OPTS)
def mu_step_rows(A, num, den, gamma, eps):
    """``mu_step`` with a denominator constant along each row: ``den`` of shape (n,).

    KL's dictionary update divides atom k by the sum of its activations.
    """
    n, m = A.shape
    for i in range(n):
        d = max(den[i], eps)
        for j in range(m):
            A[i, j] *= _power(num[i, j] / d, gamma)


@njit(**_OPTS)
def beta_divergence_kernel(X, WH, beta, eps):
    """Beta-divergence D_beta(X | WH) summed over all entries (no side effects).

    Same conventions as the ``*_terms`` kernels: the model is floored at
    ``eps``; for beta = 0 zeros in ``X`` are read as ``eps``.
    """
    n, m = X.shape
    div = 0.0
    for i in range(n):
        acc = 0.0
        for j in range(m):
            v = max(WH[i, j], eps)
            x = X[i, j]
            if beta == 1.0:
                if x > 0:
                    acc += x * np.log(x / v) - x + v
                else:
                    acc += v
            elif beta == 0.0:
                x = max(x, eps)
                r = x / v
                acc += r - np.log(r) - 1.0
            elif beta == 2.0:
                d = x - v
                acc += 0.5 * d * d
            else:
                acc += (x**beta + (beta - 1.0) * v**beta - beta * x * v ** (beta - 1.0)) / (beta * (beta - 1.0))
        div += acc
    return div


_CONTROLLER = None


def _blas_controller():
    """One threadpoolctl controller for the process.

    Introspecting the libraries costs ~5 ms; limiting through a kept controller ~10 us. It controls the BLAS
    loaded when first used, NumPy's, which does this library's products.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController().select(user_api="blas")
    return _CONTROLLER


def _n_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def thread_limit(n_threads):
    """Limit BLAS's (and Numba's) threads inside a ``with`` block; always restored.

    Parameters
    ----------
    n_threads : int or None
        ``None`` (the estimators' default): nothing is changed, BLAS and Numba
        keep the caller's settings (``OPENBLAS_NUM_THREADS``,
        ``threadpoolctl.threadpool_limits``). A positive value sets exactly
        that many threads (through threadpoolctl); negative values count back
        from the number of cores (-1 = all), as ``n_jobs`` does in
        scikit-learn.
    """
    if n_threads is None:
        yield
        return
    controller = _blas_controller()
    n_cores = _n_cores()
    n = int(n_threads)
    if n < 0:
        n = max(1, n_cores + 1 + n)
    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))

    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with controller.limit(limits=n):
            yield
    finally:
        numba.set_num_threads(old)
