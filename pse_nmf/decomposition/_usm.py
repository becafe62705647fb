"""Universal speech model: one dictionary block per training speaker, block-sparse at test time.

Also home of the shared base of the speaker-aware dictionary estimators
(:class:`USM`, :class:`~pse_nmf.MLD`, :class:`~pse_nmf.ExemplarNMF`): a fixed
speech dictionary, noise atoms learned on the input, a penalty object on the
activations, all through the one update loop :func:`pse_nmf.decomposition._nmf._factorize`.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._persistence import ModelFileError, register_estimator
from ._base import (
    _COMMON_CONSTRAINTS,
    _is_audio,
    _legacy_fixed,
    _legacy_noise_init,
    _SpeechDictionaryEnhancer,
)
from ._nmf import _warn_not_converged
from ._penalties import BlockPenalty, PenaltySum

__all__ = ["USM"]

# Fixed heuristics (issue 18: constants, not parameters; measured in docs/experiments/usm.md under their former
# parameter names block_eps, frame_block_sparsity, n_solves; every setting of the library used these values):
#: epsilon of the log block penalties, on the scale of mean-normalised data
_BLOCK_EPS = 1.0
#: weight of the per-frame log block penalty added to the utterance one (this library's addition; 0 would drop it)
_FRAME_BLOCK_SPARSITY = 1.0
#: solves from different random starts whose masks are averaged
_N_SOLVES = 2
#: L1 weight on the activations when the speaker blocks are fitted (0.5 / 2 scored lower, session 4)
_FIT_SPARSITY = 1.0
#: width in frames of the moving average of the speech mask (1 / 5 frames scored lower, session 3)
_MASK_SMOOTHING = 3


def _is_speaker_lists(X):
    """A list/tuple of per-speaker lists of recordings (not a list of frames)."""
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    first = X[0]
    if not isinstance(first, (list, tuple)) or len(first) == 0:
        return isinstance(first, (list, tuple))  # an empty speaker list: let the loader report it
    return isinstance(first[0], (str, os.PathLike)) or (isinstance(first[0], np.ndarray) and first[0].ndim == 1)


@register_estimator
class USM(_SpeechDictionaryEnhancer):
    r"""Universal speech model: speaker-independent enhancement with block-sparse speaker dictionaries.

    ``fit`` learns one block of ``n_components_per_speaker`` unit-norm atoms
    per training speaker (plain, optionally sparse, beta-NMF of that speaker's
    frames), and stacks them: :math:`D_s = [D_1; \dots; D_G]`. At test time
    the noisy frames are factorized on :math:`[D_s; D_n]`, with :math:`D_s`
    fixed and ``n_noise_components`` noise atoms :math:`D_n` learned on the
    input, and the speech activations carry a block-sparsity penalty so that
    few speakers' blocks explain the voice:

    .. math::

        \min_{A \ge 0,\, D_n \ge 0}\;
        D_\beta\!\left(V \,\middle|\, [A_s\; A_n] \begin{bmatrix} D_s \\ D_n \end{bmatrix}\right)
        + \lambda\, T \sum_{g=1}^{G} \log\!\left(\epsilon + \tfrac{1}{T}\|A_g\|_1\right)
        + \mu \sum A

    (:math:`T` frames, :math:`A_g` the activations of
    block ``g`` over the whole input). The log penalty is minimised with the
    majorize-minimize multiplicative update of Sun & Mysore: at each
    iteration every entry of block ``g`` gets :math:`\lambda / (\epsilon +
    \|A_g\|_1 / T)` added to the denominator of its update. Scaling
    :math:`\lambda` and :math:`\epsilon` by :math:`T` (the paper's form is
    :math:`\lambda' \sum_g \log(\epsilon' + \|H_g\|_1)`) makes one setting
    serve clips of any length (the group lasso and a plain L1 in its place
    scored lower; ``docs/experiments/usm.md``). A second term adds
    the same penalty per frame, :math:`\lambda_f \sum_t \sum_g
    \log(\epsilon + \|A_{tg}\|_1)` (this library's addition:
    few speakers over the input, few blocks in each frame). :math:`\mu` is
    ``sparsity``, a plain L1
    term on the speech activations at test time (the blocks are fitted with
    L1 1, ``_FIT_SPARSITY``; the noise activations get L1 1). The noise atoms start as
    :class:`~pse_nmf.SemiSupervisedNMF`'s test-time atoms do. The input is
    divided by its mean first, so all weights are scale-free.

    The speech estimate is the mixture STFT times
    :math:`M = S^p / (S^p + N^p)`, :math:`S = A_s D_s`, :math:`N = A_n D_n`,
    averaged over two solves from different random starts (``_N_SOLVES``:
    the first from ``random_state``, the other from a seed drawn from it;
    this library's heuristic: the block-sparse solve is rough in its start,
    the block penalty may switch most speech off on one start and not on
    another, and the mean of two masks is steadier)
    (and, with ``noise_init="staged-averaged"``, with the mask of a second
    solve per start)
    and over 3 neighbouring frames (``_MASK_SMOOTHING``), with :math:`p = 2`.

    Fixed settings (issue 18; the measurements are in
    ``docs/experiments/usm.md``): Kullback-Leibler divergence on STFT
    magnitudes, mask exponent 2, L1 1 on the noise activations and when
    fitting the blocks, a 3-frame mask average. They are module constants of
    :mod:`pse_nmf.decomposition._base` and ``_usm``, and read-only class
    attributes (``beta``, ``spectrum_power``, ``mask_power``,
    ``noise_sparsity``, ``fit_sparsity``, ``mask_smoothing``).

    Training data: ``fit(speakers)`` with

    * a mapping speaker id -> recordings (1-D arrays or paths),
    * a list of per-speaker lists of recordings (ids ``"0"``, ``"1"``, ...),
    * a folder of speaker folders (``<speaker>/<utterance>.flac``), or
    * scikit-learn style, ``fit(X, y)``: non-negative frames ``X``
      (n_frames, n_bins) and the speaker label of each frame ``y``.

    :meth:`personalize` adds a block for a new speaker (few-shot) from a few
    seconds of clean speech, leaving the others untouched;
    ``active_speakers`` restricts the test-time dictionary to some blocks.

    Parameters
    ----------
    n_components_per_speaker : int, default=16
        Atoms per speaker block.
    n_noise_components : int, default=8
        Noise atoms learned on each input at test time.
    block_sparsity : float, default=3.0
        :math:`\lambda`, weight of the block penalty (per frame).
        Fixed with it (module constants): :math:`\epsilon = 1` of the log
        penalty, per frame, on the scale of mean-normalised data
        (``_BLOCK_EPS``), and :math:`\lambda_f = 1`, the weight of a second,
        per-frame block penalty added to the utterance one,
        :math:`\lambda_f \sum_t \sum_g \log(\epsilon + \|A_{tg}\|_1)` with
        :math:`A_{tg}` the activations of block ``g`` in frame ``t``
        (``_FRAME_BLOCK_SPARSITY``): the utterance term picks few speakers
        for the whole input, this one few blocks in each frame. It applies
        to every block, an unpenalised personal block too. This library's
        addition (Sun & Mysore penalise the utterance only).
    active_speakers : list of str or None, default=None
        Speaker blocks used at test time (None: all).
    speaker_sparsity : dict of str to float, or None, default=None
        Block penalty weight of some speakers' blocks, instead of
        ``block_sparsity`` (e.g. ``{"me": 0.0}`` leaves a personal block
        added by :meth:`personalize` unpenalised, so the universal blocks
        only fill in what it lacks).
    sparsity : float, default=0.5
        :math:`\mu`: L1 weight on the speech activations at test time.
    max_iter : int, default=200
        Iterations per speaker block when fitting.
    test_max_iter : int, default=35
        Iterations at test time (a budget: stopping early regularises);
        with the staged noise updates below, the last stage's.
    noise_init : {"quiet", "staged", "staged-averaged"}, default="quiet"
        Test-time recipe of the noise atoms (this library's heuristics, not
        part of Sun & Mysore's method). ``"quiet"``: they start from the
        quietest frames and are free throughout. ``"staged"``: first fitted
        for 100 iterations on the quietest quarter of the frames (speech
        pauses hold mostly noise), then 50 iterations with every atom held
        (activations only, so the speech cannot leak into the noise atoms
        before the speech activations settle), then ``test_max_iter`` free.
        ``"staged-averaged"``: the staged solve's mask averaged with that of
        a plain 100-iteration solve from the same start (the staged solve
        wins at high SNR, the plain one at low SNR and on transient noises
        that never reach the quiet frames); costs a second solve. The
        few-shot setting uses it, the zero-shot default does not.
    tol : float, default=1e-4
    min_seconds : float, default=2.0
        Fewest seconds of speech ``fit`` (all speakers together) and
        ``personalize`` (the enrollment) accept from recordings (frames carry
        no duration): below it they raise ``ValueError``, below 10 s they warn
        (``UserWarning``); 0 opts out of the error. Measured on
        ``personalize(..., mode="few-shot")``: below 2 s of enrollment the
        model enhances worse than the noisy input on average (1 s: -1.1 dB
        SI-SDR improvement, 2 s: +0.9 dB; the universal blocks carry it
        further than SemiSupervisedNMF's 3 s). ``benchmarks/enrollment.py
        --estimator USM``; figures in ``docs/experiments/enrollment.md``.
    sr, n_fft, hop_length : int, default=16000, 1024, 256
    random_state : int, RandomState instance or None
    n_threads : int or None
    n_jobs : int or None
        Workers (joblib) fitting the speakers' blocks in ``fit``, one per
        speaker; None is 1 unless in a ``joblib.parallel_backend`` context
        (-1: every core; Dask through ``parallel_backend("dask")``). The
        result does not depend on it.
    verbose : int, default=0

    Attributes
    ----------
    components_ : ndarray of shape (sum(block_sizes_), n_bins)
        The speaker blocks, stacked in the order of ``speakers_``.
    speakers_ : list of str
        Speaker id of each block.
    block_sizes_ : list of int
        Atoms of each block: ``n_components_per_speaker`` for the fitted
        ones, a block added by :meth:`personalize` may have its own size.
    n_iter_ : int
        Most iterations any block took.
    n_features_in_ : int

    See Also
    --------
    MLD : many small local dictionaries, selected per frame.
    SemiSupervisedNMF : a single (personal) speech dictionary.

    Notes
    -----
    The defaults were chosen on development speakers that are none of
    ``benchmarks/quality.py``'s targets; the measurements behind each one
    are in ``docs/experiments/usm.md``.

    References
    ----------
    .. [1] D. L. Sun and G. J. Mysore, "Universal speech models for speaker
       independent single channel source separation", ICASSP 2013.
       doi:10.1109/ICASSP.2013.6637622
    .. [2] C. Févotte and J. Idier, "Algorithms for nonnegative matrix
       factorization with the beta-divergence", Neural Computation, 2011.

    Examples
    --------
    >>> from pse_nmf import USM
    >>> from pse_nmf.datasets import mix_at_snr
    >>> from pse_nmf.datasets import load_example
    >>> data = load_example()
    >>> train = {spk: utts[:2] for spk, utts in data.speech.items()}
    >>> model = USM(n_components_per_speaker=4, max_iter=30, random_state=0).fit(train)
    >>> model.speakers_
    ['so762_9604', 'so762_9618', 'so762_9626', 'so762_9628']
    >>> noisy, _ = mix_at_snr(data.speech["so762_9604"][-1], data.noise["dishes"][0], 0, random_state=0)
    >>> model.denoise(noisy).shape == noisy.shape
    True
    >>> model.block_weights(noisy).shape
    (4,)
    """

    _parameter_constraints = {
        **_COMMON_CONSTRAINTS,
        "n_components_per_speaker": [Interval(numbers.Integral, 1, None, closed="left")],
        "block_sparsity": [Interval(numbers.Real, 0, None, closed="left")],
        "active_speakers": [list, None],
        "speaker_sparsity": [dict, None],
        "n_jobs": [numbers.Integral, None],
    }
    _fitted_scalars = ("speakers_", "block_sizes_", "n_iter_", "n_features_in_")
    # issue 18: the staged-noise knobs became noise_init; the block penalty is always the log one (the group lasso
    # and plain L1 scored lower, docs/experiments/usm.md)
    _removed_params = {"block_penalty": "log", "block_eps": _BLOCK_EPS, "frame_block_sparsity": _FRAME_BLOCK_SPARSITY,
                       "n_solves": _N_SOLVES, **_SpeechDictionaryEnhancer._FIXED_PARAMS,
                       "fit_sparsity": _FIT_SPARSITY, "mask_smoothing": _MASK_SMOOTHING}
    # fixed settings (module constants above; _SpeechDictionaryEnhancer has the family's)
    fit_sparsity = _FIT_SPARSITY
    mask_smoothing = _MASK_SMOOTHING

    @classmethod
    def _legacy_params(cls, params):
        return _legacy_noise_init(_legacy_fixed(params), default=(0, 0, 0))

    def __init__(self, n_components_per_speaker=16, *, n_noise_components=8, block_sparsity=3.0,
                 active_speakers=None, speaker_sparsity=None, sparsity=0.5, max_iter=200,
                 test_max_iter=35, noise_init="quiet",
                 tol=1e-4, min_seconds=2.0, sr=16000, n_fft=1024, hop_length=256, random_state=None,
                 n_threads=None, n_jobs=None,
                 verbose=0):
        self.n_components_per_speaker = n_components_per_speaker
        self.n_noise_components = n_noise_components
        self.block_sparsity = block_sparsity
        self.active_speakers = active_speakers
        self.speaker_sparsity = speaker_sparsity
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    # -- fitting ----------------------------------------------------------------------------------
    def _speaker_frames(self, X, y, sr, downmix, reset):
        """Speaker id -> frames (n_frames, n_bins), in a stable order, and the recordings (None for frames)."""
        if y is not None and _is_audio(X) and not isinstance(X, np.ndarray):
            raise ValueError("y (per-frame speaker labels) is only used with frames X; recordings carry their speaker")
        if isinstance(X, (str, os.PathLike)):
            from ..datasets._tasks import list_recordings

            groups = list_recordings(X)
        elif isinstance(X, Mapping) and _is_audio(X):
            groups = dict(X)
        elif _is_speaker_lists(X):
            groups = {str(i): items for i, items in enumerate(X)}
        elif _is_audio(X):
            raise ValueError(
                "USM.fit needs the recordings of each speaker: a mapping speaker -> recordings, a list of per-speaker "
                "lists, or a folder of speaker folders (a flat list of recordings is one speaker)"
            )
        else:
            if y is None:
                raise ValueError(
                    "USM requires y to be passed, but the target y is None: on frames, y is the speaker label of "
                    "each frame"
                )
            V = self._validate_frames(X, reset=reset)
            y = np.asarray(y)
            if y.ndim != 1:
                raise ValueError(f"y must be a 1-D array of speaker labels, got shape {y.shape}")
            if V.shape[0] != y.shape[0]:
                raise ValueError(
                    f"X has {V.shape[0]} frames but y has {y.shape[0]} labels: give one speaker label per frame"
                )
            labels = [str(v) for v in y.tolist()]
            ids = list(dict.fromkeys(sorted(set(labels))))
            lab = np.asarray(labels)
            return {spk: V[lab == spk] for spk in ids}, None
        if reset:
            self._check_audio_params()
        recordings = {}
        for spk, items in groups.items():
            name = f"speaker {spk!r}"
            if isinstance(items, (list, tuple)) and len(items) == 0:
                raise ValueError(f"{name} has no recordings")
            recordings[str(spk)] = self._recordings(items, sr=sr, downmix=downmix, name=name)
        out = {spk: self._frames_from_recordings(recs) for spk, recs in recordings.items()}
        if reset:
            self.n_features_in_ = self._n_bins()
        return out, [r for recs in recordings.values() for r in recs]

    def fit(self, X, y=None, *, sr=None, downmix=False):
        """Learn one dictionary block per speaker.

        Parameters
        ----------
        X : mapping, list of lists, folder, or array-like of shape (n_frames, n_bins)
            Clean speech of at least two speakers (see the class docstring),
            or non-negative frames.
        y : array-like of shape (n_frames,) or None
            Speaker label of each frame (frames only).
        sr : int or None
            Rate of waveforms given as arrays; None means ``self.sr``.
        downmix : bool, default=False

        Returns
        -------
        self
        """
        self._validate_params()
        frames, recordings = self._speaker_frames(X, y, sr, downmix, reset=True)
        if len(frames) < 2:
            raise ValueError(
                f"a universal speech model needs at least 2 speakers, got {len(frames)} (one class); "
                "for one speaker use SemiSupervisedNMF or MLD"
            )
        if recordings is not None:
            self._check_duration(recordings, "speech recordings")
        rng = check_random_state(self.random_state)
        fitted = self._fit_blocks(list(frames.values()), self.n_components_per_speaker, rng,
                                  [f"speaker {spk!r}" for spk in frames])  # one per speaker, in n_jobs workers
        blocks, n_iters, converged = zip(*fitted)
        if not all(converged) and self.tol > 0:
            _warn_not_converged(self.max_iter)
        self.components_ = np.vstack(blocks)
        self.speakers_ = list(frames)
        self.block_sizes_ = [int(D.shape[0]) for D in blocks]
        self.n_iter_ = int(max(n_iters))
        return self

    #: Atoms of the personal block in the few-shot setting (as many as SemiSupervisedNMF's personal dictionary).
    FEW_SHOT_COMPONENTS = 64

    @staticmethod
    def few_shot_params(speaker_id):
        """Test-time parameters of the few-shot setting, for a model personalized with ``speaker_id``.

        The personal block unpenalised and the universal blocks strongly
        block-sparse (they only fill in what it lacks), the staged noise
        updates with mask averaging (the staged and a plain solve), two
        averaged random starts. The measured best few-shot setting
        (``docs/experiments/usm.md``); ``personalize(..., mode="few-shot")``
        applies it.

        Parameters
        ----------
        speaker_id : str
            Id of the personal block.

        Returns
        -------
        dict
            Keyword arguments for :meth:`set_params`.
        """
        return {"speaker_sparsity": {str(speaker_id): 0.0}, "block_sparsity": 10.0, "sparsity": 1.0,
                "noise_init": "staged-averaged", "test_max_iter": 30}

    def personalize(self, enrollment, speaker_id=None, *, n_components=None, mode="block", sr=None, downmix=False):
        """Add a block for a new speaker, leaving the other blocks as they are.

        Parameters
        ----------
        enrollment : recordings or array-like of shape (n_frames, n_bins)
            A few seconds of the speaker's clean speech (a waveform, a list of
            waveforms or paths, a folder), or frames.
        speaker_id : str or None
            Id of the new block; None gives ``"speaker<n>"``. Must be new.
        n_components : int or None
            Atoms of the new block; None: ``n_components_per_speaker``
            (``FEW_SHOT_COMPONENTS``, 64, with ``mode="few-shot"``).
        mode : {"block", "few-shot"}, default="block"
            ``"block"`` only adds the block. ``"few-shot"`` also switches the
            model to the few-shot setting (:meth:`few_shot_params`:
            ``set_params`` with the personal block unpenalised, the staged
            noise updates and mask averaging), the library's measured best
            for enhancing this speaker.
        sr : int or None
        downmix : bool, default=False

        Returns
        -------
        self
        """
        check_is_fitted(self)
        if mode not in ("block", "few-shot"):
            raise ValueError(f"mode must be 'block' or 'few-shot', got {mode!r}")
        if n_components is None:
            n_components = self.FEW_SHOT_COMPONENTS if mode == "few-shot" else self.n_components_per_speaker
        if not isinstance(n_components, numbers.Integral) or isinstance(n_components, bool) or n_components < 1:
            raise ValueError(f"n_components must be a positive integer or None, got {n_components!r}")
        n_components = int(n_components)
        if speaker_id is None:
            speaker_id = f"speaker{len(self.speakers_)}"
        speaker_id = str(speaker_id)
        if speaker_id in self.speakers_:
            raise ValueError(f"speaker {speaker_id!r} already has a block; pick a new speaker_id")
        name = f"speaker {speaker_id!r}"
        if _is_audio(enrollment):
            if isinstance(enrollment, (list, tuple)) and len(enrollment) == 0:
                raise ValueError(f"{name} has no recordings")
            V = self._frames_from_recordings(self._enrollment(enrollment, sr=sr, downmix=downmix, name=name))
            if V.shape[1] != self.n_features_in_:
                raise ValueError(f"the model has {self.n_features_in_} bins, the enrollment audio {V.shape[1]}")
        else:
            V = self._validate_frames(enrollment, reset=False)
        # a fresh generator per speaker: the block depends only on the seed and the enrollment
        rng = check_random_state(self.random_state)
        D, _, converged = self._fit_block(V, n_components, rng, name)
        if not converged and self.tol > 0:
            _warn_not_converged(self.max_iter)
        self.components_ = np.vstack([np.asarray(self.components_), D.astype(np.asarray(self.components_).dtype)])
        self.speakers_ = [*self.speakers_, speaker_id]
        self.block_sizes_ = [*self.block_sizes_, n_components]
        if mode == "few-shot":
            params = self.few_shot_params(speaker_id)
            params["speaker_sparsity"] = {**(self.speaker_sparsity or {}), **params["speaker_sparsity"]}
            self.set_params(**params)
        return self

    # -- test time --------------------------------------------------------------------------------
    def _active_blocks(self):
        if self.active_speakers is None:
            return np.arange(len(self.speakers_))
        unknown = [s for s in self.active_speakers if s not in self.speakers_]
        if unknown:
            raise ValueError(f"active_speakers {unknown} are not in the model; known: {self.speakers_}")
        if not self.active_speakers:
            raise ValueError("active_speakers is empty: no speech block to use")
        return np.asarray([self.speakers_.index(s) for s in self.active_speakers])

    def _active_dictionary(self):
        """(active atoms, block index of each active atom in 0..n_active-1, active block ids)."""
        blocks = self._active_blocks()
        sizes = np.asarray(self.block_sizes_, dtype=np.intp)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        rows = np.concatenate([np.arange(starts[b], starts[b + 1]) for b in blocks])
        return np.asarray(self.components_)[rows], np.repeat(np.arange(blocks.size), sizes[blocks]), blocks

    def _block_penalty_weights(self, blocks):
        """Block penalty weight of each active block: ``block_sparsity`` unless ``speaker_sparsity`` says otherwise."""
        if not self.speaker_sparsity:
            return self.block_sparsity
        unknown = [s for s in self.speaker_sparsity if s not in self.speakers_]
        if unknown:
            raise ValueError(
                f"speaker_sparsity names speakers {unknown} that are not in the model; known: {self.speakers_}"
            )
        weights = np.array([float(self.speaker_sparsity.get(self.speakers_[b], self.block_sparsity)) for b in blocks])
        if np.any(weights < 0) or not np.all(np.isfinite(weights)):
            raise ValueError("speaker_sparsity values must be finite and non-negative")
        return weights

    def _speech_penalty(self, n_components, groups, l1):
        all_groups = np.full(n_components, -1)
        all_groups[: groups.size] = groups
        weights = self._block_penalty_weights(self._active_blocks())
        utterance = BlockPenalty(all_groups, weights, kind="log", scope="utterance", eps=_BLOCK_EPS,
                                 l1=l1)
        if not _FRAME_BLOCK_SPARSITY:
            return utterance
        # every block, an unpenalised personal block too (sparing it scored lower on the tuning speakers)
        frame = BlockPenalty(all_groups, _FRAME_BLOCK_SPARSITY, kind="log", scope="frame", eps=_BLOCK_EPS)
        return PenaltySum(utterance, frame)

    def _n_solves(self):
        return _N_SOLVES

    def _activations(self, V, D_known=None, groups=None, noise_atoms=None, rng=None, *, staged=True, max_iter=None):
        D_s, groups, _ = self._active_dictionary()
        return super()._activations(V, D_s, groups, noise_atoms, rng, staged=staged, max_iter=max_iter)

    def _block_activations(self, x, sr, downmix):
        """Per-frame L1 mass of each active block, (n_frames, n_active), and the active block indices."""
        V = self._frames_or_waveform(x, sr=sr, downmix=downmix)
        _, groups, blocks = self._active_dictionary()
        per_block = np.zeros((V.shape[0], blocks.size))
        if np.any(V):
            A, _, k = self._activations(V)
            np.add.at(per_block.T, groups, A[:, :k].T.astype(np.float64))
        return per_block, blocks

    def block_usage(self, x, *, sr=None, downmix=False):
        """Share of each speaker block in each frame's speech activations.

        Parameters
        ----------
        x : array-like of shape (n_samples,) or (n_frames, n_bins)
            A noisy waveform (or non-negative frames).
        sr : int or None
        downmix : bool, default=False

        Returns
        -------
        ndarray of shape (n_frames, n_speakers)
            Rows sum to one (zero rows for frames with no speech activation);
            columns follow ``speakers_`` (inactive blocks are zero).
        """
        per_block, blocks = self._block_activations(x, sr, downmix)
        usage = np.zeros((per_block.shape[0], len(self.speakers_)))
        total = per_block.sum(axis=1, keepdims=True)
        usage[:, blocks] = np.divide(per_block, total, out=np.zeros_like(per_block), where=total > 0)
        return usage

    def block_weights(self, x, *, sr=None, downmix=False):
        r"""Share of each speaker block in the speech activations of a whole input.

        Parameters
        ----------
        x : array-like of shape (n_samples,) or (n_frames, n_bins)
        sr : int or None
        downmix : bool, default=False

        Returns
        -------
        ndarray of shape (n_speakers,)
            :math:`\\|A_g\\|_1 / \\sum_h \\|A_h\\|_1` in the order of
            ``speakers_``; sums to one (all zeros for silent input).
        """
        per_block, blocks = self._block_activations(x, sr, downmix)
        weights = np.zeros(len(self.speakers_))
        sums = per_block.sum(axis=0)
        total = sums.sum()
        if total > 0:
            weights[blocks] = sums / total
        return weights

    def _check_loaded(self):
        if not isinstance(self.speakers_, list) or not all(isinstance(s, str) for s in self.speakers_):
            raise ModelFileError("speakers_ must be a list of speaker ids (strings)")
        sizes = self.block_sizes_
        if (not isinstance(sizes, list) or len(sizes) != len(self.speakers_)
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes)):
            raise ModelFileError("block_sizes_ must hold one positive atom count per speaker")
        self._check_components(sum(sizes))
