"""The family base of the dictionary denoisers: fixed speech atoms, noise atoms learned per input.

:class:`MaskTransformerMixin` is the frame-level (scikit-learn) face every dictionary denoiser shares;
:class:`_SpeechDictionaryEnhancer` is the test-time recipe of the speaker-aware estimators
(:class:`~pse_nmf.USM`, :class:`~pse_nmf.MLD`, :class:`~pse_nmf.ExemplarNMF`): a fixed speech dictionary,
noise atoms learned on the input, a penalty object on the activations, all through the one update loop
:func:`pse_nmf.decomposition._nmf._factorize`.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.ndimage import uniform_filter1d
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._persistence import ModelIOMixin
from ..audio._io import check_waveform, resample
from ..audio._mixin import AUDIO_CONSTRAINTS, AudioMixin, is_recordings
from ..audio._stft import ratio_mask
from . import _kernels as K
from ._nmf import _beta_value, _factorize, _init_atoms

# The test-time noise recipes (``noise_init``; this library's heuristics, measured in docs/experiments/usm.md and
# mld.md, where they appear as the former parameters quiet_noise_iter / fixed_noise_iter / unstaged_iter):
#   "quiet"            the noise atoms start from the quietest frames and are free throughout (test_max_iter);
#   "staged"           _QUIET_NOISE_ITER iterations fitting them on the quietest quarter of the frames, then
#                      _FIXED_NOISE_ITER with every atom held (activations only), then test_max_iter free;
#   "staged-averaged"  the staged solve's mask averaged with that of a plain solve of _PLAIN_ITER iterations from
#                      the same start (the staged solve wins at high SNR, the plain one at low SNR and on transient
#                      noises that never reach the quiet frames).
_QUIET_NOISE_ITER = 100
_FIXED_NOISE_ITER = 50
_PLAIN_ITER = 100

# Fixed settings of the family (issue 18, lean estimators: constants, not parameters; every setting of the library
# used these values, and the others measured lower: docs/experiments/*.md and docs/design.md under the former
# parameter names). They are class attributes, as the neural estimators' ``spectrum_power`` is, because code
# outside the estimators reads them (ensembles, OnlineNMF's speech_model check, file processing).
#: frames are STFT magnitudes, |S| ** 1 (0.67 / 1.5 scored lower on USM, docs/experiments/usm.md, session 4)
_SPECTRUM_POWER = 1.0
#: exponent p of the ratio mask S^p / (S^p + N^p) (p=1 -> 2: +0.34 dB on SemiSupervisedNMF, design.md; p=1 / 3
#: lower on USM, 2.5 within the noise)
_MASK_POWER = 2.0
#: speaker-aware estimators (USM, MLD, ExemplarNMF): the beta-divergence of every solve, Kullback-Leibler (beta 0.5
#: scored lower on USM, session 5; they were tuned on KL only)
_BETA_KL = 1.0
#: speaker-aware estimators: L1 weight on the noise atoms' activations, SemiSupervisedNMF's default (noise L1 0.5 /
#: 0.7 / 2 scored lower on USM; unpenalised noise atoms take the speech, design.md)
_NOISE_SPARSITY = 1.0


def _legacy_noise_init(params, default, averaging=True):
    """``quiet_noise_iter`` / ``fixed_noise_iter`` / ``unstaged_iter`` of an older model file -> ``noise_init``.

    ``default``: the old defaults (quiet, fixed, unstaged) of the estimator, for the keys a file lacks.
    ``averaging=False``: the estimator never offered ``unstaged_iter`` at the time (MLD), so it is left to
    ``_removed_params`` and ``"staged-averaged"`` is not offered.
    """
    keys = ("quiet_noise_iter", "fixed_noise_iter", "unstaged_iter") if averaging else ("quiet_noise_iter",
                                                                                          "fixed_noise_iter")
    if not any(k in params for k in keys):
        return params
    params = dict(params)
    quiet, fixed, *rest = (int(params.pop(k, d)) for k, d in zip(keys, default))
    plain = rest[0] if rest else 0
    if quiet == 0 and fixed == 0:
        init = "quiet"  # without the stages there was nothing to average: unstaged_iter had no effect
    elif (quiet, fixed) == (_QUIET_NOISE_ITER, _FIXED_NOISE_ITER) and plain in (0, _PLAIN_ITER):
        init = "staged" if plain == 0 else "staged-averaged"
    else:
        raise ValueError(
            f"quiet_noise_iter={quiet}, fixed_noise_iter={fixed}, unstaged_iter={plain} (noise_init offers "
            f"{_QUIET_NOISE_ITER} / {_FIXED_NOISE_ITER} staged iterations, averaged with {_PLAIN_ITER} plain ones)"
        )
    params["noise_init"] = init
    return params


def _legacy_fixed(params):
    """An older file's ``beta="kullback-leibler"`` as the number the speaker-aware estimators now fix (1.0)."""
    if params.get("beta") == "kullback-leibler":
        params = {**params, "beta": _BETA_KL}
    return params


