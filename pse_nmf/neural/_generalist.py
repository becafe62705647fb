"""CompactEnhancer: the compact causal generalist, trained on waveforms by the training engine."""

from __future__ import annotations

import hashlib
import json
import numbers
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._persistence import register_estimator
from ..datasets._tasks import _as_groups, _is_path
from ._base import BaseNeuralEnhancer, _seed, _torch_threads
from ._compact import CompactMaskNet
from ._engine import (
    LOSSES,
    DynamicMixer,
    compressed_spectral_loss,
    cosine_schedule,
    fit_loop,
    fixed_mixtures,
    si_sdr,
    si_sdr_estoi_loss,
    si_sdr_loss,
    third_octave_matrix,
)

__all__ = ["CompactEnhancer"]

_VALID_SNRS = (-5.0, 0.0, 5.0)  # SNRs of the validation mixtures, cycled: the dev protocol's


@register_estimator
class CompactEnhancer(BaseNeuralEnhancer):
    r"""Compact causal speech enhancer (ultra-light class, < 100k parameters), trained on waveforms.

    The network (RNNoise's idea of few bands and GRUs, with GTCRN's band
    layout): the power spectrum of each STFT frame is compressed to
    ``n_linear`` low bins kept as they are (where voiced harmonics are
    resolved) and ``n_erb`` ERB bands above; their log, relative to a causal
    running level (so the input's gain does not matter), goes through a
    causal convolution over two frames, two GRU layers and a sigmoid layer
    to one gain per band, spread back to the bins and applied to the complex
    mixture STFT. Every step is causal, so it runs frame by frame
    (``module_.step``) with one STFT frame of latency.

    Training (``fit``): speech and noise are mixed on the fly by
    :class:`~pse_nmf.neural._engine.DynamicMixer` (each epoch a new random
    segment of every speech recording, random noise excerpt, SNR uniform in
    ``snr_range``, random level), the enhanced waveform is rebuilt by the
    inverse STFT inside the graph and the loss is taken on it:

    - ``loss="si_sdr"``: negative SI-SDR of the waveform,
      :math:`-10 \log_{10} \|\alpha s\|^2 / \|\alpha s - \hat s\|^2`;
    - ``loss="compressed"``: Braun et al.'s power-law compressed spectral
      loss (magnitude and complex terms, exponent 0.3, weight 0.3);
    - ``loss="si_sdr_estoi"`` (default): SI-SDR plus a differentiable eSTOI
      (Jensen & Taal's 1/3-octave envelope correlations over 384 ms, as
      Kolbaek et al. optimise STOI), :math:`-(\text{SI-SDR}/10 + \text{eSTOI})`,
      so that weak bands, which SI-SDR leaves to chance, count.

    Adam with a cosine learning-rate schedule after a two-epoch warm-up,
    gradient norm clipped at 5, early stopping on the validation SI-SDR (dB)
    of fixed mixtures (held-out speakers when ``speech`` is grouped by
    speaker, or the ``validation`` given), the best epoch's weights kept.
    With ``checkpoint=`` a checkpoint is written after every epoch, and
    ``resume=True`` continues an interrupted training exactly where it
    stopped (every epoch's data depend only on ``random_state`` and the
    epoch number).

    Parameters
    ----------
    n_linear : int, default=64
        Low STFT bins kept at full resolution (64 bins: 0-2 kHz).
    n_erb : int, default=32
        ERB bands above them.
    conv_channels : int, default=64
    hidden_size : int, default=96
        First GRU layer.
    hidden_size2 : int, default=64
        Second GRU layer.
    loss : {"si_sdr_estoi", "si_sdr", "compressed"}, default="si_sdr_estoi"
        ``"si_sdr_estoi"`` (the shipped generalist's): SI-SDR plus a
        differentiable eSTOI, ``-(SI-SDR / 10 + eSTOI-like)``; the three
        are compared in ``docs/generalist.md``.
    snr_range : (float, float), default=(-5.0, 15.0)
    noise_augment : float, default=0.5
        Share of the training noise excerpts made new by
        :class:`~pse_nmf.neural._engine.DynamicMixer`'s augmentation (speed
        and pitch, spectral tilt and bumps, reversal, a second excerpt), so
        that a few clips of a noise type generalise to its other clips (the
        shipped generalist's setting; measured in ``docs/generalist.md``).
    segment_seconds : float, default=3.0
        Length of the training examples.
    max_epochs : int, default=60
    batch_size : int, default=32
    learning_rate : float, default=3e-3
        Peak learning rate of the schedule.
    validation_fraction : float, default=0.1
        Share of the speakers (or recordings, for ungrouped speech) held out
        for early stopping when no ``validation`` is given to ``fit``.
    patience : int, default=10
    warm_start : bool, default=False
        ``fit`` continues from the current weights (fine-tuning) instead of
        new ones. :func:`pse_nmf.neural.pretrained` sets it.
    sr : int, default=16000
    n_fft : int, default=512
    hop_length : int, default=128
    device : str, default="cpu"
    n_threads : int or None, default=1
        Torch intra-op threads while training and predicting.
    random_state : int, RandomState instance or None
        Initial weights, the held-out split and every epoch's mixtures.
    verbose : int, default=0
        One line per epoch on stdout. A progress bar (tqdm) is shown on
        stderr when it is a terminal.

    Attributes
    ----------
    module_ : CompactMaskNet
    optimizer_ : torch.optim.Adam or None
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``valid_loss`` (here the
        validation SI-SDR in dB), ``dur``.
    n_epochs_, best_epoch_ : int
    best_loss_ : float
        Best validation SI-SDR (dB).
    n_features_in_ : int

    References
    ----------
    .. [1] J.-M. Valin, "A hybrid DSP/deep learning approach to real-time
       full-band speech enhancement", MMSP 2018 (RNNoise: bands and GRUs).
    .. [2] X. Rong, T. Sun, X. Zhang, Y. Hu, C. Zhu and J. Lu, "GTCRN: a
       speech enhancement model requiring ultralow computational resources",
       ICASSP 2024 (linear low bins, ERB-pooled high bins).
    .. [3] S. Braun, H. Gamper, C. K. A. Reddy and I. Tashev, "Towards
       efficient models for real-time deep noise suppression", ICASSP 2021
       (compressed spectral loss).
    .. [4] J. Le Roux, S. Wisdom, H. Erdogan and J. R. Hershey, "SDR -
       half-baked or well done?", ICASSP 2019 (SI-SDR).
    .. [5] M. Kolbaek, Z.-H. Tan and J. Jensen, "Monaural speech enhancement
       using deep neural networks by maximizing a short-time objective
       intelligibility measure", ICASSP 2018; J. Jensen and C. H. Taal, "An
       algorithm for predicting the intelligibility of speech masked by
       modulated noise maskers", IEEE/ACM TASLP 24(11), 2016 (eSTOI).

    Examples
    --------
    >>> import warnings
    >>> from pse_nmf.datasets import load_example
    >>> from pse_nmf.neural import CompactEnhancer
    >>> data = load_example()
    >>> model = CompactEnhancer(hidden_size=16, hidden_size2=8, conv_channels=8, max_epochs=1,
    ...                         batch_size=4, random_state=0)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # 1 epoch: a ConvergenceWarning
    ...     model = model.fit(data.speech, data.noise)
    >>> x = data.speech[sorted(data.speech)[0]][0]
    >>> model.denoise(x).shape == x.shape
    True
    """

    _parameter_constraints = {
        **BaseNeuralEnhancer._base_constraints,
        "n_linear": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_erb": [Interval(numbers.Integral, 1, None, closed="left")],
        "conv_channels": [Interval(numbers.Integral, 1, None, closed="left")],
        "hidden_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "hidden_size2": [Interval(numbers.Integral, 1, None, closed="left")],
        "loss": [StrOptions(set(LOSSES))],
        "warm_start": ["boolean"],
        "noise_augment": [Interval(numbers.Real, 0, 1, closed="both")],
    }
    _parameter_constraints.pop("tol")

    def __init__(self, n_linear=64, n_erb=32, conv_channels=64, hidden_size=96, hidden_size2=64, loss="si_sdr_estoi",
                 snr_range=(-5.0, 15.0), noise_augment=0.5, segment_seconds=3.0, max_epochs=60, batch_size=32,
                 learning_rate=3e-3,
                 validation_fraction=0.1, patience=10, warm_start=False, sr=16000, n_fft=512, hop_length=128,
                 device="cpu", n_threads=1, random_state=None, verbose=0):
        self.n_linear = n_linear
        self.n_erb = n_erb
        self.conv_channels = conv_channels
        self.hidden_size = hidden_size
        self.hidden_size2 = hidden_size2
        self.loss = loss
        self.snr_range = snr_range
        self.noise_augment = noise_augment
        self.segment_seconds = segment_seconds
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.warm_start = warm_start
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _build_module(self, n_bins):
        n_high = n_bins - self.n_linear
        if n_high < 1 or self.n_erb > n_high:
            raise ValueError(
                f"n_linear={self.n_linear} and n_erb={self.n_erb} do not fit n_fft={self.n_fft} "
                f"({n_bins} bins): need n_linear < {n_bins} and n_erb <= n_bins - n_linear"
            )
        return CompactMaskNet(n_bins, self.sr, self.hop_length, n_linear=self.n_linear, n_erb=self.n_erb,
                              conv_channels=self.conv_channels, hidden_size=self.hidden_size,
                              hidden_size2=self.hidden_size2)

    # -- data ---------------------------------------------------------------------------------------
    def _grouped(self, source, sr, downmix, name):
        """Recordings as a dict group -> list of waveforms (one group per recording when ungrouped)."""
        grouped = isinstance(source, Mapping) or (_is_path(source) and Path(source).is_dir()
                                                  and any(p.is_dir() for p in Path(source).iterdir()))
        if grouped:
            try:
                groups = _as_groups(source, name=name)
            except ValueError:
                groups = None
            if groups is not None:
                return {g: self._recording_list(items, sr, downmix, name, self.n_fft) for g, items in groups.items()}
        recs = self._recording_list(source, sr, downmix, name, self.n_fft if name == "speech" else 1)
        return {f"{name}[{i}]": [y] for i, y in enumerate(recs)}

    def _window(self, device):
        return torch.hann_window(self.n_fft, periodic=True, device=device)

    def _enhance_batch(self, module, x):
        """Waveforms (batch, n_samples) -> enhanced waveforms and (masked, mixture) STFTs, in the graph."""
        win = self._window(x.device)
        X = torch.stft(x, self.n_fft, self.hop_length, window=win, center=True, pad_mode="constant",
                       return_complex=True)  # (batch, n_bins, n_frames): torch's layout, transposed for the net
        mask = module(torch.abs(X).transpose(1, 2)).transpose(1, 2)
        E = X * mask
        y = torch.istft(E, self.n_fft, self.hop_length, window=win, center=True, length=x.shape[-1])
        return y, E

    def _batch_loss(self, module, batch):
        x, s = (t.to(self._device()) for t in batch)
        y, E = self._enhance_batch(module, x)
        return self._waveform_loss(y, E, s) * x.shape[0], x.shape[0]

    def _waveform_loss(self, y, E, s):
        """The ``loss`` of enhanced waveforms ``y`` (batch, n_samples), their STFTs ``E`` and the clean ``s``."""
        if self.loss == "si_sdr":
            value = si_sdr_loss(y, s)
        else:
            S = torch.stft(s, self.n_fft, self.hop_length, window=self._window(s.device), center=True,
                           pad_mode="constant", return_complex=True)
            if self.loss == "compressed":
                value = compressed_spectral_loss(y, s, E, S)
            else:
                # eSTOI's 384 ms segments, every quarter segment (eSTOI slides by one frame: 4x the cost)
                n = max(2, int(round(0.384 * self.sr / self.hop_length)))
                bands = torch.tensor(third_octave_matrix(self.sr, self.n_fft), dtype=E.real.dtype,
                                     device=E.device)
                value = si_sdr_estoi_loss(y, s, E, S, bands, n, max(1, n // 4))
        return value

    def _validation_score(self, module, pairs):
        """Mean SI-SDR (dB) of the enhanced validation mixtures, each whole (padding at the end is causal-safe)."""
        scores = []
        order = sorted(range(len(pairs)), key=lambda i: pairs[i][0].size)
        device = self._device()
        with torch.no_grad():
            for i in range(0, len(order), 16):
                chunk = [pairs[j] for j in order[i : i + 16]]
                n = max(p[0].size for p in chunk)
                x = torch.zeros(len(chunk), n)
                for k, (mix, _) in enumerate(chunk):
                    x[k, : mix.size] = torch.from_numpy(mix)
                y, _ = self._enhance_batch(module, x.to(device))
                for k, (mix, clean) in enumerate(chunk):
                    est = y[k, : mix.size][None].cpu()
                    scores.append(float(si_sdr(est, torch.from_numpy(clean)[None])[0]))
        return float(np.mean(scores))

    def _fingerprint(self, speech, noise, valid):
        h = hashlib.sha1()
        params = {k: v for k, v in self.get_params().items() if k not in ("verbose", "device", "n_threads")}
        h.update(json.dumps(params, sort_keys=True, default=str).encode())
        for part in (speech, noise, [p[0] for p in valid]):
            h.update(str(len(part)).encode())
            for y in part:
                h.update(np.float64(y.size).tobytes())
                h.update(np.asarray(y[: 4096], dtype=np.float32).tobytes())
        return h.hexdigest()

    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, speech, noise, *, validation=None, validation_snrs=None, sr=None, downmix=False, checkpoint=None,
            resume=False):
        """Train (or, with ``warm_start``, fine-tune) on speech and noise mixed on the fly.

        Parameters
        ----------
        speech : folder, mapping, list of waveforms or paths, or a waveform
            Clean speech. A folder laid out ``<speaker>/<file>`` or a mapping
            speaker -> recordings is split by speaker for validation.
        noise : same forms as ``speech``
        validation : (speech, noise) or None
            Audio for the validation mixtures (each speech recording whole,
            at -5, 0 and 5 dB in turn); None holds out
            ``validation_fraction`` of the speakers of ``speech`` and mixes
            them with ``noise``.
        validation_snrs : sequence of float or None
            SNRs (dB) of the validation mixtures, cycled over the
            recordings; None: -5, 0 and 5 dB (the dev protocol's). A
            specialist of an SNR band validates inside its band.
        sr : int or None
            Rate of waveforms given as arrays; None means ``self.sr``.
        downmix : bool, default=False
        checkpoint : path or None
            Checkpoint written after every epoch (npz, no pickle).
        resume : bool, default=False
            Continue from ``checkpoint`` if it exists; it must come from a
            training with the same settings and data.

        Returns
        -------
        self
        """
        self._validate_params()
        snr_range = self._check_snr_range()
        if resume and checkpoint is None:
            raise ValueError("resume=True needs checkpoint=<path>")
        rng = check_random_state(self.random_state)
        speech_groups = self._grouped(speech, sr, downmix, "speech")
        noise_recs = [y for ys in self._grouped(noise, sr, downmix, "noise").values() for y in ys if np.any(y)]
        if not noise_recs:
            raise ValueError("the noise recordings are all silent (zeros): nothing to mix")
        init_seed, data_seed = _seed(rng), _seed(rng)
        if validation is None:
            names = sorted(speech_groups)
            n_valid = 0
            if self.validation_fraction > 0:
                if len(names) < 2:
                    raise ValueError(
                        f"validation_fraction={self.validation_fraction} needs speech from at least 2 speakers "
                        f"(or recordings), got {len(names)}: give more, pass validation=(speech, noise), or set "
                        "validation_fraction=0"
                    )
                n_valid = min(max(1, int(round(self.validation_fraction * len(names)))), len(names) - 1)
            held = set(rng.permutation(names)[:n_valid].tolist())
            train = [y for g in names if g not in held for y in speech_groups[g]]
            valid_speech = [y for g in names if g in held for y in speech_groups[g]]
            valid_noise = noise_recs
        else:
            if not (isinstance(validation, tuple) and len(validation) == 2):
                raise TypeError("validation must be a (speech, noise) pair")
            train = [y for ys in speech_groups.values() for y in ys]
            valid_speech = [y for ys in self._grouped(validation[0], sr, downmix, "validation speech").values()
                            for y in ys]
            valid_noise = [y for ys in self._grouped(validation[1], sr, downmix, "validation noise").values()
                           for y in ys]
        segment = max(int(round(self.segment_seconds * self.sr)), self.n_fft)
        mixer = DynamicMixer(train, noise_recs, segment, snr_range, data_seed, augment=self.noise_augment)
        snrs = _VALID_SNRS if validation_snrs is None else tuple(float(v) for v in validation_snrs)
        if not snrs or not all(np.isfinite(snrs)):
            raise ValueError(f"validation_snrs must be finite SNRs in dB, got {validation_snrs!r}")
        valid = fixed_mixtures(valid_speech, valid_noise, snrs, data_seed) if valid_speech else []

        n_bins = self._n_bins()
        if not (self.warm_start and hasattr(self, "module_")):
            self.module_ = self._new_module(n_bins, init_seed)
        elif self.n_features_in_ != n_bins:
            raise ValueError(f"warm_start: the fitted network has {self.n_features_in_} bins, n_fft={self.n_fft} "
                             f"needs {n_bins}")
        self.n_features_in_ = n_bins
        self._fit_mixer(mixer, valid, self._fingerprint(train, noise_recs, valid), checkpoint, resume)
        return self

    def _fit_mixer(self, mixer, valid, fingerprint, checkpoint, resume):
        """Train ``module_`` on ``mixer``'s batches with the engine's loop; early stopping on ``valid``.

        ``valid`` is what ``_validation_score`` scores (nothing: the training loss is monitored). Sets
        ``optimizer_``, ``history_``, ``n_epochs_``, ``best_epoch_``, ``best_loss_``; a ConvergenceWarning
        when ``max_epochs`` ran out first.
        """
        module = self.module_
        self.optimizer_ = torch.optim.Adam(module.parameters(), lr=self.learning_rate)
        validate = (lambda: self._validation_score(module, valid)) if valid else None
        with _torch_threads(self.n_threads):
            result = fit_loop(
                module, self.optimizer_,
                batches=lambda epoch: mixer.batches(epoch, self.batch_size),
                loss=self._batch_loss, validate=validate, mode="max" if valid else "min",
                max_epochs=self.max_epochs, patience=self.patience, grad_clip=5.0,
                lr_factor=lambda e: cosine_schedule(e, self.max_epochs),
                checkpoint=checkpoint, resume=resume, fingerprint=fingerprint,
                name=type(self).__name__, verbose=self.verbose, n_batches=mixer.n_batches(self.batch_size),
            )
        self.history_ = [{"epoch": h["epoch"], "train_loss": h["train_loss"],
                          "valid_loss": h["score"] if valid else None, "dur": h["dur"]} for h in result.history]
        self.n_epochs_ = len(self.history_)
        self.best_epoch_ = int(result.best_epoch)
        self.best_loss_ = float(result.best_score)
        if not result.stopped:
            warnings.warn(
                f"Maximum number of epochs {self.max_epochs} reached before early stopping "
                f"(patience={self.patience}). Increase max_epochs to improve convergence.",
                ConvergenceWarning, stacklevel=3,
            )

    # -- inference ------------------------------------------------------------------------------------
    def _parts(self, y_model, noise):
        """Speech (and, if ``noise``, noise) estimates of a model-rate waveform: AudioMixin's hook.

        The torch STFT / mask / inverse STFT of training (``_enhance_batch``), so inference is the
        trained graph itself and the first call does not wait for librosa's import; ``separate`` and
        ``denoise`` (input checks, resampling, silence, long inputs in pieces) are AudioMixin's.
        The noise estimate is the input minus the speech estimate.
        """
        module = self.module_
        module.eval()
        with torch.no_grad(), _torch_threads(self.n_threads):
            t = torch.from_numpy(np.ascontiguousarray(y_model, dtype=np.float32))[None].to(self._device())
            speech = self._enhance_batch(module, t)[0][0]
            rest = (t[0] - speech).cpu().numpy() if noise else None
            return speech.cpu().numpy(), rest

    # -- streaming ------------------------------------------------------------------------------------
    def stream_masks(self, frames):
        """Masks of magnitude frames computed one frame at a time (the streaming path).

        Parameters
        ----------
        frames : iterable of ndarray of shape (n_bins,)

        Yields
        ------
        ndarray of shape (n_bins,)
            The same mask :meth:`predict_mask` gives that frame of the whole
            sequence, up to float round-off.
        """
        check_is_fitted(self)
        module = self.module_
        module.eval()
        with torch.no_grad(), _torch_threads(self.n_threads):
            state = module.initial_state(1)
            for frame in frames:
                v = torch.as_tensor(np.asarray(frame, dtype=np.float32), device=self._device())[None]
                mask, state = module.step(v, state)
                yield mask[0].cpu().numpy()
