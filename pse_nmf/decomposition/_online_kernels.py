"""Numba kernels of the streaming enhancer (:class:`pse_nmf.OnlineNMF`).

Array-only, serial, in-place kernels (see ``_kernels.py`` for why not
parallel), each with a slow NumPy oracle in ``tests/test_online.py``. The
per-frame activation updates are built from the same kernels as the offline
loop (``_kernels.kl_terms``, ``_kernels.mu_step_cols``); the window update is
the offline loop itself (``_nmf._solve``, called by ``OnlineNMF``):

``ingest_frame``
    A new frame: running scale, seeding of the first noise atoms, warm start
    and ``n_iter`` activation updates with the dictionary fixed; it enters the
    window.
``replace_atoms``
    Re-seeds the least used noise atoms from the quietest recent frames.
``speech_mask``
    The soft mask of one frame's activations.
``pending_masks``
    The masks of the frames still held back by the lookahead when a stream ends.

All arrays are float64 and C-contiguous. Orientation as in the rest of the
library: frames are rows, ``W`` is (n_atoms, n_bins) (the papers' W^T).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import _kernels as K

__all__ = ["ingest_frame", "pending_masks", "replace_atoms", "speech_mask"]

_OPTS = dict(cache=True, nogil=True)


@njit(**_OPTS)
def _seed_atoms(W, colsum, x, U, n_speech, first, eps, stop=-1):
    """Noise atoms ``first <= j < stop`` (all ``j >= first`` if ``stop < 0``) become ``x * U[j]`` at unit L2 norm."""
    F = W.shape[1]
    last = U.shape[0] if stop < 0 else stop
    for j in range(first, last):
        k = n_speech + j
        norm = 0.0
        for f in range(F):
            w = x[f] * U[j, f]
            W[k, f] = w
            norm += w * w
        norm = max(np.sqrt(norm), eps)
        acc = 0.0
        for f in range(F):
            W[k, f] /= norm
            acc += W[k, f]
        colsum[k] = acc


@njit(**_OPTS)
def speech_mask(W, a, n_speech, mask_power, mask_row):
    """Soft mask ``S^p / (S^p + N^p)`` of activations ``a``, written into ``mask_row``."""
    K, F = W.shape
    for f in range(F):
        s = 0.0
        nz = 0.0
        for k in range(n_speech):
            s += a[k] * W[k, f]
        for k in range(n_speech, K):
            nz += a[k] * W[k, f]
        if mask_power == 1.0:
            sp = s
            npw = nz
        elif mask_power == 2.0:
            sp = s * s
            npw = nz * nz
        else:
            sp = s ** mask_power
            npw = nz ** mask_power
        den = sp + npw
        mask_row[f] = sp / den if den > 0.0 else 0.0


@njit(**_OPTS)
def ingest_frame(v, W, colsum, h, U, x, buf_X, buf_A, buf_E, scale, info, n_speech, n_iter, sparsity, warm_start,
                 eps):
    """Frame ``v`` (n_bins,) enters the window; returns its slot.

    ``colsum[k]`` holds ``sum_f W[k, f]`` (kept up to date); ``x`` (n_bins,) is
    scratch; ``info`` is [frames held, frames seen, non-zero frames seen] (the
    frames seen are counted by the caller, after the window step). An all-zero
    frame enters the window as zeros (activations zero, which multiplicative
    updates keep) and changes nothing else. Otherwise the running scale
    becomes ``mean(v)`` at the first non-zero frame, then ``scale += (mean(v)
    - scale) / L``, and ``x = v / scale``; while fewer than ``n_noise``
    non-zero frames were seen (``c`` of them), noise atoms ``j >= c`` are
    (re)seeded as ``x * U[j]`` at unit norm, so atom ``j`` starts from non-zero
    frame ``j``; ``h <- warm_start h + (1 - warm_start) h0`` with ``h0_k =
    sum(x) / (n_atoms sum_f W_kf)`` (multiplicative updates cannot revive an
    activation that reached 0), then ``n_iter`` KL updates of ``h`` with ``W``
    fixed and L1 weight ``sparsity`` (the activation update of the offline
    loop, with the same kernels); ``x``, ``h``, ``sum(v)`` enter the window.
    """
    F = W.shape[1]
    Kt = W.shape[0]
    Kn = Kt - n_speech
    L = buf_X.shape[0]
    slot = info[1] % L
    total = 0.0
    for f in range(F):
        total += v[f]
    if not (total > 0.0):
        for f in range(F):
            buf_X[slot, f] = 0.0
        for k in range(Kt):
            buf_A[slot, k] = 0.0
        buf_E[slot] = 0.0
    else:
        c = info[2]
        mean = total / F
        if c == 0:
            scale[0] = mean
        else:
            scale[0] += (mean - scale[0]) / L
        inv_scale = 1.0 / scale[0]
        x_sum = 0.0
        for f in range(F):
            x[f] = v[f] * inv_scale
            x_sum += x[f]
        if c < Kn:
            _seed_atoms(W, colsum, x, U, n_speech, c, eps)
        for k in range(Kt):
            h[k] = warm_start * h[k] + (1.0 - warm_start) * x_sum / (Kt * max(colsum[k], eps))
        h2 = h.reshape(1, Kt)
        x2 = x.reshape(1, F)
        den = colsum + sparsity
        for _ in range(n_iter):
            ratio = np.dot(h2, W)
            K.kl_terms(x2, ratio, eps, False)  # ratio <- x / max(h W, eps)
            K.mu_step_cols(h2, np.dot(ratio, W.T), den, 1.0, eps)
        for f in range(F):
            buf_X[slot, f] = x[f]
        for k in range(Kt):
            buf_A[slot, k] = h[k]
        buf_E[slot] = total
        info[2] = c + 1
    if info[0] < L:
        info[0] += 1
    return slot


@njit(**_OPTS)
def replace_atoms(W, colsum, U, x, buf_X, buf_A, buf_E, seen, n_held, n_speech, n_replace, replace_recent, eps):
    """Re-seed the least used noise atoms from the quietest recent frames.

    The ``n_replace`` noise atoms with the least activation summed over the
    window (stable order, least first) are replaced, in turn, by ``x_q *
    U[j]`` (unit norm), ``x_q`` the quietest, next quietest, ... non-zero
    frames (least ``sum(v)``, stable order) of the last ``replace_recent``
    frames (fewer if fewer are non-zero), and their activations in the
    window set to the mean noise activation per atom (taken before).
    """
    F = W.shape[1]
    Kn = W.shape[0] - n_speech
    L = buf_X.shape[0]
    n_recent = min(replace_recent, L)
    rec_slot = np.empty(n_recent, dtype=np.int64)
    rec_e = np.empty(n_recent)
    m = 0
    for i in range(n_recent):
        sl = (seen - i) % L
        if buf_E[sl] > 0.0:
            rec_slot[m] = sl
            rec_e[m] = buf_E[sl]
            m += 1
    n_rep = min(n_replace, m, Kn)
    if n_rep <= 0:
        return
    order_q = np.argsort(rec_e[:m], kind="mergesort")
    use = np.zeros(Kn)
    for j in range(Kn):
        for b in range(n_held):
            use[j] += buf_A[b, n_speech + j]
    a0 = use.sum() / (Kn * n_held)
    order_j = np.argsort(use, kind="mergesort")
    for r in range(n_rep):
        j = order_j[r]
        q = rec_slot[order_q[r]]
        for f in range(F):
            x[f] = buf_X[q, f]
        _seed_atoms(W, colsum, x, U, n_speech, j, eps, j + 1)
        for b in range(n_held):
            buf_A[b, n_speech + j] = a0 if buf_E[b] > 0.0 else 0.0


@njit(**_OPTS)
def pending_masks(W, buf_A, info, n_speech, lookahead, mask_power, mask_out):
    """Masks of the last ``min(lookahead, frames seen)`` frames (end of a stream); returns their number."""
    L = buf_A.shape[0]
    seen = info[1]
    n = min(lookahead, seen)
    for i in range(n):
        o = (seen - n + i) % L
        speech_mask(W, buf_A[o], n_speech, mask_power, mask_out[i])
    return n


@njit(**_OPTS)
def dc_block(x, state, n_max, n_min, ratio, out):
    """Causal DC offset removal of samples ``x`` into ``out`` (the live stream's).

    ``state`` is [running mean, running mean square, samples seen], *updated*.
    The running mean and mean square are cumulative over the first ``n_max``
    samples, then exponential with time constant ``n_max``; from sample
    ``n_min`` on, the running mean is subtracted whenever it exceeds
    ``ratio * sqrt(n_max / n)`` times the running RMS about the mean (for ``n
    >= n_max``: ``ratio``, the rule ``denoise`` applies to the whole signal;
    before, the bar is higher as the mean of a short stretch of, e.g., sea
    waves is not an offset). Sample after sample, so the output does not
    depend on how the stream is cut into blocks.
    """
    m = state[0]
    q = state[1]
    n = state[2]
    for i in range(x.size):
        v = x[i]
        n += 1.0
        w = 1.0 / min(n, n_max)
        m += (v - m) * w
        q += (v * v - q) * w
        ac = np.sqrt(max(q - m * m, 0.0))
        bar = ratio * np.sqrt(n_max / n) if n < n_max else ratio
        out[i] = v - m if (n >= n_min and abs(m) > bar * ac) else v
    state[0] = m
    state[1] = q
    state[2] = n
