"""Online semi-supervised NMF: streaming speech enhancement in changing noise."""

from __future__ import annotations

import copy
import numbers
import os
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from .._persistence import (
    ModelFileError,
    ModelIOMixin,
    check_dictionary,
    register_estimator,
)
from ..audio._io import _atomic_write, _check_readable, check_waveform, resample
from ..audio._mixin import AUDIO_CONSTRAINTS, AudioMixin, is_recordings
from ..audio._stream import StreamingSTFT
from . import _kernels as K
from ._base import _MASK_POWER, _SPECTRUM_POWER
from ._nmf import L1Penalty, _factorize, _init_atoms, _solve, _warn_not_converged, beta_divergence
from ._online_kernels import dc_block, ingest_frame, pending_masks, replace_atoms, speech_mask

__all__ = ["OnlineNMF"]


# A mean above this share of the RMS about the mean is a DC offset, removed before streaming
# (measured: see "DC offset" in OnlineNMF's docstring).
_DC_RATIO = 0.1
# The live stream's causal DC estimate (process): cumulative mean over the first _DC_SECONDS, then
# exponential with that time constant; the offset is removed from _DC_MIN_SECONDS on (see dc_block: the bar is
# higher while the estimate is young). On 24 dev mixtures (6 speakers, -5/5 dB), none triggers it: process equals
# denoise bit for bit; with 0.2 x + 0.3 as input, process is 0.0-0.7 dB SI-SDR below denoise.
_DC_SECONDS = 2.0
_DC_MIN_SECONDS = 0.02


def _dc_offset(n, total, square):
    """The mean of a signal of ``n`` samples (sum ``total``, sum of squares ``square``) if it is an offset, else 0."""
    if n == 0:
        return 0.0
    mean = total / n
    ac_rms = np.sqrt(max(square / n - mean * mean, 0.0))
    return mean if abs(mean) > _DC_RATIO * ac_rms else 0.0