# constraints shared by the speaker-aware estimators (USM, MLD, ExemplarNMF)
_COMMON_CONSTRAINTS = {
    "n_noise_components": [Interval(numbers.Integral, 1, None, closed="left")],
    "sparsity": [Interval(numbers.Real, 0, None, closed="left")],
    "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    "test_max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    "noise_init": [StrOptions({"quiet", "staged", "staged-averaged"})],
    "tol": [Interval(numbers.Real, 0, None, closed="left")],
    "min_seconds": [Interval(numbers.Real, 0, None, closed="left")],
    **AUDIO_CONSTRAINTS,
}


def _is_audio(X, downmix=False):
    """Recordings rather than frames (sparse matrices, even dict-like ones, are frames)."""
    from scipy.sparse import issparse

    return not issparse(X) and is_recordings(X, downmix)



class MaskTransformerMixin(TransformerMixin):
    """Frame-level (scikit-learn) face of the dictionary denoisers.

    ``transform(X)`` returns the speech estimate of each non-negative frame,
    ``X`` times the speech mask ``_mask(X)``, so the estimators fit in
    a :class:`~sklearn.pipeline.Pipeline`. Requires ``mask_power``,
    ``components_`` and ``n_features_in_``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _validate_frames(self, X, reset):
        from sklearn.utils.validation import check_non_negative, validate_data

        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32], ensure_min_samples=1)
        check_non_negative(X, f"{type(self).__name__} (input X)")
        return X

    def transform(self, X):
        """Speech estimate of each frame: ``X`` times the speech mask.

        Parameters
        ----------
        X : array-like of shape (n_frames, n_bins), non-negative
            Noisy frames (e.g. STFT magnitudes). What is learned at test time
            (the noise atoms, and an utterance-level block selection) is
            fitted on all of ``X`` together.

        Returns
        -------
        ndarray of shape (n_frames, n_bins)
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        X = self._validate_frames(X, reset=False)
        if not np.any(X):
            return np.zeros_like(X)
        return X * self._mask(X)

    def get_feature_names_out(self, input_features=None):
        """Same names as the input features: ``transform`` keeps the bins."""
        from sklearn.utils.validation import _check_feature_names_in, check_is_fitted

        check_is_fitted(self)
        return _check_feature_names_in(self, input_features)

    def _check_components(self, n_expected):
        """Raise ModelFileError unless ``components_`` is a usable (n_expected, n_features_in_) dictionary."""
        from .._persistence import check_dictionary

        check_dictionary(self.components_, "components_", (n_expected, self.n_features_in_))


