"""Few-shot and self-supervised personalization of the pretrained generalist: PseudoSE, ContrastiveMixtures."""

from __future__ import annotations

import copy
import hashlib
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from ._base import _seed, _torch_threads
from ._engine import DynamicMixer, cosine_schedule, fit_loop, fixed_mixtures, si_sdr
from ._generalist import CompactEnhancer

__all__ = ["PseudoSE", "ContrastiveMixtures", "purification_weights"]

_VALID_SNRS = (-5.0, 0.0, 5.0)


def purification_weights(snr_db):
    r"""Frame weights from predicted frame SNRs: the speech share of the frame's power.

    .. math:: w_t = \frac{10^{\xi_t / 10}}{1 + 10^{\xi_t / 10}}

    (a Wiener gain of the whole frame): 0.5 at 0 dB, 0.91 at 10 dB, 0.09 at
    -10 dB, so a premixture frame teaches in proportion to how much of it is
    the user's speech; noise-only frames (pauses) barely count.

    Parameters
    ----------
    snr_db : array-like
        Predicted SNR of each frame, dB.

    Returns
    -------
    ndarray
        Weights in (0, 1), increasing with the SNR.
    """
    snr = np.asarray(snr_db, dtype=np.float64)
    return (1.0 / (1.0 + 10.0 ** (-snr / 10.0))).astype(np.float32)


