"""Test-time adaptation of a small student to a frozen teacher's outputs."""

from __future__ import annotations

import copy
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from ._base import BaseNeuralEnhancer, _seed, _torch_threads

__all__ = ["DistilledStudent"]


class DistilledStudent(BaseEstimator):
    r"""Adapt a fitted neural student to a frozen teacher on noisy recordings (zero-shot).

    ``fit(noisy)`` enhances each noisy recording with the teacher (any fitted
    pse_nmf denoiser: a large neural model, or an NMF model such as
    :class:`~pse_nmf.SemiSupervisedNMF` fitted to the user's voice) and
    fine-tunes a deep copy of the student so that its mask reproduces the
    teacher's output. No clean speech of the test conditions is needed: the
    teacher's estimates are the targets (knowledge distillation at test time).
    With :math:`Y` the noisy STFT and :math:`\hat{S}` the STFT of the
    teacher's output, the target mask and the objective are

    .. math::

        M^{T}_{t,k} = \min\left(1, \frac{|\hat{S}_{t,k}|}{|Y_{t,k}|}\right),
        \qquad
        \min_\theta \frac{1}{TK} \sum_{t,k} \left(f_\theta(|Y|)_{t,k} - M^{T}_{t,k}\right)^2,

    starting from the student's weights, with the student's own training
    loop (Adam, early stopping on held-out segments of the noisy audio).
    Neither ``student`` nor ``teacher`` is modified; the adapted copy is
    ``student_``.

    Parameters
    ----------
    student : fitted GRUEnhancer or DAEEnhancer
        The model to adapt (copied, never modified).
    teacher : fitted estimator with ``denoise(x, sr=...)``
        Frozen; only its ``denoise`` is called. To use this estimator inside
        a search, wrap a fitted teacher in
        :class:`sklearn.frozen.FrozenEstimator` so ``clone`` keeps it fitted.
    max_epochs : int, default=20
    learning_rate : float, default=1e-4
        Smaller than for training from scratch: adaptation should move the
        student, not reset it.
    batch_size : int, default=8
    segment_seconds : float, default=2.0
        The noisy recordings (and the teacher's outputs, computed on whole
        recordings) are cut into segments of this length.
    validation_fraction : float, default=0.1
    patience : int, default=3
    tol : float, default=1e-5
    random_state : int, RandomState instance or None
        Draws the validation split and the batch order.
    verbose : int, default=0

    Attributes
    ----------
    student_ : GRUEnhancer or DAEEnhancer
        The adapted copy; its training parameters (``max_epochs``,
        ``learning_rate``, ...) are set to this estimator's and its
        ``history_`` is the adaptation's.
    history_ : list of dict
        ``student_.history_``.

    References
    ----------
    .. [1] S. Kim and M. Kim, "Test-time adaptation toward personalized
       speech enhancement: zero-shot learning with knowledge distillation",
       IEEE WASPAA 2021. doi:10.1109/WASPAA52581.2021.9632771

    Examples
    --------
    >>> import warnings
    >>> from pse_nmf import SemiSupervisedNMF, mix_at_snr
    >>> from pse_nmf.datasets import load_example
    >>> from pse_nmf.neural import DistilledStudent, GRUEnhancer
    >>> data = load_example()
    >>> speech = data.speech[sorted(data.speech)[0]]
    >>> kw = dict(n_fft=256, hop_length=128)
    >>> teacher = SemiSupervisedNMF(n_components=8, max_iter=20, test_max_iter=20, tol=0, random_state=0, **kw)
    >>> teacher = teacher.fit(speech[:3])
    >>> noisy = [mix_at_snr(s, data.noise["dishes"][0], 0, random_state=0)[0] for s in speech[3:5]]
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # few epochs: ConvergenceWarning
    ...     student = GRUEnhancer(hidden_size=8, num_layers=1, max_epochs=2, random_state=0, **kw)
    ...     student = student.fit(speech[:3], data.noise)
    ...     adapted = DistilledStudent(student, teacher, max_epochs=2, random_state=0).fit(noisy)
    >>> adapted.denoise(noisy[0]).shape == noisy[0].shape
    True
    """

    _parameter_constraints = {
        "student": [BaseNeuralEnhancer],
        "teacher": [HasMethods(["denoise"])],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "segment_seconds": [Interval(numbers.Real, 0, None, closed="neither")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "patience": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, student, teacher, *, max_epochs=20, learning_rate=1e-4, batch_size=8, segment_seconds=2.0,
                 validation_fraction=0.1, patience=3, tol=1e-5, random_state=None, verbose=0):
        self.student = student
        self.teacher = teacher
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.segment_seconds = segment_seconds
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, noisy, y=None, *, sr=None, downmix=False):
        """Adapt a copy of the student to the teacher's outputs on ``noisy``.

        Parameters
        ----------
        noisy : folder, mapping, list of waveforms or paths, or a waveform
            Noisy recordings of the user (no clean speech needed).
        y : ignored
        sr : int or None
            Rate of waveforms given as arrays; None means the student's ``sr``.
        downmix : bool, default=False

        Returns
        -------
        self
        """
        self._validate_params()
        check_is_fitted(self.student, "module_")
        check_is_fitted(self.teacher)
        student = copy.deepcopy(self.student)
        student.set_params(max_epochs=self.max_epochs, learning_rate=self.learning_rate,
                           batch_size=self.batch_size, segment_seconds=self.segment_seconds,
                           validation_fraction=self.validation_fraction, patience=self.patience, tol=self.tol,
                           verbose=self.verbose)
        recordings = student._recording_list(noisy, sr, downmix, "noisy", student.n_fft)
        # the teacher sees whole recordings (NMF teachers learn the noise from all of it); the
        # frames of each recording and of its target are then cut into segments at the same places
        frames_per_seg = max(1, int(round(self.segment_seconds * student.sr)) // student.hop_length)
        examples = []
        for y_ in recordings:
            mask = self._teacher_mask(student, y_)
            V = student._magnitude(y_)
            for start in range(0, V.shape[0], frames_per_seg):
                v, m = V[start : start + frames_per_seg], mask[start : start + frames_per_seg]
                if v.shape[0] and np.any(v):
                    examples.append((v, m))
        if not examples:
            raise ValueError("the noisy recordings are silent (all zeros): nothing to adapt to")
        rng = check_random_state(self.random_state)
        n_valid = 0
        if self.validation_fraction > 0:
            if len(examples) < 2:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} needs at least 2 segments of "
                    f"segment_seconds={self.segment_seconds}, got {len(examples)}: give more audio, shorter "
                    "segments, or validation_fraction=0"
                )
            n_valid = min(max(1, int(round(self.validation_fraction * len(examples)))), len(examples) - 1)
        order = rng.permutation(len(examples))
        valid = [examples[i] for i in order[:n_valid]]
        train = [examples[i] for i in order[n_valid:]]
        student.optimizer_ = torch.optim.Adam(student.module_.parameters(), lr=self.learning_rate)
        with _torch_threads(student.n_threads):
            student._train(lambda _rng: train, valid, np.random.RandomState(_seed(rng)), student._device())
        self.student_ = student
        self.history_ = student.history_
        return self

    def _teacher_mask(self, student, y):
        """Target mask min(1, |STFT(teacher(y))| / |STFT(y)|), (n_frames, n_bins); 0 where |Y| is 0."""
        enhanced = self.teacher.denoise(y, sr=student.sr)
        Y = student._magnitude(y)
        S = student._magnitude(np.asarray(enhanced, dtype=np.float32))
        tiny = np.finfo(np.float32).tiny
        return np.where(Y > tiny, np.minimum(S / np.maximum(Y, tiny), 1.0), 0.0).astype(np.float32)

    # -- the adapted student's interface --------------------------------------------------------
    def denoise(self, x, *, sr=None, downmix=False):
        """Enhance a noisy waveform with the adapted student (see ``GRUEnhancer.denoise``)."""
        check_is_fitted(self)
        return self.student_.denoise(x, sr=sr, downmix=downmix)

    def separate(self, x, *, sr=None, downmix=False):
        """Speech and noise estimates from the adapted student."""
        check_is_fitted(self)
        return self.student_.separate(x, sr=sr, downmix=downmix)

    def transform(self, X):
        """Frames times the adapted student's mask, (n_frames, n_bins)."""
        check_is_fitted(self)
        return self.student_.transform(X)

    def predict_mask(self, X):
        """The adapted student's mask for magnitude frames (n_frames, n_bins)."""
        check_is_fitted(self)
        return self.student_.predict_mask(X)

    def save(self, path, *, overwrite=False):
        """Save the adapted student (it loads back as the student's class, e.g. GRUEnhancer).

        The teacher is not saved: it is not needed to denoise.
        """
        check_is_fitted(self)
        return self.student_.save(path, overwrite=overwrite)