class _DictionaryDenoiser(AudioMixin, MaskTransformerMixin, ModelIOMixin, BaseEstimator):
    """Family base: a dictionary ``components_`` learned by ``fit``, atoms of the other source learned per input.

    ``fit`` gives the known atoms (and, in subclasses, their groups); at test
    time :meth:`_test_factorization` factorizes the input on [known atoms;
    learned atoms] with the one update loop, and the ``_mask(V)`` hook turns
    that into the speech mask that ``denoise``, ``separate`` and ``transform``
    apply. Fitting on recordings goes through :meth:`_enrollment`, which
    refuses fewer than ``min_seconds`` of audio and warns in the grey zone.
    """

    _fitted_arrays = ("components_",)
    # fixed settings (module constants above; read by code outside the estimators, hence attributes)
    spectrum_power = _SPECTRUM_POWER
    mask_power = _MASK_POWER

    # -- fitting ---------------------------------------------------------------------------------
    def _enrollment(self, X, *, sr=None, downmix=False, name="speech recordings"):
        """Recordings of ``X`` at the model's rate, after the minimum-duration check (``min_seconds``)."""
        recordings = self._recordings(X, sr=sr, downmix=downmix, name=name)
        self._check_duration(recordings, name, stacklevel=4)  # the caller of fit / personalize
        return recordings

    def _fit_block(self, V, n_atoms, rng, name):
        """Plain (sparse) KL-NMF of one training set of frames: (n_atoms, n_bins) atoms."""
        if not np.any(V):
            raise ValueError(f"the recordings of {name} are silent (all zeros): nothing to learn from")
        D = _init_atoms(n_atoms, V.shape[1], V.dtype, rng)
        fit_sparsity = getattr(self, "fit_sparsity", None)
        sparsity = self.sparsity if fit_sparsity is None else fit_sparsity
        with K.thread_limit(self.n_threads):
            _, D, n_iter, _, converged = _factorize(
                V, D, free=None, beta=_beta_value(self.beta), sparsity=sparsity, max_iter=self.max_iter,
                tol=self.tol, rng=rng, verbose=self.verbose,
            )
        return D, int(n_iter), bool(converged)

    def _fit_blocks(self, pieces, n_atoms, rng, names):
        """:meth:`_fit_block` of each independent piece of frames, in ``self.n_jobs`` joblib workers.

        The result is the serial loop's, whatever ``n_jobs`` or joblib backend
        (Dask included): the loop drew each block's random start from ``rng``
        in turn, so piece ``k`` gets a copy of ``rng`` in the state the loop
        left it in, found by making the same draws (its atoms ``(n_atoms,
        n_bins)``, then its activations ``(n_frames, n_atoms)``:
        ``_init_atoms`` and ``_factorize``'s ``_init_activations``) without
        the solves. ``rng`` ends where the loop would have left it.

        Returns
        -------
        list of (D, n_iter, converged), one per piece, in order
        """
        from joblib import Parallel, delayed

        starts = []
        for V in pieces:
            start = np.random.RandomState()
            start.set_state(rng.get_state())
            starts.append(start)
            rng.uniform(0.1, 1.0, size=(n_atoms, V.shape[1]))
            rng.uniform(0.1, 1.0, size=(V.shape[0], n_atoms))
        return Parallel(n_jobs=self.n_jobs)(
            delayed(self._fit_block)(V, n_atoms, start, name) for V, start, name in zip(pieces, starts, names)
        )

    # -- test time --------------------------------------------------------------------------------
    def _waveform_frames(self, x, sr=None, downmix=False):
        """Non-negative frames (n_frames, n_bins) of a waveform at the model's rate."""
        self._check_waveform_model()
        y = check_waveform(x, name="x", downmix=downmix)
        y = resample(y, self.sr if sr is None else int(sr), self.sr)
        if y.size < self.n_fft:
            raise ValueError(f"x has {y.size} samples at {self.sr} Hz, fewer than one STFT frame (n_fft={self.n_fft})")
        return self._spectrum(y)[1]

    def _frames_or_waveform(self, x, sr=None, downmix=False):
        if isinstance(x, np.ndarray) and x.ndim == 2:
            check_is_fitted(self)
            return self._validate_frames(x, reset=False)
        return self._waveform_frames(x, sr=sr, downmix=downmix)

    @staticmethod
    def _quiet_frame_atoms(V, n, rng):
        """Initial noise atoms: frames of the input's quietest quarter, normalised, plus a uniform floor.

        Pauses in speech hold noise alone, so these start the noise atoms near
        the noise instead of anywhere; the updates refine them. The floor keeps
        every bin able to grow. Fewer than 4 frames: random atoms.
        """
        if V.shape[0] < 4:
            return _init_atoms(n, V.shape[1], V.dtype, rng)
        energy = V.sum(axis=1)
        quiet = np.flatnonzero(energy <= np.quantile(energy, 0.25))
        pick = rng.choice(quiet, size=n, replace=quiet.size < n)
        atoms = V[pick] / np.maximum(np.linalg.norm(V[pick], axis=1, keepdims=True), np.finfo(V.dtype).tiny)
        atoms = atoms + _init_atoms(n, V.shape[1], V.dtype, rng) * V.dtype.type(0.1)
        return atoms / np.linalg.norm(atoms, axis=1, keepdims=True)

    def _test_factorization(self, V, D_known, learned, *, sparsity, learned_sparsity, max_iter, rng, penalty=None,
                            quiet_iter=0, fixed_iter=0):
        """The test-time recipe: factorize ``V`` on [``D_known``; ``learned``] with the known atoms held.

        Optional stages before the main solve (a library heuristic, see
        ``docs/design.md``): ``quiet_iter`` iterations fitting the learned atoms
        on the quietest quarter of the frames, then ``fixed_iter`` iterations of
        the activations alone with every atom held. Without them this is
        exactly one :func:`~pse_nmf.decomposition._nmf._factorize` call.

        Returns
        -------
        A : ndarray of shape (n_frames, n_known + n_learned)
        D : ndarray of shape (n_known + n_learned, n_bins)
        """
        D_known = np.asarray(D_known).astype(V.dtype, copy=False)
        D = np.vstack([D_known, learned.astype(V.dtype, copy=False)])
        free = np.arange(D.shape[0]) >= D_known.shape[0]
        l1 = np.where(free, learned_sparsity, sparsity).astype(V.dtype)
        beta = _beta_value(self.beta)
        A = None
        with K.thread_limit(self.n_threads):
            if quiet_iter and V.shape[0] >= 4:
                # learned atoms first fitted where the input is quietest (speech pauses: mostly noise)
                energy = V.sum(axis=1)
                Vq = V[energy <= np.quantile(energy, 0.25)]
                if np.any(Vq):
                    _, D, _, _, _ = _factorize(
                        Vq, D, free=free, beta=beta, sparsity=l1, max_iter=quiet_iter, tol=self.tol, rng=rng,
                        penalty=penalty,
                    )
            if fixed_iter:
                # activations only, every atom held: the speech cannot leak into the noise atoms yet
                A, D, _, _, _ = _factorize(
                    V, D, free=np.zeros_like(free), beta=beta, sparsity=l1, max_iter=fixed_iter, tol=self.tol,
                    rng=rng, penalty=penalty,
                )
            A, D, _, _, _ = _factorize(
                V, D, free=free, beta=beta, sparsity=l1, max_iter=max_iter, tol=self.tol, rng=rng, A=A,
                penalty=penalty,
            )
        return A, D

    def _mask(self, V):
        """Speech mask (n_frames, n_bins) in [0, 1] of non-negative frames ``V``."""
        raise NotImplementedError


