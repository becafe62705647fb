"""Mixtures of local dictionaries: small dictionaries fitted to clusters of frames, selected per frame."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .._persistence import ModelFileError, register_estimator
from ._base import _COMMON_CONSTRAINTS, _is_audio, _legacy_fixed, _legacy_noise_init, _SpeechDictionaryEnhancer
from ._nmf import _warn_not_converged
from ._penalties import BlockPenalty

__all__ = ["MLD"]

#: epsilon of the per-frame log block penalty, on the scale of mean-normalised data (issue 18: a constant, formerly
#: the parameter block_eps, never set otherwise by the library)
_BLOCK_EPS = 1.0
#: width in frames of the moving average of the speech mask (formerly mask_smoothing; 3 frames: personal MLD 7.04 ->
#: 7.22 dB on the benchmark, docs/experiments/mld.md, session 3)
_MASK_SMOOTHING = 3


def _cluster_frames(V, n_clusters, rng):
    """KMeans labels of the L2-normalised frames; one cluster needs no clustering (and draws no randomness)."""
    if n_clusters == 1:
        return np.zeros(V.shape[0], dtype=np.intp)
    from sklearn.cluster import KMeans

    norms = np.linalg.norm(V, axis=1, keepdims=True)
    U = np.divide(V, norms, out=np.zeros_like(V), where=norms > 0)
    seed = rng.randint(np.iinfo(np.int32).max)
    with warnings.catch_warnings():
        # duplicate frames (e.g. digital silence) make KMeans warn about fewer distinct points
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=n_clusters, n_init=1, max_iter=100, random_state=seed).fit(U)
    return km.labels_.astype(np.intp)


@register_estimator
class MLD(_SpeechDictionaryEnhancer):
    r"""Mixtures of local dictionaries for speech enhancement.

    A large NMF dictionary over-covers the speech manifold: combinations of
    its atoms also explain noise. MLD (Kim & Smaragdis 2015) learns many
    *small* local dictionaries instead, each fitted tightly to one cluster of
    training frames, and at test time lets each frame use few of them:

    .. math::

        \min_{A \ge 0,\, D_n \ge 0}\;
        D_\beta\!\left(V \,\middle|\, [A_s\; A_n] \begin{bmatrix} D_s \\ D_n \end{bmatrix}\right)
        + \lambda \sum_{t=1}^{T} \sum_{g=1}^{G} \log\left(\epsilon + \|A_{tg}\|_1\right)
        + \mu \sum A

    with :math:`D_s = [D_1; \dots; D_G]` the fixed local dictionaries,
    :math:`A_{tg}` the activations of frame ``t`` on dictionary ``g`` (block
    sparsity *per frame*, where the universal speech model's is per
    utterance) and ``n_noise_components`` noise atoms :math:`D_n` learned on
    the input. The log penalty is minimised by the same majorize-minimize
    multiplicative update as :class:`USM`'s (:math:`\lambda/(\epsilon +
    \|A_{tg}\|_1)` joins the denominator of the entries of frame ``t``, block
    ``g``). :math:`\mu` is ``sparsity`` (plain L1 on the
    speech activations; L1 1 on the noise ones).

    Fixed settings (issue 18, as :class:`USM`'s): Kullback-Leibler divergence
    on STFT magnitudes, mask exponent 2, L1 1 on the noise activations, the
    speech mask averaged over 3 frames (``_MASK_SMOOTHING``); read-only class
    attributes ``beta``, ``spectrum_power``, ``mask_power``,
    ``noise_sparsity``, ``mask_smoothing``.

    Fitting one speaker's recordings gives a personal model; fitting a
    mapping speaker -> recordings pools all speakers' frames (a universal
    model whose clusters cut across speakers).

    Choices where the paper leaves room (stated so they can be measured):

    * clustering: scikit-learn ``KMeans`` (one initialisation, at most 100
      iterations) on L2-normalised magnitude frames, i.e. by spectral shape
      regardless of level; silent frames (zero norm) join whichever cluster
      is nearest the origin;
    * each local dictionary: plain (sparse) beta-NMF of its cluster's frames,
      ``n_components_per_dictionary`` unit-norm atoms, the same fit as
      :class:`~pse_nmf.SemiSupervisedNMF`'s;
    * selection: the MM update of the per-frame log penalty (not a hard
      choice of one dictionary per frame);
    * a single local dictionary (``n_dictionaries=1``) has nothing to select:
      no clustering is done and the block term is dropped, so the model *is*
      :class:`~pse_nmf.SemiSupervisedNMF` with ``n_components =
      n_components_per_dictionary`` (same seed, same atoms, same output)
      when the staged noise updates are off (``noise_init="quiet"``;
      SemiSupervisedNMF has none).

    Parameters
    ----------
    n_dictionaries : int, default=4
        Number of local dictionaries (clusters).
    n_components_per_dictionary : int, default=16
        Atoms per local dictionary.
    n_noise_components : int, default=8
        Noise atoms learned on each input at test time (started, as
        :class:`~pse_nmf.SemiSupervisedNMF`'s, from the input's quietest
        frames).
    block_sparsity : float, default=1.0
        :math:`\lambda`, weight of the per-frame block penalty
        (:math:`\epsilon = 1` on the scale of mean-normalised data, fixed:
        ``_BLOCK_EPS``).
    sparsity : float, default=1.0
        :math:`\mu`, L1 weight on the speech activations (fitting and test
        time).
    max_iter : int, default=200
        Iterations per local dictionary when fitting.
    test_max_iter : int, default=30
        Iterations of the last stage of the staged noise updates.
    noise_init : {"staged", "quiet"}, default="staged"
        Test-time recipe of the noise atoms (as :class:`~pse_nmf.USM`'s):
        ``"staged"`` first fits them for 100 iterations on the quietest
        quarter of the input frames, then runs 50 iterations on all frames
        with every atom held (activations only), before ``test_max_iter``
        iterations with the noise atoms free; ``"quiet"`` starts them from
        the quietest frames, free throughout.
    tol : float, default=1e-4
    min_seconds : float, default=3.0
        Fewest seconds of speech ``fit`` accepts from recordings (frames
        carry no duration): below it ``fit`` raises ``ValueError``, below 10 s
        it warns (``UserWarning``); 0 opts out of the error. Measured: below
        3 s the model enhances worse than the noisy input on average
        (``benchmarks/enrollment.py --estimator MLD``; figures in
        ``docs/experiments/enrollment.md``).
    sr, n_fft, hop_length : int, default=16000, 1024, 256
    random_state : int, RandomState instance or None
        Seeds the clustering and the atoms' initialisation.
    n_threads : int or None
    n_jobs : int or None
        Workers (joblib) fitting the local dictionaries, one per cluster;
        None is 1 unless in a ``joblib.parallel_backend`` context (-1: every
        core; Dask through ``parallel_backend("dask")``). The result does not
        depend on it.
    verbose : int, default=0

    Attributes
    ----------
    components_ : ndarray of shape (n_dictionaries * n_components_per_dictionary, n_bins)
        The local dictionaries, stacked.
    cluster_sizes_ : ndarray of shape (n_dictionaries,)
        Training frames per cluster.
    n_iter_ : int
        Most iterations any local dictionary took.
    n_features_in_ : int

    Notes
    -----
    The defaults were chosen on development speakers that are none of
    ``benchmarks/quality.py``'s targets; the measurements behind each one
    are in ``docs/experiments/mld.md``.

    References
    ----------
    .. [1] M. Kim and P. Smaragdis, "Mixtures of local dictionaries for
       unsupervised speech enhancement", IEEE Signal Processing Letters
       22(3), 2015. doi:10.1109/LSP.2014.2346506
    .. [2] D. L. Sun and G. J. Mysore, "Universal speech models for speaker
       independent single channel source separation", ICASSP 2013.

    Examples
    --------
    >>> from pse_nmf import MLD
    >>> from pse_nmf.datasets import load_example
    >>> data = load_example()
    >>> model = MLD(n_dictionaries=4, n_components_per_dictionary=2, max_iter=20, random_state=0)
    >>> model = model.fit(data.speech["so762_9604"][:2])
    >>> model.components_.shape
    (8, 513)
    """

    _parameter_constraints = {
        **_COMMON_CONSTRAINTS,
        "n_dictionaries": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_components_per_dictionary": [Interval(numbers.Integral, 1, None, closed="left")],
        "noise_init": [StrOptions({"quiet", "staged"})],
        "block_sparsity": [Interval(numbers.Real, 0, None, closed="left")],
        "n_jobs": [numbers.Integral, None],
    }
    _fitted_arrays = ("components_", "cluster_sizes_")
    # issue 18: USM's mask averaging with an unstaged solve was never measured on MLD and is off; files that
    # hold unstaged_iter=0 still load. The staged-noise knobs became noise_init. The block penalty is always the log
    # one: the "l2" form was never measured on MLD, and on USM the group lasso scored far lower (1.33 against
    # 4.5 dB, docs/experiments/usm.md)
    _removed_params = {"unstaged_iter": 0, "block_penalty": "log", "block_eps": _BLOCK_EPS,
                       **_SpeechDictionaryEnhancer._FIXED_PARAMS, "mask_smoothing": _MASK_SMOOTHING}
    mask_smoothing = _MASK_SMOOTHING  # a fixed setting (module constant)

    @classmethod
    def _legacy_params(cls, params):
        return _legacy_noise_init(_legacy_fixed(params), default=(100, 50), averaging=False)
    _fitted_scalars = ("n_iter_", "n_features_in_")

    def __init__(self, n_dictionaries=4, n_components_per_dictionary=16, *, n_noise_components=8,
                 block_sparsity=1.0, sparsity=1.0, max_iter=200, test_max_iter=30, noise_init="staged",
                 tol=1e-4, min_seconds=3.0, sr=16000, n_fft=1024, hop_length=256,
                 random_state=None, n_threads=None, n_jobs=None,
                 verbose=0):
        self.n_dictionaries = n_dictionaries
        self.n_components_per_dictionary = n_components_per_dictionary
        self.n_noise_components = n_noise_components
        self.block_sparsity = block_sparsity
        self.sparsity = sparsity
        self.max_iter = max_iter
        self.test_max_iter = test_max_iter
        self.noise_init = noise_init
        self.tol = tol
        self.min_seconds = min_seconds
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.random_state = random_state
        self.n_threads = n_threads
        self.n_jobs = n_jobs
        self.verbose = verbose

    def fit(self, X, y=None, *, sr=None, downmix=False):
        """Cluster the training frames and fit one small dictionary per cluster.

        Parameters
        ----------
        X : recordings, mapping, or array-like of shape (n_frames, n_bins)
            Clean speech: one speaker's recordings (a waveform, a list of
            waveforms or paths, a folder), a mapping speaker -> recordings
            (pooled), or non-negative frames.
        y : ignored
        sr : int or None
            Rate of waveforms given as arrays; None means ``self.sr``.
        downmix : bool, default=False

        Returns
        -------
        self
        """
        self._validate_params()
        if isinstance(X, Mapping) and _is_audio(X):
            if not X:
                raise ValueError("no speakers given: the mapping is empty")
            recs = []
            for spk, items in X.items():
                if isinstance(items, (list, tuple)) and len(items) == 0:
                    raise ValueError(f"speaker {spk!r} has no recordings")
                recs += self._recordings(items, sr=sr, downmix=downmix, name=f"speaker {spk!r}")
            self._check_duration(recs, "speech recordings")
            V = self._frames_from_recordings(recs)
            self.n_features_in_ = V.shape[1]
        elif _is_audio(X, downmix):
            V = self._frames_from_recordings(self._enrollment(X, sr=sr, downmix=downmix))
            self.n_features_in_ = V.shape[1]
        else:
            V = self._validate_frames(X, reset=True)
        if not np.any(V):
            raise ValueError("the training speech is silent (all zeros): nothing to learn from")
        G = self.n_dictionaries
        if V.shape[0] < G:
            raise ValueError(
                f"n_samples={V.shape[0]} training frames cannot make {G} clusters (n_dictionaries={G})"
            )
        rng = check_random_state(self.random_state)
        labels = _cluster_frames(V, G, rng)
        clusters = [np.ascontiguousarray(V[labels == g]) for g in range(G)]
        for g, Vg in enumerate(clusters):
            if not np.any(Vg):
                raise ValueError(
                    f"cluster {g} holds only silent frames; use fewer n_dictionaries or trim the silence"
                )
        fitted = self._fit_blocks(clusters, self.n_components_per_dictionary, rng,
                                  [f"cluster {g}" for g in range(G)])  # one per cluster, in n_jobs workers
        blocks, n_iters, converged = zip(*fitted)
        if not all(converged) and self.tol > 0:
            _warn_not_converged(self.max_iter)
        self.components_ = np.vstack(blocks)
        self.cluster_sizes_ = np.bincount(labels, minlength=G).astype(np.int64)
        self.n_iter_ = int(max(n_iters))
        return self

    def _speech_penalty(self, n_components, groups, l1):
        G = self.components_.shape[0] // self.n_components_per_dictionary
        if G == 1 or self.block_sparsity == 0:
            return None  # nothing to select: plain L1 sparsity, SemiSupervisedNMF's exact path
        all_groups = np.full(n_components, -1)
        all_groups[: G * self.n_components_per_dictionary] = np.repeat(np.arange(G), self.n_components_per_dictionary)
        return BlockPenalty(all_groups, self.block_sparsity, kind="log", scope="frame",
                            eps=_BLOCK_EPS, l1=l1)

    def dictionary_usage(self, X):
        """Share of each local dictionary in each frame's speech activations.

        Parameters
        ----------
        X : array-like of shape (n_samples,) or (n_frames, n_bins)
            A noisy waveform or non-negative frames.

        Returns
        -------
        ndarray of shape (n_frames, n_dictionaries)
            Rows sum to one (zero rows for frames with no speech activation).
        """
        V = self._frames_or_waveform(X)
        G = self.components_.shape[0] // self.n_components_per_dictionary
        usage = np.zeros((V.shape[0], G))
        if not np.any(V):
            return usage
        A, _, k = self._activations(V)
        mass = A[:, :k].reshape(V.shape[0], G, self.n_components_per_dictionary).sum(axis=2, dtype=np.float64)
        total = mass.sum(axis=1, keepdims=True)
        return np.divide(mass, total, out=usage, where=total > 0)

    def _check_loaded(self):
        self._check_components(self.n_dictionaries * self.n_components_per_dictionary)
        sizes = np.asarray(self.cluster_sizes_)
        if sizes.shape != (self.n_dictionaries,):
            raise ModelFileError(f"cluster_sizes_ has shape {sizes.shape}, expected ({self.n_dictionaries},)")
