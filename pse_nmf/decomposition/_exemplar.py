"""Exemplar-based NMF: the speech dictionary is made of (normalised) training frames."""

from __future__ import annotations

import heapq
import numbers

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .._persistence import register_estimator
from ._base import _COMMON_CONSTRAINTS, _is_audio, _legacy_fixed, _legacy_noise_init, _SpeechDictionaryEnhancer

__all__ = ["ExemplarNMF"]

# Fixed heuristics (issue 18: constants, not parameters; the library never set other values):
#: frames more than this many dB below the loudest training frame are not candidate exemplars (formerly silence_db)
_SILENCE_DB = -50.0
#: neighbours per frame of the "mpq" selection's density estimate (formerly n_neighbors)
_N_NEIGHBORS = 10


def _select_random(U, m, rng):
    return np.sort(rng.choice(U.shape[0], size=m, replace=False))


def _select_kmedoids(U, m, rng):
    """Approximate k-medoids: the frame nearest each k-means centroid (distinct frames)."""
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import pairwise_distances_argmin

    seed = rng.randint(np.iinfo(np.int32).max)
    km = MiniBatchKMeans(n_clusters=m, n_init=1, batch_size=max(1024, 3 * m), max_iter=50, random_state=seed).fit(U)
    nearest = pairwise_distances_argmin(km.cluster_centers_, U)
    return np.unique(nearest)


def _select_mpq(U, m, n_neighbors):
    r"""Manifold-preserving quantization (simplified from Kim & Smaragdis, ICML 2013).

    Build the k-nearest-neighbour graph of the (unit-norm) frames with heat
    kernel weights :math:`w_{ij} = \exp(-\|u_i - u_j\|^2 / \sigma^2)`
    (:math:`\sigma^2` the mean squared neighbour distance, :math:`w_{ii} = 1`).
    Then select greedily: each step takes the frame whose neighbourhood holds
    the most affinity not yet covered by the frames already chosen,
    :math:`\mathrm{gain}(i) = \sum_{j \in N(i) \cup \{i\}} \max(0, w_{ij} - c_j)`,
    and raises the coverage :math:`c_j \leftarrow \max(c_j, w_{ij})` of its
    neighbourhood. The first pick is thus the densest point (largest degree),
    and later picks spread along the manifold where it is still uncovered,
    which keeps the graph's structure in the samples rather than their
    density alone (k-means would spend its centroids where frames are
    densest). The gain is submodular, so the lazy greedy evaluation below is
    exact.
    """
    from sklearn.neighbors import NearestNeighbors

    n = U.shape[0]
    k = min(n_neighbors, n - 1)
    if k < 1 or m >= n:
        return np.arange(min(m, n))
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(U).kneighbors(U)
    sq = dist[:, 1:] ** 2
    sigma2 = max(float(sq.mean()), np.finfo(np.float64).tiny)
    W = np.exp(-(dist**2) / sigma2)
    W[:, 0] = 1.0
    idx[:, 0] = np.arange(n)  # the point itself first (ties with duplicates)
    covered = np.zeros(n)

    def gain(i):
        return float(np.maximum(W[i] - covered[idx[i]], 0.0).sum())

    heap = [(-gain(i), i) for i in range(n)]
    heapq.heapify(heap)
    chosen = np.zeros(n, dtype=bool)
    selected = []
    while len(selected) < m and heap:
        neg, i = heapq.heappop(heap)
        if chosen[i]:
            continue
        g = gain(i)
        if heap and g < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-g, i))  # stale bound: re-queue with the true gain
            continue
        chosen[i] = True
        selected.append(i)
        np.maximum.at(covered, idx[i], W[i])
    return np.sort(np.asarray(selected, dtype=np.intp))