# Fixed streaming heuristics (issue 18: constants, not parameters; measured in docs/experiments/online.md,
# where they appear under their former parameter names):
#: weight of the previous frame's activations in a new frame's start (``warm_start``; 0.9 and 0.8 measured worse)
_WARM_START = 0.95
#: a window step after every frame (``update_every``; fewer steps only help windows far longer than the default)
_UPDATE_EVERY = 1
#: noise atoms re-seeded at each replacement (``n_replace``; 1, 2, 4 measured worse)
_N_REPLACE = 3
#: a re-seeded atom copies the quietest of this many most recent frames (``replace_recent``)
_REPLACE_RECENT = 16


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

    For each frame (frame number ``t``): :func:`ingest_frame` (its own
    ``n_iter`` activation updates, see there); when ``t >= L``,
    ``replace_every > 0`` and ``t % replace_every == 0``,
    :func:`replace_atoms`; after every ``update_every`` frames (``(t + 1) %
    update_every == 0``) the window step, which is the offline loop itself:
    ``n_dict_iter`` iterations of :func:`_solve` on the window (KL, L1 weight
    ``sparsity`` on all activations, speech atoms fixed, noise atoms with the
    normalisation-aware update of the penalised offline solve, at unit L2
    norm), after which ``h`` becomes the frame's refined activations; if ``t
    >= lookahead``, the mask of frame ``t - lookahead``, ``S^p / (S^p +
    N^p)`` from its activations in the window. Python pays its overhead once
    per frame (about 0.1 ms); the products go to BLAS.
    """
    n_speech = int(n_speech)
    L = buf_X.shape[0]
    colsum = W.sum(axis=1)
    x = np.empty(W.shape[1])
    free = np.arange(W.shape[0]) >= n_speech  # the noise atoms: what the window step learns
    penalty = L1Penalty(sparsity) if sparsity > 0 else None
    n_out = 0
    for t in range(V.shape[0]):
        seen = int(info[1])
        slot = ingest_frame(V[t], W, colsum, h, U, x, buf_X, buf_A, buf_E, scale, info, n_speech, n_iter, sparsity,
                            warm_start, eps)
        n_held = int(info[0])
        if replace_every > 0 and seen >= L and seen % replace_every == 0:
            replace_atoms(W, colsum, U, x, buf_X, buf_A, buf_E, seen, n_held, n_speech, n_replace, replace_recent, eps)
        if n_dict_iter > 0 and (seen + 1) % update_every == 0:
            _solve(buf_X[:n_held], buf_A[:n_held], W, beta=1.0, penalty=penalty, free=free, max_iter=n_dict_iter,
                   tol=0, objective=False)
            np.sum(W, axis=1, out=colsum)
            if buf_E[slot] > 0.0:
                h[:] = buf_A[slot]
        info[1] = seen + 1
        if seen >= lookahead:
            speech_mask(W, buf_A[(seen - lookahead) % L], n_speech, mask_power, mask_out[n_out])
            n_out += 1
    return n_out


class _StreamState:
    """Everything that changes while a stream runs (never saved with the model).

    Held apart from the estimator so that ``denoise`` can run on a fresh
    state without disturbing a live stream.
    """

    def __init__(self, est):
        n_speech = est.components_.shape[0]
        n_bins = est.components_.shape[1]
        L = est.buffer_size
        self.stft = StreamingSTFT(est.n_fft, est.hop_length)
        self.W = np.ascontiguousarray(np.vstack([est.components_, est.initial_noise_components_]), dtype=np.float64)
        n_atoms = self.W.shape[0]
        colsum = np.maximum(self.W.sum(axis=1), np.finfo(np.float64).eps)
        self.h = n_bins / (n_atoms * colsum)  # flat start, mean model 1
        self.buf_X = np.zeros((L, n_bins))
        self.buf_A = np.zeros((L, n_atoms))
        self.buf_E = np.zeros(L)
        self.scale = np.zeros(1)
        self.info = np.zeros(3, dtype=np.int64)
        Dn = est.initial_noise_components_
        self.U = np.ascontiguousarray(Dn / np.maximum(Dn.mean(axis=1, keepdims=True), np.finfo(np.float64).tiny))
        self.pending = np.zeros((0, n_bins), dtype=np.complex128)  # analysed frames waiting for the lookahead
        self.out = np.zeros(est.latency, dtype=np.float64)  # output FIFO, primed with the latency's zeros
        self.n_speech = n_speech
        self.dc = np.zeros(3)  # process's causal DC estimate: mean, mean square, samples seen


@register_estimator
class OnlineNMF(AudioMixin, ModelIOMixin, BaseEstimator):
    r"""Streaming speech enhancement: sliding-window semi-supervised NMF (after Duan, Mysore & Smaragdis 2012).

    A speech dictionary :math:`D_s` is fixed (learned by :meth:`fit` from
    clean speech of the user, exactly as :class:`SemiSupervisedNMF` learns
    it, or taken from a fitted speech model); a small noise dictionary
    :math:`D_n` is learned *while the audio streams*, so that it follows
    noise that changes. Each frame is enhanced with the soft mask of its
    speech and noise models, and the signal is resynthesised by overlap-add:
    the output lags the input by a fixed ``latency`` of ``n_fft - 1 +
    lookahead * hop_length`` samples (the STFT window, plus the frames a
    frame waits to be refined; 63.9 ms at the defaults, ``lookahead=0``).

    The model is the offline :class:`SemiSupervisedNMF` objective (KL
    divergence, L1 weight :math:`\lambda` on speech *and* noise
    activations, noise atoms at unit L2 norm) restricted to a window
    :math:`B_t` of the ``buffer_size`` most recent frames, *all* of them,
    speech and noise alike, each divided by a running mean magnitude
    :math:`c_b` (:math:`x_b = v_b / c_b`; :math:`c` follows the frames'
    means with time constant ``buffer_size``, so nothing depends on the
    level and, as offline, louder frames weigh more):

    .. math::

        \min_{D_n \ge 0,\; h_b \ge 0} \sum_{b \in B_t}
          D_{KL}\big(x_b \,\big|\, D_s^\top h_{s,b} + D_n^\top h_{n,b}\big)
          + \lambda \|h_b\|_1,
        \qquad \|D_{n,k}\|_2 = 1 .

    It is minimised incrementally: a new frame gets ``n_frame_iter`` activation
    updates with the dictionaries fixed (warm-started from the previous
    frame) and joins the window; then ``n_window_iter`` multiplicative updates
    of *every* window frame's activations and of the noise atoms on the
    whole window: the offline loop itself (the same kernels and the
    normalisation-aware atom update of the penalised offline solve, so a
    window holding the whole input, stepped once, gives the offline
    solution; tested). Each frame is
    thus refined while it stays in the window, and the noise atoms are
    fitted jointly with the speech, as offline. Frame ``t`` is masked,
    ``S^p / (S^p + N^p)``, when frame ``t + lookahead`` arrives. Every
    ``replace_every`` frames the 3 noise atoms least used in the
    window are re-seeded from the quietest of the last 16
    frames (the offline model seeds its noise atoms from the quietest
    frames); at the start noise atom :math:`j` is seeded from frame
    :math:`j` of the stream (times random positive weights of mean 1 drawn
    in :meth:`fit`, ``initial_noise_components_``): streams usually start
    before the talker does.

    The choices (window, re-seeding, normalisation, lookahead) were measured
    on development mixtures that ``benchmarks/online.py`` does not use; the
    tables, the variants not kept and the known limits (the first seconds
    after a change of noise) are in ``docs/experiments/online.md``.

    DC offset. :meth:`denoise` and :meth:`denoise_file` subtract the
    input's mean first when it exceeds 10 % of the input's RMS about the
    mean (``_DC_RATIO``): a constant offset is not speech, and in the
    stream it dominates the lowest bins and the frames' scale (a 0 dB
    mixture at a fifth of its level plus 0.3: 3.5 dB SI-SDR against 10.6 dB
    offline, and 8.3 dB with the offset removed, the same as without it).
    Smaller means are left alone, so ordinary recordings stream exactly as
    before: the stream reacts to any change of its input (removing the
    1e-4 mean of an ordinary recording moved one of 12 mixtures by 2 dB,
    and a causal 8 Hz high-pass moved the mean by 0.2 dB). A live stream
    (:meth:`process`) cannot know the mean in advance: it applies the same
    rule causally, to a running mean (cumulative over the first 2 s, then
    with a 2 s time constant; the bar is higher while the mean is young)
    from 20 ms on, so an ordinary recording streams as :meth:`denoise`
    enhances it, and a large offset is removed after 20 ms.

    All-zero frames give silence and enter the window as zeros. The
    products go to BLAS: about 0.6 ms per frame on one thread at the
    defaults, against a 16 ms hop.

    Streaming: :meth:`process` takes blocks of any size (even 1 sample) and
    returns as many samples, the enhanced signal delayed by ``latency``
    samples (zeros first); :meth:`flush` ends the stream and returns the last
    ``latency`` samples; :meth:`reset` starts over. The output does not
    depend on how the signal is cut into blocks. :meth:`denoise` runs a
    whole signal through a fresh stream and returns it aligned with the
    input; :meth:`denoise_file` enhances files of any length in constant
    memory.

    Frames are STFT magnitudes and the mask exponent is 2, as in the rest of
    the family (fixed since issue 18: read-only class attributes
    ``spectrum_power`` and ``mask_power``).

    Parameters
    ----------
    n_components : int, default=64
        Speech atoms learned by :meth:`fit` (ignored with ``speech_model``).
    n_noise_components : int, default=8
        Noise atoms learned online.
    speech_model : fitted estimator or None, default=None
        A fitted speech model whose ``components_`` (n_atoms, n_fft // 2 + 1)
        is the speech dictionary, e.g. a :class:`SemiSupervisedNMF` fitted
        with ``known="speech"``; its ``sr``, ``n_fft`` and ``hop_length``
        must equal these. When given, ``fit()`` takes no data. (A parameter,
        like scikit-learn's ``SparseCoder(dictionary=...)``; not saved: the
        saved model holds the dictionary itself.)
    sparsity : float, default=1.0
        L1 weight on all activations (frames divided by their mean); also
        used when fitting the speech dictionary.
    buffer_size : int, default=96
        Frames in the window (96 frames = 1.5 s at hop 256 / 16 kHz).
    lookahead : int, default=0
        Frames a frame waits (and is refined) before it is masked; adds
        ``lookahead * hop_length`` samples of latency. Must be smaller than
        ``buffer_size``. Each frame of waiting is one more window update of
        the frame: beyond a few it *lowers* the quality, as more iterations
        do offline (see Known limits).
    n_frame_iter : int, default=8
        Activation updates of a new frame before it joins the window.
    n_window_iter : int, default=1
        Iterations of the offline loop on the window (all its activations
        and the noise atoms) per frame; 0 keeps the seeded atoms.
    replace_every : int, default=8
        Re-seed the least used noise atoms every this many frames (0: never).
    max_iter : int, default=200
        Iterations of the speech dictionary fit.
    tol : float, default=1e-4
        Tolerance of the speech dictionary fit.
    sr : int, default=16000
    n_fft : int, default=1024
    hop_length : int, default=256
    random_state : int, RandomState instance or None
        Seeds the speech dictionary fit and the initial noise atoms.
    n_threads : int or None
        BLAS threads while fitting the speech dictionary.
    verbose : int, default=0

    Attributes
    ----------
    components_ : ndarray of shape (n_speech_atoms, n_bins)
        The fixed speech dictionary (unit L2 norm atoms when learned here).
    initial_noise_components_ : ndarray of shape (n_noise_components, n_bins)
        Random positive atoms (unit L2 norm) drawn in :meth:`fit`: divided by
        their means they are the weights that make the noise atoms seeded
        from a stream's first frames differ; also what
        :attr:`noise_components_` shows before any input.
    n_iter_ : int
        Iterations of the speech dictionary fit (0 with ``speech_model``).
    n_features_in_ : int
        Frequency bins, ``n_fft // 2 + 1``.
    latency : int
        Algorithmic latency in samples, ``n_fft - 1 + lookahead *
        hop_length`` (a property).
    noise_components_ : ndarray of shape (n_noise_components, n_bins)
        The live stream's current noise atoms (a property).

    References
    ----------
    .. [1] Z. Duan, G. J. Mysore and P. Smaragdis, "Speech enhancement by
       online non-negative spectrogram decomposition in non-stationary noise
       environments", Interspeech 2012.
    .. [2] Z. Duan, G. J. Mysore and P. Smaragdis, "Online PLCA for real-time
       semi-supervised source separation", LVA/ICA 2012.
       doi:10.1007/978-3-642-28551-6_5
    .. [3] P. Smaragdis, B. Raj and M. Shashanka, "Supervised and
       semi-supervised separation of sounds from single-channel mixtures",
       ICA 2007.

    Examples
    --------
    >>> import numpy as np
    >>> from pse_nmf import OnlineNMF
    >>> from pse_nmf.datasets import mix_at_snr
    >>> from pse_nmf.datasets import load_example
    >>> data = load_example()
    >>> speaker = sorted(data.speech)[0]
    >>> model = OnlineNMF(random_state=0, max_iter=50).fit(data.speech[speaker][:-1])
    >>> noisy, _ = mix_at_snr(data.speech[speaker][-1], data.noise[sorted(data.noise)[0]][0], 0, random_state=0)
    >>> out = [model.process(block) for block in np.array_split(noisy, 7)]
    >>> enhanced = np.concatenate(out + [model.flush()])[model.latency:]
    >>> np.allclose(enhanced, model.denoise(noisy), atol=1e-6)
    True
    """

    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_noise_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "speech_model": [HasMethods(["get_params"]), None],
        "sparsity": [Interval(numbers.Real, 0, None, closed="left")],
        "buffer_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "lookahead": [Interval(numbers.Integral, 0, None, closed="left")],
        "n_frame_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_window_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "replace_every": [Interval(numbers.Integral, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        **AUDIO_CONSTRAINTS,
    }
    _fitted_arrays = ("components_", "initial_noise_components_")
    _fitted_scalars = ("n_iter_", "n_features_in_")
    # issue 18: n_iter (per frame) and n_iter_ (the speech fit) meant different things; the heuristics are constants
    _renamed_params = {"n_iter": "n_frame_iter", "n_dict_iter": "n_window_iter"}
    _removed_params = {"warm_start": _WARM_START, "update_every": _UPDATE_EVERY, "n_replace": _N_REPLACE,
                       "replace_recent": _REPLACE_RECENT, "spectrum_power": _SPECTRUM_POWER, "mask_power": _MASK_POWER}
    # fixed settings of the dictionary family (pse_nmf.decomposition._base); read as attributes by the mask kernels
    # and by the speech_model check
    spectrum_power = _SPECTRUM_POWER
    mask_power = _MASK_POWER

    def __init__(self, n_components=64, *, n_noise_components=8, speech_model=None, sparsity=1.0, buffer_size=96,
                 lookahead=0, n_frame_iter=8, n_window_iter=1, replace_every=8,
                 max_iter=200, tol=1e-4, sr=16000, n_fft=1024, hop_length=256, random_state=None, n_threads=None,
                 verbose=0):
        self.n_components = n_components
        self.n_noise_components = n_noise_components
        self.speech_model = speech_model
        self.sparsity = sparsity
        self.buffer_size = buffer_size
        self.lookahead = lookahead
        self.n_frame_iter = n_frame_iter
        self.n_window_iter = n_window_iter
        self.replace_every = replace_every
        self.max_iter = max_iter
        self.tol = tol
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    # -- fitting -------------------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    def fit(self, X=None, y=None, *, sr=None, downmix=False):
        """Set the speech dictionary: learn it from ``X`` or take it from ``speech_model``.

        Parameters
        ----------
        X : recordings, array-like of shape (n_frames, n_bins), or None
            Clean speech of the user (a waveform, a list of waveforms, file
            paths or a folder), or non-negative STFT frames (any number of
            bins; streaming needs ``n_fft // 2 + 1``). Must be None when
            ``speech_model`` is given.
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
        self._check_audio_params()
        self._check_lookahead()
        n_bins = self._n_bins()
        rng = check_random_state(self.random_state)
        if self.speech_model is not None:
            if X is not None:
                raise ValueError("pass either speech recordings X or speech_model, not both")
            D = self._components_from_model(self.speech_model)
            self.n_iter_ = 0
        else:
            if X is None:
                raise ValueError("fit needs clean speech recordings X, or a fitted speech_model")
            if is_recordings(X, downmix):
                V = self._frames_from_recordings(self._recordings(X, sr=sr, downmix=downmix, name="speech recordings"))
                if not np.any(V):
                    raise ValueError("the speech recordings are silent (all zeros): nothing to learn from")
            else:
                V = validate_data(self, X, reset=True, dtype=[np.float64, np.float32], ensure_min_samples=1)
                check_non_negative(V, f"{type(self).__name__} (input X)")
                n_bins = V.shape[1]  # any frames fit; streaming needs n_fft // 2 + 1 bins (checked there)
                if not np.any(V):
                    raise ValueError("X is all zeros: nothing to learn from")
            D = _init_atoms(self.n_components, n_bins, V.dtype, rng)
            # the one update loop of the library, as SemiSupervisedNMF.fit calls it
            with K.thread_limit(self.n_threads):
                A, D, n_iter, _, converged = _factorize(
                    V, D, free=None, beta=1.0, sparsity=self.sparsity, max_iter=self.max_iter, tol=self.tol,
                    rng=rng, verbose=self.verbose,
                )
            if not converged and self.tol > 0:
                _warn_not_converged(self.max_iter)
            self.n_iter_ = int(n_iter)
            self.reconstruction_err_ = beta_divergence(V / V.mean(), A @ D / V.mean(), 1.0)
        self.components_ = np.ascontiguousarray(D, dtype=np.float64)
        self.initial_noise_components_ = _init_atoms(self.n_noise_components, n_bins, np.float64, rng)
        self.n_features_in_ = n_bins
        self._stream = None
        return self

    def _check_lookahead(self):
        if not int(self.lookahead) < int(self.buffer_size):
            raise ValueError(
                f"lookahead={self.lookahead} must be smaller than buffer_size={self.buffer_size}: "
                "a frame is output while it is still in the window"
            )

    def _components_from_model(self, model):
        try:
            check_is_fitted(model)
        except Exception as exc:  # sklearn raises NotFittedError (or TypeError for non-estimators)
            raise ValueError(f"speech_model is not fitted: {exc}") from exc
        D = getattr(model, "components_", None)
        if D is None:
            raise ValueError(f"speech_model ({type(model).__name__}) has no components_ to use as speech dictionary")
        if getattr(model, "known", "speech") != "speech":
            raise ValueError(f"speech_model was fitted with known={model.known!r}; a speech dictionary is needed")
        for name in ("sr", "n_fft", "hop_length", "spectrum_power"):
            theirs = getattr(model, name, None)
            if theirs is not None and theirs != getattr(self, name):
                raise ValueError(
                    f"speech_model has {name}={theirs}, but this OnlineNMF has {name}={getattr(self, name)}; "
                    "the STFT settings must match"
                )
        D = np.asarray(D, dtype=np.float64)
        if D.ndim != 2 or D.shape[1] != self._n_bins():
            raise ValueError(
                f"speech_model.components_ has shape {D.shape}; expected (n_atoms, {self._n_bins()}) for "
                f"n_fft={self.n_fft}"
            )
        if not (np.all(np.isfinite(D)) and np.all(D >= 0)):
            raise ValueError("speech_model.components_ holds negative or non-finite values")
        return D.copy()

    def _check_loaded(self):
        D = np.asarray(self.components_)
        Dn = np.asarray(self.initial_noise_components_)
        if D.ndim != 2 or D.shape[1] != self.n_features_in_ or self.n_features_in_ != self.n_fft // 2 + 1:
            raise ModelFileError(f"components_ has shape {D.shape}, which does not fit n_fft={self.n_fft}")
        if Dn.shape != (self.n_noise_components, self.n_features_in_):
            raise ModelFileError(
                f"initial_noise_components_ has shape {Dn.shape}, expected "
                f"({self.n_noise_components}, {self.n_features_in_})"
            )
        check_dictionary(D, "components_")
        check_dictionary(Dn, "initial_noise_components_")

    def save(self, path, *, overwrite=False):
        """Save the fitted model (npz + JSON; see :func:`pse_nmf.load`).

        The speech dictionary is saved as ``components_``; ``speech_model``
        is saved as None, and the streaming state is not saved (a loaded
        model starts a fresh stream).
        """
        check_is_fitted(self)
        clone = copy.copy(self)
        clone.speech_model = None
        clone._stream = None
        return ModelIOMixin.save(clone, path, overwrite=overwrite)

    # -- streaming ------------------------------------------------------------------------------
    @property
    def latency(self):
        """Algorithmic latency in samples: ``n_fft - 1 + lookahead * hop_length``."""
        return int(self.n_fft) - 1 + int(self.lookahead) * int(self.hop_length)

    @property
    def noise_components_(self):
        """Current noise atoms of the live stream (the initial ones before any input)."""
        check_is_fitted(self)
        st = getattr(self, "_stream", None)
        if st is None:
            return self.initial_noise_components_.copy()
        return st.W[st.n_speech:].copy()

    def _new_state(self):
        check_is_fitted(self)
        self._check_audio_params()
        self._check_lookahead()
        if self.n_features_in_ != self._n_bins():
            raise ValueError(
                f"{type(self).__name__} was fitted on frames of {self.n_features_in_} bins, but n_fft={self.n_fft} "
                f"needs {self._n_bins()}"
            )
        return _StreamState(self)

    def _live(self):
        st = getattr(self, "_stream", None)
        if st is None:
            st = self._stream = self._new_state()
        return st

    def _check_block(self, block):
        """Validate a block before anything in the stream changes."""
        arr = np.asarray(block)
        if arr.size == 0 and arr.ndim <= 1 and arr.dtype.kind in "biuf":
            return np.zeros(0, dtype=np.float64)
        if arr.ndim == 2 and 1 not in arr.shape:
            raise ValueError(
                f"block has shape {arr.shape}: multichannel audio; the stream takes one channel "
                "(average or select the channels first)"
            )
        return check_waveform(arr, name="block", dtype=np.float64)

    def _run(self, st, x, final=False):
        """Push samples ``x`` (float64) through state ``st``; return output samples (float64)."""
        S = st.stft.analyze(x) if not final else st.stft.finish()
        n_new = S.shape[0]
        mask = np.empty((n_new + st.pending.shape[0], S.shape[1]))
        n_out = 0
        if n_new:
            V = np.abs(S)
            if self.spectrum_power != 1:
                V **= self.spectrum_power
            V = np.ascontiguousarray(V)
            n_out = online_frames(
                V, st.W, st.h, st.U, st.buf_X, st.buf_A, st.buf_E, st.scale, st.info, st.n_speech,
                int(self.n_frame_iter), int(self.n_window_iter), float(self.sparsity), float(self.mask_power),
                _WARM_START, _UPDATE_EVERY, int(self.replace_every), _N_REPLACE, _REPLACE_RECENT, int(self.lookahead),
                float(np.finfo(np.float64).eps), mask,
            )
        if final:  # the frames still held back by the lookahead
            n_out += pending_masks(st.W, st.buf_A, st.info, st.n_speech, int(self.lookahead),
                                   float(self.mask_power), mask[n_out:])
        frames = np.concatenate([st.pending, S]) if st.pending.shape[0] else S
        st.pending = frames[n_out:]
        y = st.stft.synthesize(frames[:n_out] * mask[:n_out], final=final)
        st.out = np.concatenate([st.out, y])
        return y

    def process(self, block):
        """Enhance the next block of a stream.

        Parameters
        ----------
        block : array-like of shape (n_samples,)
            The next samples at the model's rate ``sr`` (any length, even 0
            or 1). Integer PCM is scaled to [-1, 1). A bad block (NaN or
            infinite samples, complex or non-numeric values, several
            channels) raises ``ValueError`` and leaves the stream exactly as
            it was.

        Returns
        -------
        ndarray of shape (n_samples,), float32
            Enhanced samples delayed by :attr:`latency`: output sample ``m``
            of the stream is the estimate of input sample ``m - latency``
            (zeros for ``m < latency``).
        """
        check_is_fitted(self)
        x = self._check_block(block)
        st = self._live()
        y = np.empty_like(x)
        dc_block(x, st.dc, float(_DC_SECONDS * self.sr), float(_DC_MIN_SECONDS * self.sr), _DC_RATIO, y)
        self._run(st, y)
        n = x.size
        out, st.out = st.out[:n], st.out[n:]
        return out.astype(np.float32)

    def flush(self):
        """End the stream: return the last :attr:`latency` output samples, then reset.

        Returns
        -------
        ndarray of shape (latency,), float32
        """
        check_is_fitted(self)
        st = self._live()
        self._run(st, np.zeros(0), final=True)
        out = st.out.astype(np.float32)
        self._stream = None
        return out

    def reset(self):
        """Forget the stream: the next block starts from the fitted initial state.

        Returns
        -------
        self
        """
        check_is_fitted(self)
        self._stream = None
        return self

    # -- whole signals and files ----------------------------------------------------------------
    def _enhance(self, y):
        """Whole signal (float64, model rate) through a fresh stream, aligned: same length."""
        st = self._new_state()
        self._run(st, y)
        self._run(st, np.zeros(0), final=True)
        return st.out[self.latency: self.latency + y.size]

    def denoise(self, x, *, sr=None, downmix=False):
        """Enhance a whole waveform (equal to streaming it and dropping the latency).

        Runs on a fresh stream state: a live stream (:meth:`process`) is left
        untouched. A DC offset above 10 % of the RMS is removed first (see
        the class docstring).

        Parameters
        ----------
        x : array-like of shape (n_samples,)
        sr : int or None
            Rate of ``x``; None means the model's ``sr``. Other rates are
            resampled to the model's and the output back to ``sr``.
        downmix : bool, default=False
            Average the channels of multichannel input (refused otherwise).

        Returns
        -------
        ndarray of shape (n_samples,), float32
        """
        check_is_fitted(self)
        y = check_waveform(x, name="x", downmix=downmix, dtype=np.float64)
        rate = self.sr if sr is None else int(sr)
        dc = _dc_offset(y.size, float(np.sum(y)), float(np.dot(y, y)))
        y_model = resample(y - dc if dc else y, rate, self.sr)
        out = self._enhance(np.asarray(y_model, dtype=np.float64))
        out = resample(out, self.sr, rate)
        out = np.pad(out[: y.size], (0, max(0, y.size - out.size)))
        return out.astype(np.float32)

    def separate(self, x, *, sr=None, downmix=False):
        """Speech and noise estimates of a whole waveform.

        Returns
        -------
        speech, noise : ndarray of shape (n_samples,), float32
            ``noise = x - speech`` (the masks sum to one and the inverse STFT
            is linear, so this equals resynthesising the noise mask).
        """
        speech = self.denoise(x, sr=sr, downmix=downmix)
        y = check_waveform(x, name="x", downmix=downmix, dtype=np.float64)
        return speech, (y - speech).astype(np.float32)

    def denoise_file(self, in_path, out_path, *, block_size=65536, overwrite=False, downmix=False, subtype=None):
        """Enhance an audio file of any length, block by block, in constant memory.

        The input is read twice in blocks of ``block_size`` frames with
        soundfile (first for its mean: a DC offset is removed as in
        :meth:`denoise`) and streamed through a fresh state (the live stream
        is untouched);
        the output goes to a temporary file beside ``out_path`` that replaces
        it atomically at the end, so a failure never leaves a partial file.
        The output has the input's rate and length. A file at another rate
        than ``sr`` is resampled on the fly in both directions (soxr's
        streaming resampler), also in constant memory.

        Parameters
        ----------
        in_path, out_path : str or path-like
            ``out_path`` must differ from ``in_path``; its extension picks the
            format.
        block_size : int, default=65536
            Frames read at a time (does not change the result).
        overwrite : bool, default=False
            Replace an existing ``out_path``.
        downmix : bool, default=False
            Average the channels of a multichannel file (refused otherwise).
        subtype : str or None
            soundfile subtype of the output (e.g. ``"PCM_16"``, ``"FLOAT"``);
            default: the input's subtype if the output format takes it, else
            the format's default. Integer subtypes clip at +-1 (with a warning).

        Returns
        -------
        Path
            ``out_path``.
        """
        import soundfile as sf

        check_is_fitted(self)
        block_size = int(block_size)
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        in_path, out_path = Path(in_path), Path(out_path)
        if not in_path.is_file():
            raise FileNotFoundError(f"no audio file at {str(in_path)!r}")
        if out_path.exists() and os.path.samefile(in_path, out_path) or in_path.resolve() == out_path.resolve():
            raise ValueError(f"out_path is the input file {str(in_path)!r}; pse_nmf never overwrites its input")
        _check_readable(in_path)
        try:
            info = sf.info(str(in_path))
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise ValueError(f"cannot read {str(in_path)!r} as audio: {exc}") from exc
        if info.channels > 1 and not downmix:
            raise ValueError(
                f"{str(in_path)!r} has {info.channels} channels; pse_nmf enhances one channel. "
                "Pass downmix=True (CLI: --downmix) to average them."
            )
        rate = int(info.samplerate)
        n_total = int(info.frames)
        if subtype is None and sf.check_format(out_path.suffix.lstrip(".").upper() or "WAV", info.subtype):
            subtype = info.subtype
        is_float = subtype is not None and subtype.upper() in ("FLOAT", "DOUBLE")
        st = self._new_state()
        lat = self.latency
        state = {"skip": lat, "written": 0, "clipped": False}
        resample_in = resample_out = None
        if rate != self.sr:
            import soxr

            resample_in = soxr.ResampleStream(rate, self.sr, 1, dtype="float64", quality="HQ")
            resample_out = soxr.ResampleStream(self.sr, rate, 1, dtype="float64", quality="HQ")

        def emit(fh, y, last):
            # y: model-rate output of the stream (delayed by `lat`); drop the latency, resample back, write
            if state["skip"]:
                k = min(state["skip"], y.size)
                y = y[k:]
                state["skip"] -= k
            if resample_out is not None:
                y = resample_out.resample_chunk(y, last=last)
            y = y[: max(0, n_total - state["written"])]
            if last and state["written"] + y.size < n_total:
                y = np.concatenate([y, np.zeros(n_total - state["written"] - y.size)])
            if y.size:
                if not is_float and np.any(np.abs(y) > 1.0):
                    state["clipped"] = True
                    y = np.clip(y, -1.0, 1.0)
                fh.write(y.astype(np.float32))
                state["written"] += y.size

        def blocks():
            # a truncated or damaged file fails part way, as a raw libsndfile error: say which file
            try:
                yield from sf.blocks(str(in_path), blocksize=block_size, dtype="float64", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise ValueError(f"cannot read {str(in_path)!r} as audio (truncated or damaged?): {exc}") from None

        def mono(block):
            x = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
            return check_waveform(x, name=str(in_path), dtype=np.float64) if x.size else x

        def write(tmp):
            # a first pass for the mean (constant memory), as denoise takes it from the whole signal
            total = square = 0.0
            for block in blocks():
                x = mono(block)
                total += float(np.sum(x))
                square += float(np.dot(x, x))
            dc = _dc_offset(n_total, total, square)
            with sf.SoundFile(str(tmp), "w", samplerate=rate, channels=1, subtype=subtype) as fh:
                for block in blocks():
                    x = mono(block)
                    if dc:
                        x = x - dc
                    if resample_in is not None:
                        x = resample_in.resample_chunk(x, last=False)
                    self._run(st, np.ascontiguousarray(x, dtype=np.float64))
                    y, st.out = st.out, st.out[:0]
                    emit(fh, y, last=False)
                if resample_in is not None:
                    self._run(st, np.ascontiguousarray(resample_in.resample_chunk(np.zeros(0), last=True)))
                self._run(st, np.zeros(0), final=True)
                y, st.out = st.out, st.out[:0]
                emit(fh, y, last=True)

        result = _atomic_write(out_path, write, overwrite=overwrite)
        if state["clipped"]:
            warnings.warn(
                f"the enhanced audio exceeds +-1 and was clipped in {str(out_path)!r}; pass subtype='FLOAT' to keep it",
                stacklevel=2,
            )
        return result