class _SpeechDictionaryEnhancer(_DictionaryDenoiser):
    """Fixed speech atoms ``components_`` + ``n_noise_components`` noise atoms learned per input.

    Subclasses fit ``components_`` and may return a penalty object from
    ``_speech_penalty(n_components_total, groups, l1)``; ``None`` means the
    plain L1 ``sparsity`` of :class:`~pse_nmf.SemiSupervisedNMF` (exactly its
    code path). The mask may average several solves (``noise_init="staged-averaged"``,
    USM's ``_N_SOLVES``) and be smoothed over ``mask_smoothing`` frames (a
    fixed setting of each subclass).
    """

    # fixed settings of the speaker-aware estimators (module constants above)
    beta = _BETA_KL
    noise_sparsity = _NOISE_SPARSITY
    #: width in frames of the moving average of the speech mask (1: none); each subclass fixes its own
    mask_smoothing = 1
    #: removed parameters (issue 18) and the values the estimators now always use; old model files holding them at
    #: these values load, others are refused (pse_nmf._persistence._upgrade_params)
    _FIXED_PARAMS = {"beta": _BETA_KL, "noise_sparsity": _NOISE_SPARSITY, "spectrum_power": _SPECTRUM_POWER,
                     "mask_power": _MASK_POWER}

    # -- test time --------------------------------------------------------------------------------
    def _speech_penalty(self, n_components, groups, l1):
        return None

    def _init_noise_atoms(self, V, rng):
        """Initial noise atoms (the quietest frames, as :class:`~pse_nmf.SemiSupervisedNMF` starts them)."""
        return self._quiet_frame_atoms(V, self.n_noise_components, rng)

    def _activations(self, V, D_known=None, groups=None, noise_atoms=None, rng=None, *, staged=True, max_iter=None):
        """Factorize ``V`` on [known atoms; learned noise atoms] (:meth:`_test_factorization`).

        ``staged=False`` skips the staged noise updates (noise atoms free from
        the start); ``max_iter`` replaces ``test_max_iter`` (last stage).

        Returns
        -------
        A : ndarray of shape (n_frames, n_known + n_noise_components)
        D : ndarray of shape (n_known + n_noise_components, n_bins)
        n_known : int
        """
        if D_known is None:
            D_known = self.components_
        D_known = np.asarray(D_known).astype(V.dtype, copy=False)
        if rng is None:
            rng = check_random_state(self.random_state)
        noise = self._init_noise_atoms(V, rng) if noise_atoms is None else noise_atoms
        staged = staged and self.noise_init != "quiet"
        n_total = D_known.shape[0] + noise.shape[0]
        l1 = np.where(np.arange(n_total) >= D_known.shape[0], self.noise_sparsity, self.sparsity).astype(V.dtype)
        penalty = self._speech_penalty(n_total, groups, l1)  # depends on the shapes only, not on A or D
        A, D = self._test_factorization(
            V, D_known, noise, sparsity=self.sparsity, learned_sparsity=self.noise_sparsity,
            max_iter=self.test_max_iter if max_iter is None else max_iter, rng=rng, penalty=penalty,
            quiet_iter=_QUIET_NOISE_ITER if staged else 0, fixed_iter=_FIXED_NOISE_ITER if staged else 0,
        )
        return A, D, D_known.shape[0]

    def _models(self, V, staged=True, max_iter=None, rng=None):
        """Speech and noise models (each (n_frames, n_bins)) of one solve (``rng``: its random start)."""
        A, D, k = self._activations(V, rng=rng, staged=staged, max_iter=max_iter)
        return A[:, :k] @ D[:k], A[:, k:] @ D[k:]

    def _n_solves(self):
        """Solves (random starts) whose masks are averaged; only USM has more than one."""
        return 1

    def _mask(self, V):
        """Speech mask (n_frames, n_bins) of non-negative frames ``V``.

        The ratio mask (exponent ``mask_power``) of one solve's models, or the
        mean of several solves' masks (``noise_init="staged-averaged"``, USM's ``_N_SOLVES``),
        smoothed over ``mask_smoothing`` frames.
        """
        average = self.noise_init == "staged-averaged"
        n_solves = self._n_solves()
        p = self.mask_power
        if not average and n_solves == 1 and self.mask_smoothing == 1:
            return ratio_mask(*self._models(V), power=p)
        # the first solve starts from random_state as a single solve does; the others from seeds drawn from it
        seeds = check_random_state(self.random_state).randint(np.iinfo(np.int32).max, size=n_solves - 1) \
            if n_solves > 1 else []

        def start(i):  # a fresh generator each call: the staged and the plain solve of a pair start alike
            return {} if i == 0 else {"rng": np.random.RandomState(seeds[i - 1])}

        M = None
        for i in range(n_solves):
            Mi = ratio_mask(*self._models(V, **start(i)), power=p)
            if average:
                # the staged solve wins at high SNR, the plain one (same start) at low SNR and on transient noises
                # that never reach the quiet frames; their mean beats both on average (library heuristic, see
                # docs/design.md)
                Mi = 0.5 * (Mi + ratio_mask(*self._models(V, staged=False, max_iter=_PLAIN_ITER, **start(i)),
                                            power=p))
            M = Mi if M is None else M + Mi
        M = M / n_solves
        if self.mask_smoothing > 1:
            M = uniform_filter1d(M, self.mask_smoothing, axis=0, mode="nearest")
        return np.clip(M, 0, 1).astype(V.dtype, copy=False)
