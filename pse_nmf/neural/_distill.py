"""Test-time adaptation of a small student to a frozen teacher's outputs."""

from __future__ import annotations

import copy
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..audio._stft import stft
from ..datasets._tasks import _SilentExcerptError, mix_at_snr
from ._base import BaseNeuralEnhancer, _seed, _torch_threads, _validation_split
from ._generalist import CompactEnhancer

_EPS = 1e-8


def _si_sdr_loss(n_fft, hop_length):
    """Batch loss for :func:`._base._batch` tuples (magnitudes, Re Y, Im Y, Re T, Im T): minus SI-SDR in dB.

    The student's masked noisy STFT and the teacher's STFT are both turned
    into waveforms with ``torch.istft`` (the library's centred Hann STFT);
    zero-padded frames are zeros in both, so padding does not change a
    segment's score. Returns (sum over the batch of -SI-SDR, batch size).
    """
    window = torch.hann_window(n_fft)

    def loss_fn(module, tensors):
        if tensors[0].shape[1] < 2:
            # only 1-frame segments (a recording's last piece, alone in its batch): torch.istft with
            # center=True trims one frame to no samples and its window check calls min() on an empty
            # tensor. One zero frame (weight 0) more gives hop_length samples; it is zero in both signals.
            tensors = tuple(torch.nn.functional.pad(t, (0, 0, 0, 1)) for t in tensors)
        V, Yr, Yi, Tr, Ti, W = tensors
        mask = module(V, W)
        est = torch.complex(mask * Yr, mask * Yi).transpose(1, 2)
        ref = torch.complex(Tr, Ti).transpose(1, 2)
        w = window.to(V.device)
        est = torch.istft(est, n_fft, hop_length, window=w, center=True)
        ref = torch.istft(ref, n_fft, hop_length, window=w, center=True)
        alpha = (est * ref).sum(-1, keepdim=True) / ((ref * ref).sum(-1, keepdim=True) + _EPS)
        target = alpha * ref
        ratio = (torch.square(target).sum(-1) + _EPS) / (torch.square(est - target).sum(-1) + _EPS)
        return -10.0 * torch.log10(ratio).sum(), float(V.shape[0])

    return loss_fn

__all__ = ["DistilledStudent"]


