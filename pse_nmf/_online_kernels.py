"""Numba kernels of the streaming enhancer (:class:`pse_nmf.OnlineNMF`).

Array-only, serial, in-place kernels (see ``_kernels.py`` for why not
parallel), each with a slow NumPy oracle in ``tests/test_online.py``; the
matrix products inside go to BLAS through ``np.dot`` (a strict-order scalar
reduction cannot be vectorised), which is deterministic for a given call, so
the output still does not depend on how the signal was cut into blocks:

``online_frames``
    The whole per-frame work of online semi-supervised NMF (Duan, Mysore &
    Smaragdis 2012) for every frame of a block, in one call, so that Python's
    overhead is paid once per block and not once per frame.
``overlap_add``
    Windowed overlap-add of synthesis frames and of the squared window, frame
    after frame: the order of the additions into each output sample does not
    depend on how the frames were grouped into calls, which is what makes the
    streaming output independent of the block size.

All arrays are float64 and C-contiguous. Orientation as in the rest of the
library: frames are rows, ``W`` is (n_atoms, n_bins) (the papers' W^T).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["online_frames", "overlap_add", "kl_activation_step"]

_OPTS = dict(cache=True, nogil=True)


@njit(**_OPTS)
def kl_activation_step(h, W, colsum, x, lo, sparsity, eps):
    """One KL multiplicative update of ``h[lo:]`` for one frame, in place.

    ``h <- h * (W r) / (colsum + sparsity)`` with ``r = x / max(W^T h, eps)``
    for the atoms ``k >= lo``; ``colsum[k]`` must hold ``sum_f W[k, f]``.
    The two products go to BLAS (gemv): a strict-order scalar reduction
    cannot be vectorised and took most of the frame's time.
    """
    ratio = x / np.maximum(np.dot(h, W), eps)
    acc = np.dot(W[lo:], ratio)
    K = W.shape[0]
    for k in range(lo, K):
        h[k] *= acc[k - lo] / max(colsum[k] + sparsity, eps)


@njit(**_OPTS)
def _seed_atoms(W, colsum, x, U, n_speech, first, eps):
    """Noise atoms ``j >= first`` become ``x * U[j]`` at unit L2 norm."""
    F = W.shape[1]
    for j in range(first, U.shape[0]):
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
def online_frames(V, W, h, U, buf_X, buf_A, energy, info, n_speech, n_iter, n_dict_iter, sparsity, quantile,
                  mask_power, warm_start, update_every, eps, mask_out, ratio_out):
    """Online semi-supervised KL-NMF of the frames ``V``, one after the other.

    Parameters (all updated in place where marked)
    ----------
    V : (n_frames, n_bins) non-negative mixture frames (|STFT| ** power)
    W : (n_atoms, n_bins) dictionary; rows ``< n_speech`` are the fixed
        speech atoms, the others the noise atoms (unit L2 norm), *updated*
    h : (n_atoms,) activations of the previous frame (warm start), *updated*
    U : (n_noise, n_bins) positive weights of mean 1 that make the noise
        atoms seeded from one frame differ from each other
    buf_X : (L, n_bins) ring buffer of quiet frames, each divided by its mean, *updated*
    buf_A : (L, n_noise) their noise activations, *updated*
    energy : (M,) ring of the energies (sums of ``v``) of recent frames, *updated*
    info : int64 (5,) [buffered frames, next buffer slot, energies held,
        next energy slot, frames seen], *updated*
    n_speech, n_iter, n_dict_iter, update_every : ints
    sparsity, quantile, mask_power, warm_start, eps : floats
    mask_out : (n_frames, n_bins) output speech mask
    ratio_out : (n_frames,) output share of the frame's model that is speech

    For each frame with any energy (all-zero frames give a zero mask and leave
    the state alone), ``t`` counting those frames from 0:

    1. ``x = v / mean(v)``; if ``t < n_noise``, noise atoms ``j >= t`` are
       (re)seeded as ``x * U[j]`` at unit norm, so atom ``j`` starts from
       frame ``j``;
    2. ``h <- warm_start h + (1 - warm_start) h0`` with ``h0_k = n_bins /
       (n_atoms sum_f W_kf)`` (a flat model of mean 1: multiplicative updates
       cannot revive an activation that reached 0), then ``n_iter`` KL
       updates of all of ``h`` with ``W`` fixed, L1 weight ``sparsity``;
    3. the frame is *quiet* if at most ``quantile`` of the energies in the
       ring are below its own (``sum(v)``); its energy then enters the ring;
       a quiet frame enters the buffer with its noise activations (FIFO);
    4. when ``t % update_every == 0``, ``n_dict_iter`` rounds of KL-NMF of the
       buffer with the noise atoms alone: one update of every buffered
       frame's activations (L1 weight ``sparsity``), one of the noise atoms
       on ``sum_b D(x_b | W_n^T a_b)``, the atoms rescaled to unit L2 norm
       (activations compensated); then one more update of ``h``;
    5. masks ``S^p / (S^p + N^p)`` from ``S = W_s^T h_s``, ``N = W_n^T h_n``.
    """
    n_frames, F = V.shape
    K = W.shape[0]
    Kn = K - n_speech
    L = buf_X.shape[0]
    M = energy.shape[0]
    colsum = np.empty(K)
    x = np.empty(F)
    s = np.empty(F)
    nz = np.empty(F)
    for k in range(K):
        acc = 0.0
        for f in range(F):
            acc += W[k, f]
        colsum[k] = acc
    for t in range(n_frames):
        total = 0.0
        for f in range(F):
            total += V[t, f]
        if not (total > 0.0):
            for f in range(F):
                mask_out[t, f] = 0.0
            ratio_out[t] = 0.0
            continue
        inv_scale = F / total
        for f in range(F):
            x[f] = V[t, f] * inv_scale
        seen = info[4]
        if seen < Kn:
            _seed_atoms(W, colsum, x, U, n_speech, seen, eps)
        for k in range(K):
            h[k] = warm_start * h[k] + (1.0 - warm_start) * F / (K * max(colsum[k], eps))
        for _ in range(n_iter):
            kl_activation_step(h, W, colsum, x, 0, sparsity, eps)
        # -- is the frame quiet against the recent ones?
        n_e = info[2]
        below = 0
        for i in range(n_e):
            if energy[i] < total:
                below += 1
        quiet = below <= quantile * n_e
        if M > 0:
            energy[info[3]] = total
            info[3] = (info[3] + 1) % M
            if n_e < M:
                info[2] = n_e + 1
        if quiet and L > 0 and Kn > 0:
            slot = info[1]
            for f in range(F):
                buf_X[slot, f] = x[f]
            for j in range(Kn):
                buf_A[slot, j] = h[n_speech + j]
            info[1] = (slot + 1) % L
            if info[0] < L:
                info[0] += 1
        # -- noise atoms: KL-NMF of the buffer, warm-started (products in BLAS)
        n_buf = info[0]
        if Kn > 0 and n_buf > 0 and seen % update_every == 0:
            X = buf_X[:n_buf]
            A = buf_A[:n_buf]
            for _ in range(n_dict_iter):
                Wn = W[n_speech:]
                R = X / np.maximum(np.dot(A, Wn), eps)
                G = np.dot(R, Wn.T)
                for b in range(n_buf):  # the frames' activations first
                    for j in range(Kn):
                        A[b, j] *= G[b, j] / max(colsum[n_speech + j] + sparsity, eps)
                R = X / np.maximum(np.dot(A, Wn), eps)
                num = np.dot(A.T, R)  # then the atoms, with the new activations
                for j in range(Kn):
                    k = n_speech + j
                    d = 0.0
                    for b in range(n_buf):
                        d += A[b, j]
                    d = max(d, eps)
                    norm = 0.0
                    for f in range(F):
                        w = W[k, f] * (num[j, f] / d)
                        W[k, f] = w
                        norm += w * w
                    norm = max(np.sqrt(norm), eps)
                    acc = 0.0
                    for f in range(F):
                        W[k, f] /= norm
                        acc += W[k, f]
                    colsum[k] = acc
                    h[k] *= norm
                    for b in range(n_buf):
                        A[b, j] *= norm
            kl_activation_step(h, W, colsum, x, 0, sparsity, eps)
        # -- masks
        for f in range(F):
            s[f] = 0.0
            nz[f] = 0.0
        for k in range(n_speech):
            hk = h[k]
            for f in range(F):
                s[f] += hk * W[k, f]
        for k in range(n_speech, K):
            hk = h[k]
            for f in range(F):
                nz[f] += hk * W[k, f]
        s_tot = 0.0
        n_tot = 0.0
        for f in range(F):
            s_tot += s[f]
            n_tot += nz[f]
            if mask_power == 1.0:
                sp = s[f]
                npw = nz[f]
            elif mask_power == 2.0:
                sp = s[f] * s[f]
                npw = nz[f] * nz[f]
            else:
                sp = s[f] ** mask_power
                npw = nz[f] ** mask_power
            den = sp + npw
            mask_out[t, f] = sp / den if den > 0.0 else 0.0
        ratio_out[t] = s_tot / (s_tot + n_tot) if s_tot + n_tot > 0.0 else 1.0
        info[4] = seen + 1


@njit(**_OPTS)
def overlap_add(acc, wss, frames, window, offset, hop):
    """``acc[offset + i hop + j] += frames[i, j] window[j]``; ``wss`` gets ``window[j] ** 2``.

    Frames are added in order, so each output sample sees its additions in the
    same order however the frames are split between calls.
    """
    n, m = frames.shape
    for i in range(n):
        o = offset + i * hop
        for j in range(m):
            w = window[j]
            acc[o + j] += frames[i, j] * w
            wss[o + j] += w * w