def _sample_weights(frame_weights, n_samples, hop_length):
    """Frame weights spread to samples: sample i takes the weight of the centred frame nearest to it."""
    idx = np.minimum((np.arange(n_samples) + hop_length // 2) // hop_length, len(frame_weights) - 1)
    return np.asarray(frame_weights, dtype=np.float32)[idx]


def weighted_segmental_si_sdr(estimate, reference, weight, segment):
    """Weighted mean over segments of ``segment`` samples of the SI-SDR (dB), for each batch.

    ``weight`` (batch, n_samples): a segment's weight is the mean of its
    samples'. A tail shorter than a segment is dropped (segments shorter
    than the input length are whole otherwise).
    """
    n = estimate.shape[-1]
    segment = min(int(segment), n)
    k = n // segment
    e = estimate[..., : k * segment].reshape(-1, segment)
    r = reference[..., : k * segment].reshape(-1, segment)
    w = weight[..., : k * segment].reshape(-1, segment).mean(dim=-1)
    return (si_sdr(e, r) * w).sum() / (w.sum() + 1e-8)


class _PremixtureMixer(DynamicMixer):
    """DynamicMixer over the user's noisy recordings ("premixtures"), each with per-sample weights.

    Examples are (remixture, premixture, weights) cut at the same place;
    ``repeats`` copies of every recording per epoch (a user has a minute of
    audio, not hours: an epoch of one pass would be one or two batches).
    """

    def __init__(self, premix, weights, noise, segment, snr_range, seed, augment, repeats):
        keep = [i for i, p in enumerate(premix) if np.any(p)]
        super().__init__([premix[i] for i in keep], noise, segment, snr_range, seed, augment=augment)
        self.weights = [np.asarray(weights[i], np.float32) for i in keep]
        self.repeats = int(repeats)

    def __len__(self):
        return len(self.speech) * self.repeats

    def n_batches(self, batch_size):
        return -(-len(self) // batch_size)

    def _cut(self, j, rng):
        y, w, n = self.speech[j], self.weights[j], self.segment
        if y.size >= n:
            start = rng.randint(y.size - n + 1)
            return y[start : start + n], w[start : start + n]
        s, ws = np.zeros(n, np.float32), np.zeros(n, np.float32)
        start = rng.randint(n - y.size + 1)
        s[start : start + y.size], ws[start : start + y.size] = y, w
        return s, ws

    def _mix(self, s, noise, snr, rng):
        p_s = float(np.mean(np.square(s, dtype=np.float64))) + 1e-20
        p_n = float(np.mean(np.square(noise, dtype=np.float64))) + 1e-20
        x = s + noise * np.float32(np.sqrt(p_s / (p_n * 10.0 ** (snr / 10.0))))
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
        gain = np.float32(10.0 ** (rng.uniform(*self.level_range_db) / 20.0) / max(rms, 1e-12))
        return x * gain, s * gain

    def batches(self, epoch, batch_size):
        """(remixture, premixture, weights) float32 tensors, each (batch, segment)."""
        rng = np.random.RandomState([self.seed, int(epoch)])
        order = rng.permutation(np.tile(np.arange(len(self.speech)), self.repeats))
        for i in range(0, len(order), batch_size):
            xs, ss, ws = [], [], []
            for j in order[i : i + batch_size]:
                s, w = self._cut(j, rng)
                x, s = self._mix(s, self._noise(self.segment, rng), rng.uniform(*self.snr_range), rng)
                xs.append(x), ss.append(s), ws.append(w)
            yield tuple(torch.from_numpy(np.stack(v).astype(np.float32)) for v in (xs, ss, ws))

    def contrastive_batches(self, epoch, batch_size):
        """Triples of remixtures per premixture segment: (x1, x2, x3, p, p_other, weights of p).

        ``x1 = p + n_a`` and ``x2 = p + n_b`` (the same utterance, different
        noise: a positive pair); ``x3 = p' + n_a`` with ``p'`` the segment of
        the next example of the batch (another utterance, the same noise
        excerpt as ``x1``: a negative pair). Levels are drawn per remixture.
        """
        rng = np.random.RandomState([self.seed, int(epoch), 1])
        order = rng.permutation(np.tile(np.arange(len(self.speech)), self.repeats))
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2:
                continue  # a negative needs another segment in the batch
            cuts = [self._cut(j, rng) for j in idx]
            out = [[] for _ in range(6)]
            for k, (p, w) in enumerate(cuts):
                q = cuts[(k + 1) % len(cuts)][0]
                n_a, n_b = self._noise(self.segment, rng), self._noise(self.segment, rng)
                snr_a, snr_b = rng.uniform(*self.snr_range), rng.uniform(*self.snr_range)
                x1, p1 = self._mix(p, n_a, snr_a, rng)
                x2, _ = self._mix(p, n_b, snr_b, rng)
                x3, q3 = self._mix(q, n_a, snr_a, rng)
                for lst, v in zip(out, (x1, x2, x3, p1, q3, w)):
                    lst.append(v)
            yield tuple(torch.from_numpy(np.stack(v).astype(np.float32)) for v in out)


def _correlation2(a, b, eps=1e-8):
    """Squared normalised correlation of the rows of two (batch, n) tensors, in [0, 1]."""
    num = torch.sum(a * b, dim=-1) ** 2
    return num / (torch.sum(a * a, dim=-1) * torch.sum(b * b, dim=-1) + eps)


class _Personalizer(BaseEstimator):
    """Shared parts: the student copy, the user's recordings, validation on held-out noisy audio, delegation."""

    _common_constraints = {
        "student": [HasMethods(["denoise"]), None],
        "snr_range": [tuple, list],
        "noise_augment": [Interval(numbers.Real, 0, 1, closed="both")],
        "segment_seconds": [Interval(numbers.Real, 0, None, closed="neither")],
        "loss_segment_seconds": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "epoch_seconds": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 2, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "patience": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def _student_copy(self):
        if self.student is None:
            from ._pretrained import pretrained

            return pretrained("generalist")
        if not isinstance(self.student, CompactEnhancer) or type(self.student).__name__ == "SNRPredictor":
            raise TypeError(f"student must be a fitted CompactEnhancer (e.g. pretrained()), got "
                            f"{type(self.student).__name__}")
        check_is_fitted(self.student, "module_")
        return copy.deepcopy(self.student)

    @staticmethod
    def _snr_range(value, name="snr_range"):
        lo_hi = tuple(value)
        if len(lo_hi) != 2 or not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in lo_hi) \
                or lo_hi[0] > lo_hi[1]:
            raise ValueError(f"{name} must be (low_db, high_db) with low_db <= high_db, got {value!r}")
        return float(lo_hi[0]), float(lo_hi[1])

    def _noisy(self, student, noisy, sr, downmix):
        if noisy is None or (isinstance(noisy, (list, tuple)) and len(noisy) == 0):
            raise ValueError("noisy: no noisy recordings given; personalization needs the user's noisy audio")
        recs = [r for r in student._recording_list(noisy, sr, downmix, "noisy", student.n_fft) if np.any(r)]
        if not recs:
            raise ValueError("noisy: the noisy recordings are empty or silent; nothing to personalize on")
        return recs

    def _noise(self, student, noise, sr, downmix):
        if noise is None:
            raise ValueError("noise: pass noise recordings to mix into the noisy ones (e.g. the generalist's "
                             "training noise)")
        recs = [r for r in student._recording_list(noise, sr, downmix, "noise", 1) if np.any(r)]
        if not recs:
            raise ValueError("noise: the noise recordings are all silent (zeros)")
        return recs

    def _split(self, recs, rng):
        """Held-out noisy recordings for early stopping (none when there are fewer than 2)."""
        if self.validation_fraction == 0 or len(recs) < 2:
            return [], list(range(len(recs)))
        order = rng.permutation(len(recs))
        n_valid = min(max(1, int(round(self.validation_fraction * len(recs)))), len(recs) - 1)
        return sorted(order[:n_valid].tolist()), sorted(order[n_valid:].tolist())

    def _repeats(self, recs, sr):
        total = sum(r.size for r in recs) / sr
        segment = self.segment_seconds
        return max(1, int(round(self.epoch_seconds / max(total, segment))))

    def _validator(self, student, module, valid):
        """Weighted segmental SI-SDR (dB) of the student on the fixed held-out remixtures."""
        seg = int(round(self.loss_segment_seconds * student.sr))

        def score():
            total, weight = 0.0, 0.0
            with torch.no_grad():
                for x, p, w in valid:
                    y, _ = student._enhance_batch(module, torch.from_numpy(x)[None])
                    wt = torch.from_numpy(w)[None]
                    total += float(weighted_segmental_si_sdr(y, torch.from_numpy(p)[None], wt, seg)) * float(wt.sum())
                    weight += float(wt.sum())
            return total / max(weight, 1e-8)

        return score

    def _valid_set(self, premix, weights, noise, seed):
        pairs = fixed_mixtures(premix, noise, _VALID_SNRS, seed)
        kept = [w for p, w in zip(premix, weights) if np.any(p)]
        return [(x, p, w) for (x, p), w in zip(pairs, kept)]

    @staticmethod
    def _fingerprint(*parts):
        h = hashlib.sha1()
        for p in parts:
            h.update(repr(p).encode())
        return h.hexdigest()

    def _finish(self, student, history):
        self.student_ = student
        self.history_ = history
        return self

    # -- the adapted student's interface --------------------------------------------------------
    def denoise(self, x, *, sr=None, downmix=False):
        """Enhance a noisy waveform with the personalized student (see ``CompactEnhancer.denoise``)."""
        check_is_fitted(self)
        return self.student_.denoise(x, sr=sr, downmix=downmix)

    def separate(self, x, *, sr=None, downmix=False):
        """Speech and noise estimates from the personalized student."""
        check_is_fitted(self)
        return self.student_.separate(x, sr=sr, downmix=downmix)

    def save(self, path, *, overwrite=False):
        """Save the personalized student; it loads back (``pse_nmf.load``) as a CompactEnhancer."""
        check_is_fitted(self)
        return self.student_.save(path, overwrite=overwrite)


class PseudoSE(_Personalizer):
    r"""Personalize a compact enhancer on the user's noisy recordings alone (noisy-target training).

    The user's noisy recordings :math:`p = s + n_0` ("premixtures") are
    mixed again with more noise :math:`n` and the student learns to recover
    the premixture from the remixture (Fujimura et al.'s noisy-target
    training; Sivaraman & Kim's pseudo speech enhancement):

    .. math:: \min_\theta \; -\frac{1}{10}\,
              \frac{\sum_k w_k\, \text{SI-SDR}\big(f_\theta(p + n)_k,\ p_k\big)}{\sum_k w_k}

    over the segments :math:`k` (``loss_segment_seconds``) of each example.
    Without purification every :math:`w_k = 1`. With ``purify=True``
    (Sivaraman, S. Kim & M. Kim 2021) a frame-level SNR predictor
    (:class:`SNRPredictor`, ``pretrained("snr")`` by default) estimates the
    SNR :math:`\xi_t` of every frame of the premixture and
    :math:`w_k` is the mean over the segment's samples of
    :func:`purification_weights` :math:`(\xi_t)`, so the cleaner parts of
    the user's audio teach more and its noise-only parts (pauses), whose
    target is the noise :math:`n_0`, hardly at all.

    The student is a copy of ``student`` (the pretrained generalist by
    default) fine-tuned with the engine's loop
    (:func:`~pse_nmf.neural._engine.fit_loop`): Adam at a small learning
    rate with a cosine decay and no warm-up, examples made anew every epoch
    by a :class:`~pse_nmf.neural._engine.DynamicMixer` over the premixtures
    (each ``epoch_seconds`` of audio), early stopping on the same weighted
    loss of held-out premixtures (``validation_fraction`` of the
    recordings, each remixed once at -5, 0 and 5 dB in turn): no clean speech
    is needed for it. With a single recording there is nothing to hold out
    and the run is the fixed budget of ``max_epochs``.

    Choices where the papers leave one open: the loss is SI-SDR on 0.5 s
    segments (the generalist's own loss is SI-SDR plus an eSTOI term on
    3 s; a segment-wise SI-SDR is what lets the purification weights act
    locally); the weight of a frame is its estimated speech share of the
    power (a Wiener gain of the frame, :func:`purification_weights`) rather
    than a learned or thresholded map, because it needs no tuning and falls
    to zero exactly where the premixture is noise; the remixing SNR is
    drawn from ``snr_range`` relative to the premixture (itself noisy), so
    the remixture is 0-3 dB noisier than the generalist's training inputs.

    Parameters
    ----------
    student : fitted CompactEnhancer or None, default=None
        The model to adapt (copied, never modified); None means
        ``pretrained("generalist")``.
    purify : bool, default=False
        Weight the loss by the predicted SNR of the premixture.
    snr_predictor : fitted SNRPredictor or None, default=None
        None means ``pretrained("snr")`` (only used with ``purify``).
    snr_range : (float, float), default=(-5.0, 10.0)
        SNR of the premixture to the added noise, dB.
    noise_augment : float, default=0.5
        Share of the added noise excerpts made new (see DynamicMixer).
    segment_seconds : float, default=3.0
        Length of the training examples.
    loss_segment_seconds : float, default=0.5
        Segments of the segmental loss.
    max_epochs : int, default=4
        0 returns a copy of the student unchanged.
    epoch_seconds : float, default=240.0
        Audio per epoch: the recordings are repeated (new crops, noise and
        SNR each time) to about this length.
    batch_size : int, default=16
    learning_rate : float, default=1e-4
        A thirtieth of the generalist's peak rate: fine-tuning, not
        retraining (at 3e-4 and 8 epochs the noisy targets pulled the
        generalist far below its start; ``docs/personalization.md``).
    validation_fraction : float, default=0.2
        Share of the noisy recordings held out for early stopping.
    patience : int, default=3
    random_state : int, RandomState instance or None
    verbose : int, default=0

    Attributes
    ----------
    student_ : CompactEnhancer
        The personalized copy.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``score`` (held-out weighted
        segmental SI-SDR to the premixture, dB, or the training loss without
        held-out audio), ``dur``.
    weights_ : list of ndarray
        Per noisy recording, the per-sample weights used (ones without
        ``purify``).

    References
    ----------
    .. [1] T. Fujimura, Y. Koizumi, K. Yatabe and R. Miyazaki, "Noisy-target
       training: a training strategy for DNN-based speech enhancement
       without clean speech", EUSIPCO 2021.
    .. [2] A. Sivaraman, S. Kim and M. Kim, "Personalized speech enhancement
       through self-supervised data augmentation and purification",
       Interspeech 2021.
    .. [3] A. Sivaraman and M. Kim, "Efficient personalized speech
       enhancement through self-supervised learning", IEEE JSTSP 16(6), 2022.

    Examples
    --------
    >>> from pse_nmf.datasets import mix_at_snr
    >>> from pse_nmf.datasets import load_example
    >>> from pse_nmf.neural import PseudoSE
    >>> data = load_example()
    >>> speech = data.speech[sorted(data.speech)[0]]
    >>> noisy = [mix_at_snr(s[:32000], data.noise["dishes"][0], 5, random_state=0)[0] for s in speech[:2]]
    >>> model = PseudoSE(max_epochs=1, epoch_seconds=8, batch_size=2, random_state=0)
    >>> model = model.fit(noisy, noise=data.noise["dishes"])
    >>> model.denoise(noisy[0]).shape == noisy[0].shape
    True
    """

    _parameter_constraints = {
        **_Personalizer._common_constraints,
        "purify": ["boolean"],
        "snr_predictor": [HasMethods(["predict_snr"]), None],
    }

    def __init__(self, student=None, *, purify=False, snr_predictor=None, snr_range=(-5.0, 10.0), noise_augment=0.5,
                 segment_seconds=3.0, loss_segment_seconds=0.5, max_epochs=4, epoch_seconds=240.0, batch_size=16,
                 learning_rate=1e-4, validation_fraction=0.2, patience=3, random_state=None, verbose=0):
        self.student = student
        self.purify = purify
        self.snr_predictor = snr_predictor
        self.snr_range = snr_range
        self.noise_augment = noise_augment
        self.segment_seconds = segment_seconds
        self.loss_segment_seconds = loss_segment_seconds
        self.max_epochs = max_epochs
        self.epoch_seconds = epoch_seconds
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.verbose = verbose

    def _weights(self, student, recs):
        if not self.purify:
            return [np.ones(r.size, np.float32) for r in recs]
        predictor = self.snr_predictor
        if predictor is None:
            from ._pretrained import pretrained

            predictor = pretrained("snr")
        out = []
        for r in recs:
            snr = predictor.predict_snr(r, sr=student.sr)
            out.append(_sample_weights(purification_weights(snr), r.size, predictor.hop_length * student.sr
                                       // predictor.sr))
        return out

    def fit(self, noisy, y=None, *, noise=None, sr=None, downmix=False, progress=None):
        """Fine-tune a copy of the student on the noisy recordings remixed with ``noise``.

        Parameters
        ----------
        noisy : folder, list of waveforms or paths, or a waveform
            The user's noisy recordings (no clean speech).
        y : ignored
        noise : same forms
            Noise to add (e.g. the generalist's training noise).
        sr : int or None
            Rate of waveforms given as arrays; None means the student's.
        downmix : bool, default=False
        progress : bool or None
            Progress bar on stderr (None: when it is a terminal).

        Returns
        -------
        self
        """
        self._validate_params()
        lo_hi = self._snr_range(self.snr_range)
        student = self._student_copy()
        recs = self._noisy(student, noisy, sr, downmix)
        noise_recs = self._noise(student, noise, sr, downmix)
        self.weights_ = self._weights(student, recs)
        if self.max_epochs == 0:
            return self._finish(student, [])
        rng = check_random_state(self.random_state)
        valid_idx, train_idx = self._split(recs, rng)
        data_seed = _seed(rng)
        train = [recs[i] for i in train_idx]
        segment = max(int(round(self.segment_seconds * student.sr)), student.n_fft)
        mixer = _PremixtureMixer(train, [self.weights_[i] for i in train_idx], noise_recs, segment, lo_hi,
                                 data_seed, self.noise_augment, self._repeats(train, student.sr))
        valid = self._valid_set([recs[i] for i in valid_idx], [self.weights_[i] for i in valid_idx], noise_recs,
                                data_seed)
        module = student.module_
        seg = int(round(self.loss_segment_seconds * student.sr))

        def loss(module, batch):
            x, p, w = batch
            y_, _ = student._enhance_batch(module, x)
            return -weighted_segmental_si_sdr(y_, p, w, seg) / 10.0 * x.shape[0], x.shape[0]

        optimizer = torch.optim.Adam(module.parameters(), lr=self.learning_rate)
        with _torch_threads(student.n_threads):
            result = fit_loop(
                module, optimizer, batches=lambda e: mixer.batches(e, self.batch_size), loss=loss,
                validate=self._validator(student, module, valid) if valid else None,
                mode="max" if valid else "min", max_epochs=self.max_epochs, patience=self.patience,
                lr_factor=lambda e: cosine_schedule(e, self.max_epochs, warmup_epochs=0), progress=progress,
                fingerprint=self._fingerprint(self.get_params(deep=False)), name="PseudoSE", verbose=self.verbose,
                n_batches=mixer.n_batches(self.batch_size),
            )
        student.optimizer_ = None
        return self._finish(student, result.history)


class ContrastiveMixtures(_Personalizer):
    r"""Few-shot personalization: contrastive self-supervised pretraining, then fine-tuning on seconds of speech.

    Stage 1, self-supervised, on the user's noisy recordings ("premixtures")
    only (Sivaraman & Kim 2022's contrastive mixtures): for every premixture
    segment :math:`p` of a batch, two noise excerpts :math:`n_a, n_b` make a
    positive pair :math:`x_1 = p + n_a`, :math:`x_2 = p + n_b` (the same
    utterance, different noise) and the next segment :math:`p'` of the
    batch makes a negative pair with :math:`x_1`: :math:`x_3 = p' + n_a`
    (another utterance, the same noise excerpt). With
    :math:`\hat{y}_i = f_\theta(x_i)` the loss is

    .. math::

        \mathcal{L} = -\frac{\text{SSI}(\hat{y}_1, p) + \text{SSI}(\hat{y}_2, p)}{2 \cdot 10}
        - \lambda_+ \frac{\text{SI-SDR}(\hat{y}_1, \hat{y}_2) + \text{SI-SDR}(\hat{y}_2, \hat{y}_1)}{2 \cdot 10}
        + \lambda_- \, \rho^2(\hat{y}_1, \hat{y}_3)

    with SSI the segmental SI-SDR of :class:`PseudoSE` (the anchor: without
    it agreement is won by outputs that agree on anything) and
    :math:`\rho^2` the squared normalised correlation of the two outputs:
    the outputs of a positive pair should agree (the noise removed is what
    differs), those of a negative pair should share nothing (what they would
    share is the noise left in).

    Stage 2, supervised: the student is fine-tuned on the user's few seconds
    of clean speech (``speech``) mixed with ``noise`` on the fly (the
    student's own loss, SI-SDR plus eSTOI, on ``speech_segment_seconds``
    examples), early-stopped on held-out noisy recordings remixed with
    noise (the stage-1 anchor score, which needs no clean speech).
    ``pretrain_epochs=0`` skips stage 1: plain fine-tuning on the same
    seconds, the baseline.

    Choices: :math:`\lambda_+ = 0.5`, :math:`\lambda_- = 1`
    (``positive_weight``, ``negative_weight``). All terms are in the units
    of the engine's losses (10 dB of SI-SDR = 1); the anchor has weight 1
    because it carries the task, the agreement term half of it because a
    perfect enhancer satisfies it already (it only adds consistency across
    noises), and :math:`\rho^2` weight 1 so that a leak of noise correlating
    the outputs by :math:`\rho^2 = 0.1` costs as much as 1 dB of the anchor.
    Both stages start from the pretrained generalist (the paper pretrains
    from scratch; here the generalist is the better start).

    Parameters
    ----------
    student : fitted CompactEnhancer or None, default=None
        None means ``pretrained("generalist")``.
    positive_weight, negative_weight : float, default=0.5, 1.0
    pretrain_epochs : int, default=4
        Stage-1 epochs (of ``epoch_seconds``); 0 skips it.
    max_epochs : int, default=4
        Stage-2 epochs (of ``epoch_seconds`` of clean-speech examples); 0
        skips it.
    speech_segment_seconds : float, default=1.0
        Examples of stage 2; the clean speech must hold at least one.
    snr_range : (float, float), default=(-5.0, 10.0)
        Stage 1: SNR of the premixture to the added noise, dB (stage 2
        mixes the clean speech at the student's own ``snr_range``).
    noise_augment : float, default=0.5
    segment_seconds : float, default=3.0
    loss_segment_seconds : float, default=0.5
    epoch_seconds : float, default=240.0
    batch_size : int, default=16
    learning_rate : float, default=1e-4
    validation_fraction : float, default=0.2
    patience : int, default=3
    random_state : int, RandomState instance or None
    verbose : int, default=0
        As :class:`PseudoSE`'s.

    Attributes
    ----------
    student_ : CompactEnhancer
    history_ : list of dict
        Both stages' epochs, each with ``stage`` 1 or 2.

    References
    ----------
    .. [1] A. Sivaraman and M. Kim, "Efficient personalized speech
       enhancement through self-supervised learning", IEEE JSTSP 16(6), 2022;
       "Self-supervised learning from contrastive mixtures for personalized
       speech enhancement", NeurIPS SAS workshop 2020.

    Examples
    --------
    >>> from pse_nmf.datasets import mix_at_snr
    >>> from pse_nmf.datasets import load_example
    >>> from pse_nmf.neural import ContrastiveMixtures
    >>> data = load_example()
    >>> speech = data.speech[sorted(data.speech)[0]]
    >>> noisy = [mix_at_snr(s[:32000], data.noise["dishes"][0], 5, random_state=0)[0] for s in speech[:2]]
    >>> model = ContrastiveMixtures(pretrain_epochs=1, max_epochs=1, epoch_seconds=8, batch_size=2, random_state=0)
    >>> model = model.fit(noisy, speech=speech[2][:48000], noise=data.noise["dishes"])
    >>> model.denoise(noisy[0]).shape == noisy[0].shape
    True
    """

    _parameter_constraints = {
        **_Personalizer._common_constraints,
        "positive_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "negative_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "pretrain_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "speech_segment_seconds": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(self, student=None, *, positive_weight=0.5, negative_weight=1.0, pretrain_epochs=4, max_epochs=4,
                 snr_range=(-5.0, 10.0), noise_augment=0.5, segment_seconds=3.0, loss_segment_seconds=0.5,
                 speech_segment_seconds=1.0, epoch_seconds=240.0, batch_size=16, learning_rate=1e-4,
                 validation_fraction=0.2, patience=3, random_state=None, verbose=0):
        self.student = student
        self.positive_weight = positive_weight
        self.negative_weight = negative_weight
        self.pretrain_epochs = pretrain_epochs
        self.max_epochs = max_epochs
        self.snr_range = snr_range
        self.noise_augment = noise_augment
        self.segment_seconds = segment_seconds
        self.loss_segment_seconds = loss_segment_seconds
        self.speech_segment_seconds = speech_segment_seconds
        self.epoch_seconds = epoch_seconds
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, noisy, y=None, *, speech=None, noise=None, sr=None, downmix=False, progress=None):
        """Contrastive pretraining on ``noisy``, then fine-tuning on ``speech`` (both with ``noise``).

        Parameters
        ----------
        noisy : folder, list of waveforms or paths, or a waveform
            The user's noisy recordings.
        y : ignored
        speech : same forms, or None
            A few seconds of the user's clean speech (at least
            ``speech_segment_seconds``); None skips stage 2.
        noise : same forms
            Noise to mix (e.g. the generalist's training noise).
        sr : int or None
        downmix : bool, default=False
        progress : bool or None

        Returns
        -------
        self
        """
        self._validate_params()
        lo_hi = self._snr_range(self.snr_range)
        student = self._student_copy()
        recs = self._noisy(student, noisy, sr, downmix)
        noise_recs = self._noise(student, noise, sr, downmix)
        clean = []
        if speech is not None:
            clean = [r for r in student._recording_list(speech, sr, downmix, "speech", 1) if np.any(r)]
            need = int(round(self.speech_segment_seconds * student.sr))
            if sum(r.size for r in clean) < need:
                raise ValueError(
                    f"speech: {sum(r.size for r in clean) / student.sr:.2f} s of clean speech is shorter than one "
                    f"segment (speech_segment_seconds={self.speech_segment_seconds}); give more or a shorter segment"
                )
        rng = check_random_state(self.random_state)
        valid_idx, train_idx = self._split(recs, rng)
        data_seed = _seed(rng)
        train = [recs[i] for i in train_idx]
        ones = [np.ones(r.size, np.float32) for r in recs]
        segment = max(int(round(self.segment_seconds * student.sr)), student.n_fft)
        mixer = _PremixtureMixer(train, [ones[i] for i in train_idx], noise_recs, segment, lo_hi, data_seed,
                                 self.noise_augment, self._repeats(train, student.sr))
        valid = self._valid_set([recs[i] for i in valid_idx], [ones[i] for i in valid_idx], noise_recs, data_seed)
        module = student.module_
        seg = int(round(self.loss_segment_seconds * student.sr))
        validate = self._validator(student, module, valid) if valid else None
        history = []

        def contrastive_loss(module, batch):
            x1, x2, x3, p, _, w = batch
            b = x1.shape[0]
            out, _ = student._enhance_batch(module, torch.cat([x1, x2, x3]))
            y1, y2, y3 = out[:b], out[b : 2 * b], out[2 * b :]
            anchor = (weighted_segmental_si_sdr(y1, p, w, seg) + weighted_segmental_si_sdr(y2, p, w, seg)) / 2
            agree = (si_sdr(y1, y2).mean() + si_sdr(y2, y1).mean()) / 2
            value = -anchor / 10 - self.positive_weight * agree / 10 \
                + self.negative_weight * _correlation2(y1, y3).mean()
            return value * b, b

        with _torch_threads(student.n_threads):
            if self.pretrain_epochs > 0:
                result = fit_loop(
                    module, torch.optim.Adam(module.parameters(), lr=self.learning_rate),
                    batches=lambda e: mixer.contrastive_batches(e, self.batch_size), loss=contrastive_loss,
                    validate=validate, mode="max" if valid else "min", max_epochs=self.pretrain_epochs,
                    patience=self.patience,
                    lr_factor=lambda e: cosine_schedule(e, self.pretrain_epochs, warmup_epochs=0), progress=progress,
                    fingerprint=self._fingerprint(self.get_params(deep=False), 1), name="ContrastiveMixtures stage 1",
                    verbose=self.verbose, n_batches=mixer.n_batches(self.batch_size),
                )
                history += [dict(h, stage=1) for h in result.history]
            if clean and self.max_epochs > 0:
                seg2 = max(int(round(self.speech_segment_seconds * student.sr)), student.n_fft)
                total = sum(r.size for r in clean) / student.sr
                repeats = max(1, int(round(self.epoch_seconds / max(total, self.speech_segment_seconds))))
                speech_mixer = DynamicMixer(clean * repeats, noise_recs, seg2, lo_hi_speech(student),
                                            _seed(rng), augment=self.noise_augment)
                result = fit_loop(
                    module, torch.optim.Adam(module.parameters(), lr=self.learning_rate),
                    batches=lambda e: speech_mixer.batches(e, self.batch_size), loss=student._batch_loss,
                    validate=validate, mode="max" if valid else "min", max_epochs=self.max_epochs,
                    patience=self.patience,
                    lr_factor=lambda e: cosine_schedule(e, self.max_epochs, warmup_epochs=0), progress=progress,
                    fingerprint=self._fingerprint(self.get_params(deep=False), 2), name="ContrastiveMixtures stage 2",
                    verbose=self.verbose, n_batches=speech_mixer.n_batches(self.batch_size),
                )
                history += [dict(h, stage=2) for h in result.history]
        student.optimizer_ = None
        return self._finish(student, history)


def lo_hi_speech(student):
    """SNRs of the clean-speech mixtures of stage 2: the student's own training range."""
    lo, hi = tuple(student.snr_range)
    return float(lo), float(hi)
