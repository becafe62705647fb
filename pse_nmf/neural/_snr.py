"""SNRPredictor: a compact causal network that predicts the SNR of every STFT frame of a noisy recording."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._persistence import register_estimator
from ._base import _torch_threads
from ._compact import CompactMaskNet
from ._generalist import CompactEnhancer

__all__ = ["SNRPredictor"]


class SNRNet(CompactMaskNet):
    """:class:`CompactMaskNet`'s features, convolution and GRUs, with one output per frame (SNR in dB)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.out = torch.nn.Linear(self.gru2.hidden_size, 1)

    def _head(self, h):
        return self.out(h)[..., 0]  # (batch, n_frames): no sigmoid, dB are unbounded

    def extra_macs_per_frame(self):
        return int(torch.count_nonzero(self.compress))  # no expansion back to the bins


def frame_snr_db(speech, noise, n_fft, hop_length, low, high):
    """Per-frame SNR in dB of (batch, n_samples) speech and noise tensors, clipped to [low, high].

    The frames are those of the library's centred Hann STFT; a frame's SNR
    is the ratio of its speech to its noise energy over all bins.
    """
    win = torch.hann_window(n_fft, periodic=True, device=speech.device)
    kw = dict(n_fft=n_fft, hop_length=hop_length, window=win, center=True, pad_mode="constant", return_complex=True)
    es = torch.abs(torch.stft(speech, **kw)).square().sum(dim=1)
    en = torch.abs(torch.stft(noise, **kw)).square().sum(dim=1)
    tiny = 1e-10 * (es.mean(dim=1, keepdim=True) + en.mean(dim=1, keepdim=True)) + 1e-20
    return torch.clamp(10 * torch.log10((es + tiny) / (en + tiny)), low, high)


