"""Numba kernels of the streaming enhancer (:class:`pse_nmf.OnlineNMF`).

Two kernels, both array-only, serial and in place (see ``_kernels.py`` for why
not parallel), each with a slow NumPy oracle in ``tests/test_online.py``:

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
def kl_activation_step(h, W, colsum, x, wh, ratio, lo, sparsity, eps):
    """One KL multiplicative update of ``h[lo:]`` for one frame, in place.

    ``h <- h * (W r) / (colsum + sparsity)`` with ``r = x / max(W^T h, eps)``
    for the atoms ``k >= lo``; ``wh`` and ``ratio`` are (n_bins,) work arrays.
    ``colsum[k]`` must hold ``sum_f W[k, f]``.
    """
    K, F = W.shape
    for f in range(F):
        wh[f] = 0.0
    for k in range(K):
        hk = h[k]
        for f in range(F):
            wh[f] += hk * W[k, f]
    for f in range(F):
        ratio[f] = x[f] / max(wh[f], eps)
    for k in range(lo, K):
        acc = 0.0
        for f in range(F):
            acc += W[k, f] * ratio[f]
        h[k] *= acc / max(colsum[k] + sparsity, eps)


@njit(**_OPTS)
def online_frames(V, W, h, buf_X, buf_S, buf_A, buf_info, n_speech, n_iter, n_dict_iter, sparsity,
                  buffer_weight, threshold, mask_power, warm_start, eps, mask_out, ratio_out):
    """Online semi-supervised KL-NMF of the frames ``V``, one after the other.

    Parameters (all updated in place where marked)
    ----------
    V : (n_frames, n_bins) non-negative mixture frames (|STFT| ** power)
    W : (n_atoms, n_bins) dictionary; rows ``< n_speech`` are the fixed
        speech atoms, the others the noise atoms (unit L2 norm), *updated*
    h : (n_atoms,) activations of the previous frame (warm start), *updated*
    buf_X, buf_S : (L, n_bins) ring buffer of noise-dominated frames (each
        divided by its mean) and of their speech models, *updated*
    buf_A : (L, n_noise) noise activations of the buffered frames, *updated*
    buf_info : int64 (2,) [number of buffered frames, next write slot], *updated*
    n_speech, n_iter, n_dict_iter : ints
    sparsity, buffer_weight, threshold, mask_power, warm_start, eps : floats
    mask_out : (n_frames, n_bins) output speech mask
    ratio_out : (n_frames,) output share of the frame's model that is speech

    For each frame with any energy (all-zero frames give a zero mask and leave
    the state alone):

    1. ``x = v / mean(v)``; ``h <- warm_start h + (1 - warm_start) h0``
       with ``h0_k = n_bins / (n_atoms sum_f W_kf)`` (a flat model of mean 1:
       multiplicative updates cannot revive an activation that reached 0);
    2. ``n_iter`` KL updates of all of ``h`` with ``W`` fixed, L1 weight
       ``sparsity``;
    3. ``n_dict_iter`` times: one KL update of the noise atoms on the
       objective ``D(x | W h) + (buffer_weight / n_buf) sum_b D(x_b | s_b +
       W_n a_b)`` (buffered speech models ``s_b`` and activations ``a_b``
       held), the noise atoms rescaled to unit L2 norm (activations
       compensated), then one more update of ``h``;
    4. masks ``S^p / (S^p + N^p)`` from ``S = W_s^T h_s``, ``N = W_n^T h_n``;
    5. if ``sum S / sum (S + N) < threshold`` the frame is noise-dominated
       and joins the ring buffer (the oldest frame leaves when it is full).
    """
    n_frames, F = V.shape
    K = W.shape[0]
    Kn = K - n_speech
    L = buf_X.shape[0]
    colsum = np.empty(K)
    wh = np.empty(F)
    ratio = np.empty(F)
    x = np.empty(F)
    s = np.empty(F)
    nz = np.empty(F)
    numW = np.empty((Kn, F))
    denW = np.empty(Kn)
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
        for k in range(K):
            h[k] = warm_start * h[k] + (1.0 - warm_start) * F / (K * max(colsum[k], eps))
        for _ in range(n_iter):
            kl_activation_step(h, W, colsum, x, wh, ratio, 0, sparsity, eps)
        if Kn > 0:
            for _ in range(n_dict_iter):
                # -- noise atoms: current frame (weight 1) + buffer (total weight buffer_weight)
                for f in range(F):
                    wh[f] = 0.0
                for k in range(K):
                    hk = h[k]
                    for f in range(F):
                        wh[f] += hk * W[k, f]
                for f in range(F):
                    ratio[f] = x[f] / max(wh[f], eps)
                for j in range(Kn):
                    hj = h[n_speech + j]
                    denW[j] = hj
                    for f in range(F):
                        numW[j, f] = hj * ratio[f]
                n_buf = buf_info[0]
                if n_buf > 0:
                    wb = buffer_weight / n_buf
                    for b in range(n_buf):
                        for f in range(F):
                            wh[f] = buf_S[b, f]
                        for j in range(Kn):
                            a = buf_A[b, j]
                            for f in range(F):
                                wh[f] += a * W[n_speech + j, f]
                        for f in range(F):
                            ratio[f] = buf_X[b, f] / max(wh[f], eps)
                        for j in range(Kn):
                            a = wb * buf_A[b, j]
                            denW[j] += a
                            for f in range(F):
                                numW[j, f] += a * ratio[f]
                for j in range(Kn):
                    k = n_speech + j
                    d = max(denW[j], eps)
                    norm = 0.0
                    for f in range(F):
                        w = W[k, f] * (numW[j, f] / d)
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
                        buf_A[b, j] *= norm
                kl_activation_step(h, W, colsum, x, wh, ratio, 0, sparsity, eps)
        # -- masks and the buffer decision
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
            else:
                sp = s[f] ** mask_power
                npw = nz[f] ** mask_power
            den = sp + npw
            mask_out[t, f] = sp / den if den > 0.0 else 0.0
        r = s_tot / (s_tot + n_tot) if s_tot + n_tot > 0.0 else 1.0
        ratio_out[t] = r
        if L > 0 and Kn > 0 and r < threshold:
            slot = buf_info[1]
            for f in range(F):
                buf_X[slot, f] = x[f]
                buf_S[slot, f] = s[f]
            for j in range(Kn):
                buf_A[slot, j] = h[n_speech + j]
            buf_info[1] = (slot + 1) % L
            if buf_info[0] < L:
                buf_info[0] += 1


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
