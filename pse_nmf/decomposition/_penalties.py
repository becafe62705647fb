r"""Block (group) sparsity penalties on NMF activations.

Penalty objects follow the protocol of :func:`pse_nmf.decomposition._nmf._solve`:
``gradient(A)`` returns the (non-negative) gradient of the penalty, an array
broadcastable to ``A`` (n_frames, n_components) that joins the denominator of
the multiplicative activation update, and ``value(A)`` returns the penalty.
Both are evaluated on the current ``A``, so for the concave log penalty the
update is the majorize-minimize (MM) step of Sun & Mysore (2013): the log is
majorized by its tangent at the current iterate, which is an L1 penalty of
weight :math:`\lambda / (\epsilon + \|A_g\|_1)` on block ``g``; the usual
L1-penalised KL update then cannot increase the penalised objective.

Blocks are given by ``groups``, the block index of each atom (``-1``: the atom
belongs to no block and is not block-penalised, e.g. the noise atoms learned
at test time). ``scope`` says over what a block's activations are pooled:

``"utterance"`` (universal speech model)
    :math:`A_g` is the whole (n_frames, n_g) sub-matrix: few blocks are used
    over the whole input.
``"frame"`` (mixtures of local dictionaries)
    :math:`A_{tg}` is the row of frame ``t`` within block ``g``: each frame
    uses few blocks, different frames may use different ones.

Kinds, with :math:`T` the number of frames (utterance scope) — the weights
are scaled by :math:`T` so that one :math:`\lambda` serves inputs of any
length (the data term is a sum over frames too)::

    "log":  utterance  lambda T sum_g log(eps + ||A_g||_1 / T)
            frame      lambda sum_t sum_g log(eps + ||A_tg||_1)
    "l2":   utterance  lambda sqrt(T) sum_g ||A_g||_F          (group lasso)
            frame      lambda sum_t sum_g ||A_tg||_2
    "l1":   lambda sum of the block atoms' activations (plain L1; no selection)

The utterance-scope log penalty is the paper's
:math:`\lambda' \sum_g \log(\epsilon' + \|H_g\|_1)` with
:math:`\lambda' = \lambda T`, :math:`\epsilon' = \epsilon T` (up to a
constant). An optional plain L1 term ``l1`` (scalar or per atom, over *all*
atoms) is added, so that the block penalty combines with the ordinary
sparsity of :class:`~pse_nmf.SemiSupervisedNMF`.

The group lasso (``"l2"``) gradient :math:`\lambda A_g / \|A_g\|` is used as
in the heuristic MU rule (gradient split into positive and negative parts);
unlike the log and L1 penalties, it carries no monotonicity guarantee.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BlockPenalty", "PenaltySum"]

_KINDS = ("log", "l1", "l2")
_SCOPES = ("utterance", "frame")


class BlockPenalty:
    r"""Block sparsity penalty on activation blocks, with an optional L1 term.

    Parameters
    ----------
    groups : array-like of int of shape (n_components,)
        Block index of each atom, ``0 .. n_blocks - 1``; ``-1`` for atoms in
        no block.
    weight : float or array-like of shape (n_blocks,)
        :math:`\lambda` of the block term; an array gives each block its own
        weight (e.g. a lighter penalty on a personal block among universal
        ones).
    kind : {"log", "l1", "l2"}, default="log"
    scope : {"utterance", "frame"}, default="utterance"
    eps : float, default=1.0
        :math:`\epsilon` of the log penalty, on the scale of the activations
        of mean-normalised data (per frame for both scopes).
    l1 : float or ndarray of shape (n_components,), default=0.0
        Plain L1 weight on every atom's activations, added to the block term.

    References
    ----------
    .. [1] D. L. Sun and G. J. Mysore, "Universal speech models for speaker
       independent single channel source separation", ICASSP 2013.
       doi:10.1109/ICASSP.2013.6637622
    """

    def __init__(self, groups, weight, *, kind="log", scope="utterance", eps=1.0, l1=0.0):
        if kind not in _KINDS:
            raise ValueError(f"unknown block penalty {kind!r}; use one of {list(_KINDS)}")
        if scope not in _SCOPES:
            raise ValueError(f"unknown block penalty scope {scope!r}; use one of {list(_SCOPES)}")
        groups = np.asarray(groups, dtype=np.intp)
        if groups.ndim != 1:
            raise ValueError("groups must be a 1-D array of block indices")
        self.groups = groups
        self.kind = kind
        self.scope = scope
        self.eps = float(eps)
        self.l1 = l1
        self._in_block = np.flatnonzero(groups >= 0)
        # the block atoms as a slice when they are contiguous (the usual layout: speech blocks, then noise atoms),
        # so the per-frame paths read views instead of fancy-indexed copies
        lo = int(self._in_block[0]) if self._in_block.size else 0
        contiguous = np.array_equal(self._in_block, np.arange(lo, lo + self._in_block.size))
        self._cols = slice(lo, lo + self._in_block.size) if contiguous else self._in_block
        self._block_of = groups[self._in_block]
        self.n_blocks = int(groups.max()) + 1 if self._in_block.size else 0
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim == 0:
            self.weight = float(w)
        elif w.shape == (self.n_blocks,):
            self.weight = w
        else:
            raise ValueError(f"weight must be a scalar or one value per block ({self.n_blocks}), got shape {w.shape}")
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("block penalty weights must be finite and non-negative")
        # weight of each block, and of each in-block atom
        self._w_block = np.broadcast_to(w, (self.n_blocks,)).astype(np.float64)
        self._w_atom = self._w_block[self._block_of]
        # one-hot membership (n_in_block, n_blocks): block sums of every frame in one product
        self._membership = np.zeros((self._in_block.size, self.n_blocks))
        self._membership[np.arange(self._in_block.size), self._block_of] = 1.0
        self._membership_cache = {}

    def _membership_as(self, dtype):
        m = self._membership_cache.get(dtype)
        if m is None:
            m = self._membership_cache[dtype] = self._membership.astype(dtype)
        return m

    def block_sums(self, A):
        """Block L1 norms: (n_blocks,) for utterance scope, (n_frames, n_blocks) for frame scope."""
        Ab = A[:, self._cols]
        if self.scope == "utterance":
            return np.bincount(self._block_of, weights=Ab.sum(axis=0, dtype=np.float64), minlength=self.n_blocks)
        return Ab @ self._membership_as(A.dtype)

    def _block_sq_norms(self, A):
        Ab = A[:, self._cols]
        sq = Ab * Ab
        if self.scope == "utterance":
            return np.bincount(self._block_of, weights=sq.sum(axis=0, dtype=np.float64), minlength=self.n_blocks)
        return sq @ self._membership_as(A.dtype)

    def _l1_gradient(self, A):
        return np.broadcast_to(np.asarray(self.l1, dtype=A.dtype), A.shape[1:])

    def gradient(self, A):
        """Gradient of the penalty at ``A``, broadcastable to ``A.shape``."""
        n_frames = A.shape[0]
        w = self._w_block
        if self.kind == "l1" or self.n_blocks == 0 or not np.any(w):
            g = np.zeros(A.shape[1], dtype=A.dtype)
            g[self._cols] = self._w_atom if self.kind == "l1" else 0.0
            return g + self._l1_gradient(A)
        tiny = np.finfo(A.dtype).tiny
        if self.scope == "utterance":
            if self.kind == "log":
                per_block = w / (self.eps + self.block_sums(A) / n_frames)
                g = np.zeros(A.shape[1], dtype=A.dtype)
                g[self._cols] = per_block[self._block_of]
            else:  # l2, group lasso over the whole block
                norms = np.maximum(np.sqrt(self._block_sq_norms(A)), tiny)
                g = np.zeros(A.shape, dtype=A.dtype)
                g[:, self._cols] = (self._w_atom * np.sqrt(n_frames)) * A[:, self._cols] / norms[self._block_of]
            return g + self._l1_gradient(A)
        g = np.zeros(A.shape, dtype=A.dtype)
        if self.kind == "log":
            per_block = w.astype(A.dtype) / (A.dtype.type(self.eps) + self.block_sums(A))
            g[:, self._cols] = per_block[:, self._block_of]
        else:
            norms = np.maximum(np.sqrt(self._block_sq_norms(A)), tiny)
            g[:, self._cols] = self._w_atom * A[:, self._cols] / norms[:, self._block_of]
        g += self._l1_gradient(A)
        return g

    def value(self, A):
        """Penalty value at ``A`` (float)."""
        n_frames = A.shape[0]
        l1 = float(np.sum(A.sum(axis=0, dtype=np.float64) * self.l1))
        w = self._w_block
        if self.n_blocks == 0 or not np.any(w):
            return l1
        if self.kind == "l1":
            return l1 + float(np.sum(A[:, self._cols].sum(axis=0, dtype=np.float64) * self._w_atom))
        if self.kind == "log":
            sums = np.asarray(self.block_sums(A), dtype=np.float64)
            if self.scope == "utterance":
                return l1 + n_frames * float(np.sum(w * np.log(self.eps + sums / n_frames)))
            return l1 + float(np.sum(w * np.log(self.eps + sums)))
        norms = np.sqrt(np.asarray(self._block_sq_norms(A), dtype=np.float64))
        scale = np.sqrt(n_frames) if self.scope == "utterance" else 1.0
        return l1 + scale * float(np.sum(w * norms))


class PenaltySum:
    """Sum of penalty objects: the gradients add, and so do the values.

    Combines, e.g., an utterance-scope and a frame-scope :class:`BlockPenalty`
    on the same activations (few blocks over the input *and* few per frame).
    Each term is majorized at the current iterate on its own, so a sum of
    log and L1 terms keeps the MM update's monotonicity.

    Parameters
    ----------
    *penalties : objects with ``gradient(A)`` and ``value(A)``
    """

    def __init__(self, *penalties):
        if not penalties:
            raise ValueError("PenaltySum needs at least one penalty")
        self.penalties = penalties

    def gradient(self, A):
        """Sum of the terms' gradients at ``A``, broadcastable to ``A.shape``."""
        grads = [p.gradient(A) for p in self.penalties]
        # accumulate into the first full-size gradient (each term returns a fresh array), else a new one
        full = [g for g in grads if g.shape == A.shape and g.flags.writeable]
        g = full[0] if full else np.zeros(A.shape, dtype=A.dtype)
        for other in grads:
            if other is not g:
                g += other
        return g

    def value(self, A):
        """Sum of the terms' values at ``A`` (float)."""
        return float(sum(p.value(A) for p in self.penalties))
