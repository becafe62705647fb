"""Numba kernels of the streaming enhancer (:class:`pse_nmf.OnlineNMF`).

Array-only, serial, in-place kernels (see ``_kernels.py`` for why not
parallel), each with a slow NumPy oracle in ``tests/test_online.py``; the
matrix products inside go to BLAS through ``np.dot`` (a strict-order scalar
reduction cannot be vectorised), which is deterministic for a given call, so
the output still does not depend on how the signal was cut into blocks:

``online_frames``
    The whole per-frame work of sliding-window semi-supervised NMF (after
    Duan, Mysore & Smaragdis 2012) for every frame of a block, in one call, so
    that Python's overhead is paid once per block and not once per frame.
``pending_masks``
    The masks of the frames still held back by the lookahead when a stream ends.

All arrays are float64 and C-contiguous. Orientation as in the rest of the
library: frames are rows, ``W`` is (n_atoms, n_bins) (the papers' W^T).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["kl_activation_step", "online_frames", "pending_masks"]

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
def _speech_mask(W, a, n_speech, mask_power, mask_row):
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
def online_frames(V, W, h, U, buf_X, buf_A, buf_E, scale, info, n_speech, n_iter, n_dict_iter, sparsity, mask_power,
                  warm_start, update_every, replace_every, n_replace, replace_recent, lookahead, eps, mask_out):
    """Sliding-window semi-supervised KL-NMF of the frames ``V``, one after the other.

    Parameters (all updated in place where marked)
    ----------
    V : (n_frames, n_bins) non-negative mixture frames (|STFT| ** power)
    W : (n_atoms, n_bins) dictionary; rows ``< n_speech`` are the fixed
        speech atoms, the others the noise atoms (unit L2 norm), *updated*
    h : (n_atoms,) activations of the last non-zero frame (warm start), *updated*
    U : (n_noise, n_bins) positive weights of mean 1 that make the noise
        atoms seeded from one frame differ from each other
    buf_X : (L, n_bins) window: the last ``L`` frames divided by the running
        scale (all-zero frames stay zero), frame ``i`` in slot ``i % L``, *updated*
    buf_A : (L, n_atoms) their activations, *updated*
    buf_E : (L,) their energies ``sum(v)``, *updated*
    scale : (1,) running mean magnitude of the non-zero frames, *updated*
    info : int64 (3,) [frames held, frames seen, non-zero frames seen], *updated*
    n_speech, n_iter, n_dict_iter, update_every, replace_every, n_replace, replace_recent, lookahead : ints
    sparsity, mask_power, warm_start, eps : floats
    mask_out : (n_frames, n_bins) output speech masks, of frames ``seen -
        lookahead`` in order (rows ``>=`` the returned count are untouched)

    Returns
    -------
    int : masks written (frames that are ``lookahead`` frames old).

    For each frame ``v`` (frame number ``t = info[1]``, slot ``t % L``):

    * an all-zero frame enters the window as zeros (activations zero, which
      multiplicative updates keep) and changes nothing else;
    * otherwise the running scale becomes ``mean(v)`` at the first non-zero
      frame, then ``scale += (mean(v) - scale) / L``, and ``x = v / scale``;
      while fewer than ``n_noise`` non-zero frames were seen (``c`` of
      them), noise atoms ``j >= c`` are (re)seeded as ``x * U[j]`` at unit
      norm, so atom ``j`` starts from non-zero frame ``j``; ``h <- warm_start
      h + (1 - warm_start) h0`` with ``h0_k = sum(x) / (n_atoms sum_f W_kf)``
      (multiplicative updates cannot revive an
      activation that reached 0), ``n_iter`` KL updates of ``h`` with ``W``
      fixed and L1 weight ``sparsity``; ``x``, ``h``, ``sum(v)`` enter the window;
    * when ``t >= L``, ``replace_every > 0`` and ``t % replace_every == 0``:
      the ``n_replace`` noise atoms with the least activation summed over the
      window (stable order, least first) are replaced, in turn, by ``x_q *
      U[j]`` (unit norm), ``x_q`` the quietest, next quietest, ... non-zero
      frames (least ``sum(v)``, stable order) of the last ``replace_recent``
      frames (fewer if fewer are non-zero), and their activations in the
      window set to the mean noise activation per atom (taken before);
    * when ``t % update_every == 0``, ``n_dict_iter`` rounds of
      semi-supervised KL-NMF of the window: one update of all the window's
      activations (L1 weight ``sparsity``), one of the noise atoms on the
      whole window, atoms rescaled to unit L2 norm (activations
      compensated); ``h`` becomes the frame's refined activations;
    * if ``t >= lookahead``, the mask of frame ``t - lookahead`` is
      ``S^p / (S^p + N^p)`` from its activations in the window.
    """
    n_frames, F = V.shape
    K = W.shape[0]
    Kn = K - n_speech
    L = buf_X.shape[0]
    colsum = np.empty(K)
    x = np.empty(F)
    for k in range(K):
        acc = 0.0
        for f in range(F):
            acc += W[k, f]
        colsum[k] = acc
    n_out = 0
    for t in range(n_frames):
        seen = info[1]
        slot = seen % L
        total = 0.0
        for f in range(F):
            total += V[t, f]
        if not (total > 0.0):
            for f in range(F):
                buf_X[slot, f] = 0.0
            for k in range(K):
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
                x[f] = V[t, f] * inv_scale
                x_sum += x[f]
            if c < Kn:
                _seed_atoms(W, colsum, x, U, n_speech, c, eps)
            for k in range(K):
                h[k] = warm_start * h[k] + (1.0 - warm_start) * x_sum / (K * max(colsum[k], eps))
            for _ in range(n_iter):
                kl_activation_step(h, W, colsum, x, 0, sparsity, eps)
            for f in range(F):
                buf_X[slot, f] = x[f]
            for k in range(K):
                buf_A[slot, k] = h[k]
            buf_E[slot] = total
            info[2] = c + 1
        if info[0] < L:
            info[0] += 1
        n_held = info[0]
        X = buf_X[:n_held]
        A = buf_A[:n_held]
        # -- re-seed the least used noise atoms from the quietest recent frames
        if replace_every > 0 and seen >= L and seen % replace_every == 0:
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
            if n_rep > 0:
                order_q = np.argsort(rec_e[:m], kind="mergesort")
                use = np.zeros(Kn)
                for j in range(Kn):
                    for b in range(n_held):
                        use[j] += A[b, n_speech + j]
                a0 = use.sum() / (Kn * n_held)
                order_j = np.argsort(use, kind="mergesort")
                for r in range(n_rep):
                    j = order_j[r]
                    q = rec_slot[order_q[r]]
                    for f in range(F):
                        x[f] = X[q, f]
                    _seed_atoms(W, colsum, x, U, n_speech, j, eps, j + 1)
                    for b in range(n_held):
                        A[b, n_speech + j] = a0 if buf_E[b] > 0.0 else 0.0
        # -- semi-supervised KL-NMF of the window (products in BLAS)
        if seen % update_every == 0 and n_dict_iter > 0:
            for _ in range(n_dict_iter):
                R = X / np.maximum(np.dot(A, W), eps)
                G = np.dot(R, W.T)
                An = A[:, n_speech:].copy()
                num = np.dot(An.T, R)  # the atoms' update from the same ratios (one product fewer)
                for b in range(n_held):
                    for k in range(K):
                        A[b, k] *= G[b, k] / max(colsum[k] + sparsity, eps)
                for j in range(Kn):
                    k = n_speech + j
                    d = 0.0
                    for b in range(n_held):
                        d += An[b, j]
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
                    for b in range(n_held):
                        A[b, k] *= norm
            if buf_E[slot] > 0.0:
                for k in range(K):
                    h[k] = A[slot, k]
        info[1] = seen + 1
        # -- the mask of the frame `lookahead` frames back
        if seen >= lookahead:
            o = (seen - lookahead) % L
            _speech_mask(W, buf_A[o], n_speech, mask_power, mask_out[n_out])
            n_out += 1
    return n_out


@njit(**_OPTS)
def pending_masks(W, buf_A, info, n_speech, lookahead, mask_power, mask_out):
    """Masks of the last ``min(lookahead, frames seen)`` frames (end of a stream); returns their number."""
    L = buf_A.shape[0]
    seen = info[1]
    n = min(lookahead, seen)
    for i in range(n):
        o = (seen - n + i) % L
        _speech_mask(W, buf_A[o], n_speech, mask_power, mask_out[i])
    return n
