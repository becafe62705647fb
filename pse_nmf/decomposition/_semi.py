"""Semi-supervised NMF: one source's dictionary known, the other learned at test time."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .._persistence import register_estimator
from ..audio._mixin import AUDIO_CONSTRAINTS, is_recordings
from ..audio._stft import ratio_mask
from . import _kernels as K
from ._base import _MASK_POWER, _SPECTRUM_POWER, _DictionaryDenoiser
from ._nmf import (
    _beta_value,
    _factorize,
    _init_atoms,
    _warn_not_converged,
    beta_divergence,
)

__all__ = ["SemiSupervisedNMF"]


@register_estimator
class SemiSupervisedNMF(_DictionaryDenoiser):
    r"""Semi-supervised NMF speech enhancement with a personal dictionary.

    ``fit`` learns a dictionary ``D_s`` of the known source (by default the
    target speaker's speech) from clean recordings. At test time the noisy
    frames are factorized as

    .. math::

        V \approx [A_s \; A_n] \begin{bmatrix} D_s \\ D_n \end{bmatrix},
        \qquad
        \min_{A \ge 0,\; D_n \ge 0} D_\beta(V \,|\, A D) + \lambda \sum A

    with ``D_s`` held fixed and the other source's atoms ``D_n`` (unit L2
    norm) learned on the input itself. The speech estimate is the mixture
    STFT times the mask :math:`M = S^p / (S^p + N^p)` with
    :math:`S = A_s D_s`, :math:`N = A_n D_n`, on STFT magnitudes, with
    :math:`p = 2` (both fixed for the family since issue 18: the read-only
    class attributes ``spectrum_power`` and ``mask_power``; ``docs/design.md``
    has the measurements). With ``known="noise"`` the roles
    are mirrored: ``fit`` learns a noise dictionary and speech is learned at
    test time.

    The input is divided by its mean before the updates, so the result does
    not depend on the input's level (``sparsity`` and ``tol`` are scale-free).

    Two levels of use:

    * waveforms: ``fit(recordings)`` with recordings as a 1-D array, a list of
      arrays, file paths or a folder (searched recursively); ``denoise(x)``
      and ``separate(x)`` return waveforms of ``x``'s length;
    * frames (scikit-learn): ``fit(X)`` / ``transform(X)`` on non-negative
      frames (n_frames, n_bins); ``transform`` returns the speech estimate of
      each frame (``X`` times the speech mask), so the estimator fits in a
      :class:`~sklearn.pipeline.Pipeline`.

    Parameters
    ----------
    n_components : int, default=64
        Atoms of the known dictionary learned by ``fit``.
    n_noise_components : int, default=8
        Atoms learned on each input at test time: the noise atoms (with
        ``known="noise"``, the mirrored case, they model the speech; the
        name follows the family's, which always learns noise at test time).
    known : {"speech", "noise"}, default="speech"
        Which source ``fit`` sees.
    beta : float or str, default=1.0
        Beta-divergence (1 = KL, on magnitudes).
    sparsity : float, default=1.0
        L1 weight on the known source's activations, when fitting and at
        test time.
    noise_sparsity : float, default=1.0
        L1 weight on the activations of the atoms learned at test time (the
        noise atoms with ``known="speech"``).
    max_iter : int, default=200
        Iterations when fitting the dictionary.
    test_max_iter : int, default=100
        Iteration budget at test time (``denoise``, ``transform``). It is a
        budget, not a convergence target: stopping early regularises the
        test-time atoms, so reaching it raises no ConvergenceWarning.
    tol : float, default=1e-3
        Relative decrease of the objective (per 10 iterations, relative to
        the initial objective) under which the updates stop.
    min_seconds : float, default=3.0
        Fewest seconds of recordings ``fit`` accepts (recordings only;
        frames carry no duration). Below it ``fit`` raises ``ValueError``;
        below 10 s it warns (``UserWarning``). 0 opts out of the error.
        Below 3 s the model enhances worse than the noisy input on average
        (``benchmarks/enrollment.py``; figures in ``docs/experiments/enrollment.md``).
    sr : int, default=16000
        Sample rate of the model; other rates are resampled.
    n_fft : int, default=1024
    hop_length : int, default=256
    random_state : int, RandomState instance or None
    n_threads : int or None
    verbose : int, default=0

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_bins)
        The known dictionary ``D_s`` (or ``D_n`` when ``known="noise"``).
    n_iter_ : int
    reconstruction_err_ : float
        Beta-divergence of the dictionary fit, on the mean-normalised data.
    n_features_in_ : int
        Frequency bins (``n_fft // 2 + 1`` when fitted on audio).

    References
    ----------
    .. [1] P. Smaragdis, B. Raj and M. Shashanka, "Supervised and
       semi-supervised separation of sounds from single-channel mixtures",
       ICA 2007. doi:10.1007/978-3-540-74494-8_52
    .. [2] G. J. Mysore and P. Smaragdis, "A non-negative approach to
       semi-supervised separation of speech from noise with the use of
       temporal dynamics", ICASSP 2011.
    .. [3] C. Févotte and J. Idier, "Algorithms for nonnegative matrix
       factorization with the beta-divergence", Neural Computation, 2011.

    Examples
    --------
    >>> from pse_nmf import SemiSupervisedNMF
    >>> from pse_nmf.datasets import mix_at_snr
    >>> from pse_nmf.datasets import load_example
    >>> data = load_example()
    >>> speaker = sorted(data.speech)[0]
    >>> model = SemiSupervisedNMF(random_state=0).fit(data.speech[speaker][:-1])
    >>> noise = data.noise[sorted(data.noise)[0]][0]
    >>> noisy, _ = mix_at_snr(data.speech[speaker][-1], noise, 0, random_state=0)
    >>> model.denoise(noisy).shape == noisy.shape
    True
    """

    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_noise_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "known": [StrOptions({"speech", "noise"})],
        "beta": [Interval(numbers.Real, None, None, closed="neither"),
                 StrOptions({"itakura-saito", "kullback-leibler", "frobenius", "euclidean"})],
        "sparsity": [Interval(numbers.Real, 0, None, closed="left")],
        "noise_sparsity": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "test_max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "min_seconds": [Interval(numbers.Real, 0, None, closed="left")],
        **AUDIO_CONSTRAINTS,
    }
    _fitted_arrays = ("components_",)
    _fitted_scalars = ("n_iter_", "reconstruction_err_", "n_features_in_")
    # issue 18: one name for the atoms learned at test time across the family; model files keep loading
    _renamed_params = {"n_test_components": "n_noise_components", "test_sparsity": "noise_sparsity"}
    # fixed settings of the family (class attributes of _DictionaryDenoiser); files at these values load
    _removed_params = {"spectrum_power": _SPECTRUM_POWER, "mask_power": _MASK_POWER}

    def __init__(self, n_components=64, *, n_noise_components=8, known="speech", beta=1.0, sparsity=1.0,
                 noise_sparsity=1.0, max_iter=200, test_max_iter=100, tol=1e-3,
                 min_seconds=3.0, sr=16000, n_fft=1024, hop_length=256, random_state=None, n_threads=None,
                 verbose=0):
        self.n_components = n_components
        self.n_noise_components = n_noise_components
        self.known = known
        self.beta = beta
        self.sparsity = sparsity
        self.noise_sparsity = noise_sparsity
        self.max_iter = max_iter
        self.test_max_iter = test_max_iter
        self.tol = tol
        self.min_seconds = min_seconds
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X, y=None, *, sr=None, downmix=False):
        """Learn the known source's dictionary.

        Parameters
        ----------
        X : recordings or array-like of shape (n_frames, n_bins)
            Clean recordings of the known source (a 1-D waveform, a list of
            waveforms, file paths, or a folder), or non-negative frames.
        y : ignored
        sr : int or None
            Rate of waveforms given as arrays; None means ``self.sr``.
        downmix : bool, default=False
            Average multichannel recordings instead of refusing them.

        Returns
        -------
        self
        """
        self._validate_params()
        if is_recordings(X, downmix):
            recordings = self._enrollment(X, sr=sr, downmix=downmix, name=f"{self.known} recordings")
            V = self._frames_from_recordings(recordings)
            if not np.any(V):
                raise ValueError(f"the {self.known} recordings are silent (all zeros): nothing to learn from")
            self.n_features_in_ = V.shape[1]
        else:
            V = self._validate_frames(X, reset=True)
            if not np.any(V):
                raise ValueError("X is all zeros: nothing to learn from")
        rng = check_random_state(self.random_state)
        D = _init_atoms(self.n_components, V.shape[1], V.dtype, rng)
        with K.thread_limit(self.n_threads):
            A, D, n_iter, _, converged = _factorize(
                V, D, free=None, beta=_beta_value(self.beta), sparsity=self.sparsity, max_iter=self.max_iter,
                tol=self.tol, rng=rng, verbose=self.verbose,
            )
        if not converged and self.tol > 0:
            _warn_not_converged(self.max_iter)
        self.components_ = D
        self.n_iter_ = int(n_iter)
        self.reconstruction_err_ = beta_divergence(V / V.mean(), A @ D / V.mean(), _beta_value(self.beta))
        return self

    def _check_loaded(self):
        self._check_components(self.n_components)

    # -- test time ------------------------------------------------------------------------------
    def _mask(self, V):
        """Speech mask (n_frames, n_bins) of non-negative frames ``V``: one solve, then the ratio mask."""
        rng = check_random_state(self.random_state)
        n, k = self.n_noise_components, self.components_.shape[0]
        if self.known == "speech":
            learned = self._quiet_frame_atoms(V, n, rng)
        else:
            learned = _init_atoms(n, V.shape[1], V.dtype, rng)
        A, D = self._test_factorization(
            V, self.components_, learned, sparsity=self.sparsity, learned_sparsity=self.noise_sparsity,
            max_iter=self.test_max_iter, rng=rng,
        )
        known_model, other_model = A[:, :k] @ D[:k], A[:, k:] @ D[k:]
        if self.known == "speech":
            return ratio_mask(known_model, other_model, power=self.mask_power)
        return ratio_mask(other_model, known_model, power=self.mask_power)