@register_estimator
class ExemplarNMF(_SpeechDictionaryEnhancer):
    r"""Sparse non-parametric enhancement with a dictionary of training exemplars.

    The speech dictionary is not learned: its atoms are L2-normalised
    training frames (Smaragdis, Shashanka & Raj 2009), and sparse
    activations make each test frame a combination of a few real exemplars:

    .. math::

        \min_{A \ge 0,\, D_n \ge 0}\;
        D_\beta\!\left(V \,\middle|\, [A_s\; A_n] \begin{bmatrix} E \\ D_n \end{bmatrix}\right)
        + \lambda \sum A

    with :math:`E` the exemplars (held fixed: they are never updated) and
    ``n_noise_components`` noise atoms :math:`D_n` learned on the input, by
    the library's one multiplicative-update loop.

    Which frames become exemplars (``selection``):

    ``"random"``
        a uniform random subset (the paper's simple choice for large sets);
    ``"kmedoids"``
        approximate k-medoids: the training frame nearest each centroid of a
        mini-batch k-means on the normalised frames (duplicates merged, so
        there may be slightly fewer than ``n_exemplars``);
    ``"mpq"``
        manifold-preserving quantization (after Kim & Smaragdis, ICML 2013),
        simplified: a greedy coverage of the k-NN graph of the normalised
        frames (see :func:`_select_mpq`); building the graph costs
        :math:`O(n^2 F)` for ``n`` training frames.

    Frames more than 50 dB (``_SILENCE_DB``) below the loudest training frame are
    never exemplars. With tens of thousands of exemplars the test input is
    processed in chunks of ``chunk_size`` frames, and each chunk is
    factorized on only the exemplars nearest (by cosine similarity) its
    frames: the ``n_candidates // chunk frames`` nearest of each frame (at
    least one), at most ``n_candidates`` in all. The noise atoms of a chunk
    start from those of the previous chunk. Memory is thus bounded by
    ``chunk_size * (n_exemplars + n_candidates)`` numbers, whatever the
    input's length. ``n_candidates=None`` uses all exemplars.

    Fixed settings (issue 18, as :class:`~pse_nmf.USM`'s): Kullback-Leibler
    divergence on STFT magnitudes, mask exponent 2, L1 1 on the noise
    activations, no smoothing of the mask over frames; 10 neighbours per
    frame in the ``"mpq"`` graph (``_N_NEIGHBORS``). Read-only class
    attributes ``beta``, ``spectrum_power``, ``mask_power``,
    ``noise_sparsity``, ``mask_smoothing``.

    Parameters
    ----------
    n_exemplars : int, default=2000
        Exemplars to keep (fewer if there are fewer non-silent frames).
    selection : {"random", "kmedoids", "mpq"}, default="random"
    n_noise_components : int, default=8
        Noise atoms learned on each input (started, as
        :class:`~pse_nmf.SemiSupervisedNMF`'s, from the quietest frames).
    sparsity : float, default=1.0
        :math:`\lambda`, L1 weight on the exemplars' activations.
    chunk_size : int, default=512
        Frames factorized together at test time.
    n_candidates : int or None, default=512
        Most exemplars used per chunk (None: all).
    test_max_iter : int, default=100
        Iterations at test time (with the staged noise updates below, the
        last stage's).
    noise_init : {"quiet", "staged", "staged-averaged"}, default="quiet"
        Test-time recipe of the noise atoms (as :class:`~pse_nmf.USM`'s, per
        chunk): ``"quiet"`` starts them from the quietest frames, free
        throughout; ``"staged"`` first fits them for 100 iterations on the
        quietest quarter of each chunk's frames, then 50 with every atom
        held, then ``test_max_iter`` free; ``"staged-averaged"`` also
        averages the mask with that of a plain 100-iteration solve. The
        stages are off by default here (``docs/experiments/exemplar.md``).
    tol : float, default=1e-4
    min_seconds : float, default=3.0
        Fewest seconds of speech ``fit`` accepts from recordings (frames
        carry no duration): below it ``fit`` raises ``ValueError``, below 10 s
        it warns (``UserWarning``); 0 opts out of the error. Measured: below
        3 s the model enhances worse than the noisy input on average
        (``benchmarks/enrollment.py --estimator ExemplarNMF``; figures in
        ``docs/experiments/enrollment.md``).
    sr, n_fft, hop_length : int, default=16000, 1024, 256
    random_state : int, RandomState instance or None
    n_threads : int or None
    verbose : int, default=0

    Attributes
    ----------
    components_ : ndarray of shape (n_exemplars_, n_bins)
        The exemplars, unit L2 norm.
    n_exemplars_ : int
    n_features_in_ : int

    Notes
    -----
    The defaults were chosen on development speakers that are none of
    ``benchmarks/quality.py``'s targets; the measurements behind each one
    are in ``docs/experiments/exemplar.md``.

    References
    ----------
    .. [1] P. Smaragdis, M. Shashanka and B. Raj, "A sparse non-parametric
       approach for single channel separation of known sounds", NIPS 2009.
    .. [2] M. Kim and P. Smaragdis, "Manifold preserving hierarchical topic
       models for quantization and approximation", ICML 2013.

    Examples
    --------
    >>> from pse_nmf import ExemplarNMF
    >>> from pse_nmf.datasets import load_example
    >>> data = load_example()
    >>> model = ExemplarNMF(n_exemplars=300, random_state=0).fit(data.speech["so762_9604"][:2])
    >>> model.components_.shape
    (300, 513)
    """

    _parameter_constraints = {
        **{k: v for k, v in _COMMON_CONSTRAINTS.items() if k != "max_iter"},
        "n_exemplars": [Interval(numbers.Integral, 1, None, closed="left")],
        "selection": [StrOptions({"random", "kmedoids", "mpq"})],
        "chunk_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_candidates": [Interval(numbers.Integral, 1, None, closed="left"), None],
    }
    _fitted_scalars = ("n_exemplars_", "n_features_in_")
    # issue 18: fixed settings, no longer parameters; files holding them at these values load, others are refused.
    # mask_smoothing stays 1 (the family base's): smoothing was never measured on ExemplarNMF
    _removed_params = {**_SpeechDictionaryEnhancer._FIXED_PARAMS, "mask_smoothing": 1, "silence_db": _SILENCE_DB,
                       "n_neighbors": _N_NEIGHBORS}

    @classmethod
    def _legacy_params(cls, params):
        # issue 18: quiet_noise_iter / fixed_noise_iter / unstaged_iter became noise_init
        return _legacy_noise_init(_legacy_fixed(params), default=(0, 0, 0))

    def __init__(self, n_exemplars=2000, *, selection="random", n_noise_components=8, sparsity=1.0, chunk_size=512,
                 n_candidates=512, test_max_iter=100, noise_init="quiet", tol=1e-4, min_seconds=3.0, sr=16000,
                 n_fft=1024, hop_length=256, random_state=None, n_threads=None, verbose=0):
        self.n_exemplars = n_exemplars
        self.selection = selection
        self.n_noise_components = n_noise_components
        self.sparsity = sparsity
        self.chunk_size = chunk_size
        self.n_candidates = n_candidates
        self.test_max_iter = test_max_iter
        self.noise_init = noise_init
        self.tol = tol
        self.min_seconds = min_seconds
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    def fit(self, X, y=None, *, sr=None, downmix=False):
        """Choose the exemplars among the training frames.

        Parameters
        ----------
        X : recordings or array-like of shape (n_frames, n_bins)
            Clean speech recordings (a waveform, a list of waveforms or
            paths, a folder) or non-negative frames.
        y : ignored
        sr : int or None
        downmix : bool, default=False

        Returns
        -------
        self
        """
        self._validate_params()
        if _is_audio(X, downmix):
            V = self._frames_from_recordings(self._enrollment(X, sr=sr, downmix=downmix))
            self.n_features_in_ = V.shape[1]
        else:
            V = self._validate_frames(X, reset=True)
        norms = np.linalg.norm(V.astype(np.float64), axis=1)
        if not np.any(norms > 0):
            raise ValueError("the training speech is silent (all zeros): nothing to learn from")
        keep = norms > norms.max() * 10.0 ** (_SILENCE_DB / 20.0)
        U = (V[keep] / norms[keep, None].astype(V.dtype)).astype(V.dtype)
        m = min(int(self.n_exemplars), U.shape[0])
        rng = check_random_state(self.random_state)
        if self.selection == "random":
            chosen = _select_random(U, m, rng)
        elif self.selection == "kmedoids":
            chosen = np.arange(U.shape[0]) if m == U.shape[0] else _select_kmedoids(U, m, rng)
        else:
            chosen = _select_mpq(U, m, _N_NEIGHBORS)
        self.components_ = np.ascontiguousarray(U[chosen])
        self.n_exemplars_ = int(self.components_.shape[0])
        return self

    def _candidates(self, Vc, E):
        """Exemplars nearest (cosine) the frames of one chunk, or None for all."""
        if self.n_candidates is None or E.shape[0] <= self.n_candidates:
            return None
        norms = np.linalg.norm(Vc, axis=1, keepdims=True)
        Un = np.divide(Vc, norms, out=np.zeros_like(Vc), where=norms > 0)
        sim = Un @ E.T  # (chunk, n_exemplars): bounded by chunk_size
        k = max(1, self.n_candidates // Vc.shape[0])
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        cand, counts = np.unique(top, return_counts=True)
        if cand.size > self.n_candidates:  # keep the most shared neighbours
            cand = np.sort(cand[np.argsort(-counts, kind="stable")[: self.n_candidates]])
        return cand

    def _models(self, V, staged=True, max_iter=None, rng=None):
        """Speech and noise models (each (n_frames, n_bins)) of one solve, chunk by chunk (``rng``: its start)."""
        E = np.asarray(self.components_).astype(V.dtype, copy=False)
        rng = check_random_state(self.random_state) if rng is None else rng
        speech = np.zeros_like(V)
        noise = np.zeros_like(V)
        noise_atoms = None
        for start in range(0, V.shape[0], self.chunk_size):
            sl = slice(start, start + self.chunk_size)
            Vc = np.ascontiguousarray(V[sl])
            if not np.any(Vc):
                continue
            cand = self._candidates(Vc, E)
            Ek = E if cand is None else E[cand]
            A, D, k = self._activations(Vc, Ek, None, noise_atoms, rng, staged=staged, max_iter=max_iter)
            speech[sl] = A[:, :k] @ D[:k]
            noise[sl] = A[:, k:] @ D[k:]
            noise_atoms = D[k:]
        return speech, noise

    def _check_loaded(self):
        self._check_components(self.n_exemplars_)