@register_estimator
class SNRPredictor(CompactEnhancer):
    r"""Frame-level SNR predictor for data purification (Sivaraman, S. Kim & M. Kim 2021).

    A :class:`CompactEnhancer`'s front end and recurrent body (level-free
    log band powers, a causal convolution over two frames, two GRU layers)
    with one linear output per frame: the SNR in dB of that STFT frame,
    :math:`10 \log_{10} \sum_k |S_{t,k}|^2 / \sum_k |N_{t,k}|^2`, clipped to
    ``snr_clip``. Causal, like the enhancer. It is trained like the
    generalist (``fit(speech, noise)`` with the same engine: dynamic mixing
    by :class:`~pse_nmf.neural._engine.DynamicMixer`, early stopping on
    held-out speakers, checkpoints and resume), with the mean squared error
    of the predicted SNR in units of 10 dB,
    :math:`\overline{((\hat{\xi}_t - \xi_t)/10)^2}`. The validation score is
    minus the RMS error in dB.

    Choices where the paper leaves one open: the target is the SNR of each
    STFT frame (32 ms, the enhancer's frames, so the weights line up with
    its segments), clipped to [-20, 30] dB (below, a frame is noise; above,
    it is clean: the weights derived from it no longer change), and the
    network is the compact enhancer's with smaller layers (about 25k
    parameters), trained on SNRs from -10 to 20 dB, wider than the
    enhancer's, so that the user's cleaner and noisier recordings are in range.

    Parameters
    ----------
    snr_clip : (float, float), default=(-20.0, 30.0)
        Range of the target (and predicted) frame SNR, dB.
    n_linear, n_erb : int, default=64, 32
        Band layout, as :class:`CompactEnhancer`'s.
    conv_channels, hidden_size, hidden_size2 : int, default=32, 48, 32
        Widths of the convolution and the two GRU layers.
    snr_range : (float, float), default=(-10.0, 20.0)
        SNRs of the training mixtures (whole segment), dB.
    noise_augment : float, default=0.5
    segment_seconds : float, default=3.0
    max_epochs : int, default=30
    batch_size : int, default=32
    learning_rate : float, default=3e-3
    validation_fraction : float, default=0.1
    patience : int, default=5
    warm_start : bool, default=False
    sr : int, default=16000
    n_fft : int, default=512
    hop_length : int, default=128
    device : str, default="cpu"
    n_threads : int or None, default=1
    random_state : int, RandomState instance or None
    verbose : int, default=0
        As :class:`CompactEnhancer`'s.

    Attributes
    ----------
    module_ : SNRNet
    history_ : list of dict
        ``valid_loss`` is minus the validation RMS error in dB.

    References
    ----------
    .. [1] A. Sivaraman, S. Kim and M. Kim, "Personalized speech enhancement
       through self-supervised data augmentation and purification",
       Interspeech 2021.

    Examples
    --------
    >>> from pse_nmf.neural import pretrained
    >>> from pse_nmf.datasets import load_example
    >>> x = load_example().speech["so762_9604"][0]
    >>> snr = pretrained("snr").predict_snr(x)
    >>> snr.ndim
    1
    """

    _parameter_constraints = {
        **{k: v for k, v in CompactEnhancer._parameter_constraints.items() if k != "loss"},
        "snr_clip": [tuple, list],
        "noise_augment": [Interval(numbers.Real, 0, 1, closed="both")],
    }

    def __init__(self, snr_clip=(-20.0, 30.0), n_linear=64, n_erb=32, conv_channels=32, hidden_size=48,
                 hidden_size2=32, snr_range=(-10.0, 20.0), noise_augment=0.5, segment_seconds=3.0, max_epochs=30,
                 batch_size=32, learning_rate=3e-3, validation_fraction=0.1, patience=5, warm_start=False, sr=16000,
                 n_fft=512, hop_length=128, device="cpu", n_threads=1, random_state=None, verbose=0):
        self.snr_clip = snr_clip
        self.n_linear = n_linear
        self.n_erb = n_erb
        self.conv_channels = conv_channels
        self.hidden_size = hidden_size
        self.hidden_size2 = hidden_size2
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

    def _clip(self):
        lo_hi = tuple(self.snr_clip)
        if len(lo_hi) != 2 or not all(isinstance(v, numbers.Real) and np.isfinite(v) for v in lo_hi) \
                or lo_hi[0] >= lo_hi[1]:
            raise ValueError(f"snr_clip must be (low_db, high_db) with low_db < high_db, got {self.snr_clip!r}")
        return float(lo_hi[0]), float(lo_hi[1])

    def _build_module(self, n_bins):
        self._clip()
        n_high = n_bins - self.n_linear
        if n_high < 1 or self.n_erb > n_high:
            raise ValueError(f"n_linear={self.n_linear} and n_erb={self.n_erb} do not fit n_fft={self.n_fft}")
        return SNRNet(n_bins, self.sr, self.hop_length, n_linear=self.n_linear, n_erb=self.n_erb,
                      conv_channels=self.conv_channels, hidden_size=self.hidden_size, hidden_size2=self.hidden_size2)

    def _predict_frames(self, module, x):
        """Waveforms (batch, n_samples) -> predicted frame SNR (batch, n_frames), dB, clipped."""
        win = self._window(x.device)
        X = torch.stft(x, self.n_fft, self.hop_length, window=win, center=True, pad_mode="constant",
                       return_complex=True)
        lo, hi = self._clip()
        return torch.clamp(module(torch.abs(X).transpose(1, 2)), lo, hi)

    def _batch_loss(self, module, batch):
        x, s = (t.to(self._device()) for t in batch)
        lo, hi = self._clip()
        target = frame_snr_db(s, x - s, self.n_fft, self.hop_length, lo, hi)
        pred = self._predict_frames(module, x)
        value = torch.square((pred - target) / 10.0).mean()
        return value * x.shape[0], x.shape[0]

    def _validation_score(self, module, pairs):
        """Minus the RMS error (dB) of the predicted frame SNR over the validation mixtures."""
        lo, hi = self._clip()
        errors = []
        with torch.no_grad():
            for mix, clean in pairs:
                x, s = torch.from_numpy(mix)[None], torch.from_numpy(clean)[None]
                target = frame_snr_db(s, x - s, self.n_fft, self.hop_length, lo, hi)
                errors.append(torch.square(self._predict_frames(module, x) - target).flatten())
        return -float(torch.sqrt(torch.cat(errors).mean()))

    # -- prediction -----------------------------------------------------------------------------
    def predict_snr(self, x, *, sr=None, downmix=False):
        """Predicted SNR (dB) of every STFT frame of a noisy waveform.

        Parameters
        ----------
        x : ndarray of shape (n_samples,) or a path
        sr : int or None
            Rate of ``x``; None means the model's ``sr``.
        downmix : bool, default=False

        Returns
        -------
        ndarray of shape (n_frames,)
            Frame ``t`` is centred on sample ``t * hop_length`` (at the model's
            rate), as the frames of :func:`pse_nmf.audio.stft`.
        """
        check_is_fitted(self, "module_")
        y = self._recording_list(x, sr, downmix, "x", 1)
        if len(y) != 1:
            raise ValueError("predict_snr takes one recording")
        with torch.no_grad(), _torch_threads(self.n_threads):
            t = torch.from_numpy(np.ascontiguousarray(y[0], dtype=np.float32))[None].to(self._device())
            return self._predict_frames(self.module_, t)[0].cpu().numpy()

    def _parts(self, y_model, noise):
        raise TypeError("SNRPredictor predicts frame SNRs (predict_snr); it does not denoise")

    def predict_mask(self, X):
        raise TypeError("SNRPredictor predicts frame SNRs (predict_snr); it has no mask")

    def transform(self, X):
        raise TypeError("SNRPredictor predicts frame SNRs (predict_snr); it does not transform frames")