class DistilledStudent(BaseEstimator):
    r"""Adapt a fitted neural student to a frozen teacher on noisy recordings (zero-shot).

    ``fit(noisy)`` enhances each noisy recording with the teacher (any fitted
    pse_nmf denoiser: a large neural model, or an NMF model such as
    :class:`~pse_nmf.SemiSupervisedNMF` fitted to the user's voice) and
    fine-tunes a deep copy of the student so that its output reproduces the
    teacher's. No clean speech of the test conditions is needed: the
    teacher's estimates are the targets (knowledge distillation at test
    time, Kim & Kim 2021). With :math:`Y` the noisy STFT, :math:`\hat{S}`
    the STFT of the teacher's output and :math:`M_\theta = f_\theta(|Y|)`
    the student's mask, the two objectives (``loss``) are

    .. math::

        \text{si\_sdr:}\quad
        \min_\theta \; -\frac{1}{B}\sum_{b} \text{SI-SDR}\left(
        \mathcal{S}^{-1}(M_\theta \odot Y_b),\ \mathcal{S}^{-1}(\hat{S}_b)\right),
        \qquad
        \text{SI-SDR}(x, s) = 10 \log_{10}
        \frac{\|\alpha s\|^2}{\|\alpha s - x\|^2},\ \alpha = \frac{\langle x, s\rangle}{\|s\|^2}

    over the segments :math:`b` of a batch (:math:`\mathcal{S}^{-1}`: the
    inverse STFT, ``torch.istft`` with the library's centred Hann window), or

    .. math::

        \text{mask\_mse:}\quad
        \min_\theta \frac{1}{TK} \sum_{t,k} \left(M_{\theta,t,k} - M^{T}_{t,k}\right)^2,
        \qquad M^{T}_{t,k} = \min\left(1, \frac{|\hat{S}_{t,k}|}{|Y_{t,k}|}\right),

    starting from the student's weights, with the student's own training
    loop (Adam, early stopping on held-out segments of the noisy audio).
    Neither ``student`` nor ``teacher`` is modified; the adapted copy is
    ``student_``.

    Noise augmentation (``fit(noisy, noise=...)``): each epoch, each noisy
    recording :math:`y` is, with probability ``augment_probability``, given
    an excerpt :math:`n` of another noise recording at an SNR (of :math:`y`
    to :math:`n`) drawn from ``augment_snr_range``; the student sees
    :math:`|Y + N|` and must still produce the teacher's :math:`\hat{S}`
    computed on :math:`y` alone. The user's noisy recordings hold only a few
    noise excerpts; without it the student fits those and generalises worse
    to other noise (validation loss rising after a few epochs).

    Defaults, chosen by measurement (``docs/experiments/neural.md``): the
    SI-SDR loss (it weights the time-frequency bins by their energy, where
    the mask MSE weights the many quiet bins whose teacher mask is noise
    alike) and noise augmentation with probability 1 at 5-15 dB (without
    it the student fits the few noise excerpts of the user's recordings).

    Starting from the new base (issue 16): ``student=None`` adapts a copy
    of ``pretrained("generalist")``, and any teacher that needs no clean
    speech of the user can be used: the generalist itself (self-distillation
    with noise augmentation: its outputs on the user's recordings are the
    targets for the same recordings with more noise), a
    :class:`~pse_nmf.UniversalSpeechModel` fitted on many speakers, an
    :class:`~pse_nmf.EnsembleEnhancer` or :class:`~pse_nmf.RNNoiseEnhancer`.
    An *unfitted* :class:`CompactEnhancer` student (e.g. smaller layers) is
    built anew and trained on the teacher's outputs alone: the seed's
    "lossless compression" of a larger teacher into a smaller student.
    With a CompactEnhancer student the ``tol`` setting is not used (it has
    none); ``max_epochs``, ``learning_rate`` and the rest are set on it.

    Parameters
    ----------
    student : fitted GRUEnhancer, DAEEnhancer or CompactEnhancer, an unfitted CompactEnhancer, or None
        The model to adapt (copied, never modified); None means
        ``pretrained("generalist")``.
    teacher : fitted estimator with ``denoise(x, sr=...)``
        Frozen; only its ``denoise`` is called. To use this estimator inside
        a search, wrap a fitted teacher in
        :class:`sklearn.frozen.FrozenEstimator` so ``clone`` keeps it fitted.
    loss : {"si_sdr", "mask_mse"}, default="si_sdr"
        Minus the SI-SDR of the masked segment's waveform to the teacher's,
        or the MSE of the mask to the teacher's magnitude ratio (above).
    max_epochs : int, default=100
    learning_rate : float, default=1e-3
    batch_size : int, default=4
    segment_seconds : float, default=2.0
        The noisy recordings (and the teacher's outputs, computed on whole
        recordings) are cut into segments of this length.
    validation_fraction : float, default=0.1
        Segments held out (never augmented) for early stopping.
    patience : int, default=10
    tol : float, default=1e-5
    augment_probability : float in [0, 1], default=1.0
        Chance that a recording gets extra noise in an epoch (only when
        ``fit`` is given ``noise``).
    augment_snr_range : (float, float), default=(5.0, 15.0)
        SNR in dB of the noisy recording to the added noise, drawn uniformly.
    random_state : int, RandomState instance or None
        Draws the validation split, the batch order and the augmentation.
    verbose : int, default=0

    Attributes
    ----------
    student_ : GRUEnhancer or DAEEnhancer
        The adapted copy; its training parameters (``max_epochs``,
        ``learning_rate``, ...) are set to this estimator's and its
        ``history_`` is the adaptation's (losses in dB for ``si_sdr``:
        minus the mean SI-SDR to the teacher).
    history_ : list of dict
        ``student_.history_``.

    References
    ----------
    .. [1] S. Kim and M. Kim, "Test-time adaptation toward personalized
       speech enhancement: zero-shot learning with knowledge distillation",
       IEEE WASPAA 2021. doi:10.1109/WASPAA52581.2021.9632771
    .. [2] J. Le Roux, S. Wisdom, H. Erdogan and J. R. Hershey, "SDR -
       half-baked or well done?", IEEE ICASSP 2019 (SI-SDR).

    Examples
    --------
    >>> import warnings
    >>> from pse_nmf import SemiSupervisedNMF
    >>> from pse_nmf.datasets import mix_at_snr
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
        "student": [BaseNeuralEnhancer, None],
        "teacher": [HasMethods(["denoise"])],
        "loss": [StrOptions({"mask_mse", "si_sdr"})],
        "augment_probability": [Interval(numbers.Real, 0, 1, closed="both")],
        "augment_snr_range": [tuple, list],
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

    def __init__(self, student, teacher, *, loss="si_sdr", max_epochs=100, learning_rate=1e-3, batch_size=4,
                 segment_seconds=2.0, validation_fraction=0.1, patience=10, tol=1e-5, augment_probability=1.0,
                 augment_snr_range=(5.0, 15.0), random_state=None, verbose=0):
        self.student = student
        self.teacher = teacher
        self.loss = loss
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.segment_seconds = segment_seconds
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.augment_probability = augment_probability
        self.augment_snr_range = augment_snr_range
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, noisy, y=None, *, noise=None, sr=None, downmix=False):
        """Adapt a copy of the student to the teacher's outputs on ``noisy``.

        Parameters
        ----------
        noisy : folder, mapping, list of waveforms or paths, or a waveform
            Noisy recordings of the user (no clean speech needed).
        y : ignored
        noise : same forms as ``noisy``, or None
            Extra noise recordings for augmentation (e.g. the generalist's
            training noise): in each epoch each noisy recording is, with
            probability ``augment_probability``, given an excerpt of one of
            them at an SNR drawn from ``augment_snr_range`` (relative to the
            noisy recording); the target stays the teacher's output on the
            recording without it. Validation segments are never augmented.
        sr : int or None
            Rate of waveforms given as arrays; None means the student's ``sr``.
        downmix : bool, default=False

        Returns
        -------
        self
        """
        self._validate_params()
        check_is_fitted(self.teacher)
        lo, hi = self._check_augment_snr_range()
        if self.student is None:
            from ._pretrained import pretrained

            student = pretrained("generalist")
        else:
            if not (isinstance(self.student, CompactEnhancer) and not hasattr(self.student, "module_")):
                check_is_fitted(self.student, "module_")
            student = copy.deepcopy(self.student)
        settings = dict(max_epochs=self.max_epochs, learning_rate=self.learning_rate, batch_size=self.batch_size,
                        segment_seconds=self.segment_seconds, validation_fraction=self.validation_fraction,
                        patience=self.patience, tol=self.tol, verbose=self.verbose)
        own = student.get_params(deep=False)
        student.set_params(**{k: v for k, v in settings.items() if k in own})  # CompactEnhancer has no tol
        if not hasattr(student, "module_"):  # an unfitted CompactEnhancer: a new (e.g. smaller) network
            student.n_features_in_ = student._n_bins()
            student.module_ = student._new_module(student.n_features_in_, _seed(check_random_state(self.random_state)))
        recordings = student._recording_list(noisy, sr, downmix, "noisy", student.n_fft)
        noise_recs = []
        if noise is not None:
            noise_recs = [r for r in student._recording_list(noise, sr, downmix, "noise", 1) if np.any(r)]
            if not noise_recs:
                raise ValueError("the augmentation noise recordings are all silent (zeros)")
        # the teacher sees whole recordings (NMF teachers learn the noise from all of it); the
        # frames of each recording and of its target are then cut into segments at the same places
        frames_per_seg = max(1, int(round(self.segment_seconds * student.sr)) // student.hop_length)
        kw = dict(n_fft=student.n_fft, hop_length=student.hop_length)
        stfts = []  # per recording: (Y, T) complex, (n_frames, n_bins)
        places = []  # (recording, first frame) of every non-silent segment
        for r, y_ in enumerate(recordings):
            Y, T = self._teacher_stfts(student, y_)
            stfts.append((Y, T))
            for start in range(0, Y.shape[0], frames_per_seg):
                if np.any(np.abs(Y[start : start + frames_per_seg])):
                    places.append((r, start))
        if not places:
            raise ValueError("the noisy recordings are silent (all zeros): nothing to adapt to")
        rng = check_random_state(self.random_state)
        valid_places, train_places = _validation_split(places, self.validation_fraction, self.segment_seconds, rng,
                                                       "noisy")

        def examples(where, inputs):
            out = []
            for r, start in where:
                Y, T = inputs[r], stfts[r][1]
                out.append(self._example(Y[start : start + frames_per_seg], T[start : start + frames_per_seg]))
            return out

        clean_inputs = [Y for Y, _ in stfts]
        valid = examples(valid_places, clean_inputs)
        train = examples(train_places, clean_inputs)

        def make_train_pairs(epoch_rng):
            if not noise_recs or self.augment_probability == 0:
                return train
            inputs = []
            for y_, Y in zip(recordings, clean_inputs):
                if epoch_rng.uniform() >= self.augment_probability:
                    inputs.append(Y)
                    continue
                for _ in range(10):
                    try:
                        mixture, _ = mix_at_snr(y_, noise_recs[epoch_rng.randint(len(noise_recs))],
                                                epoch_rng.uniform(lo, hi), random_state=epoch_rng)
                        break
                    except _SilentExcerptError:
                        continue  # a silent stretch of this noise: draw again
                else:
                    mixture = y_
                inputs.append(stft(np.asarray(mixture, dtype=np.float32), **kw))
            return examples(train_places, inputs)

        student.optimizer_ = torch.optim.Adam(student.module_.parameters(), lr=self.learning_rate)
        kwargs = {}
        if self.loss == "si_sdr":
            kwargs["loss_fn"] = _si_sdr_loss(student.n_fft, student.hop_length)
        with _torch_threads(student.n_threads):
            student._train(make_train_pairs, valid, np.random.RandomState(_seed(rng)), student._device(), **kwargs)
        self.student_ = student
        self.history_ = student.history_
        return self

    def _check_augment_snr_range(self):
        lo_hi = tuple(self.augment_snr_range)
        if len(lo_hi) != 2 or not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in lo_hi) \
                or lo_hi[0] > lo_hi[1]:
            raise ValueError(
                f"augment_snr_range must be (low_db, high_db) with low_db <= high_db, got {self.augment_snr_range!r}"
            )
        return float(lo_hi[0]), float(lo_hi[1])

    def _example(self, Y, T):
        """One training example from the noisy input's and the teacher's STFT frames."""
        V = np.abs(Y).astype(np.float32)
        if self.loss == "si_sdr":
            return (V, Y.real.astype(np.float32), Y.imag.astype(np.float32), T.real.astype(np.float32),
                    T.imag.astype(np.float32))
        tiny = np.finfo(np.float32).tiny
        S = np.abs(T).astype(np.float32)
        mask = np.where(V > tiny, np.minimum(S / np.maximum(V, tiny), 1.0), 0.0).astype(np.float32)
        return V, mask

    def _teacher_stfts(self, student, y):
        """Complex STFTs of the noisy recording and of the teacher's output, (n_frames, n_bins) each."""
        enhanced = np.asarray(self.teacher.denoise(y, sr=student.sr), dtype=np.float32)
        kw = dict(n_fft=student.n_fft, hop_length=student.hop_length)
        return stft(np.asarray(y, dtype=np.float32), **kw), stft(enhanced, **kw)

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
