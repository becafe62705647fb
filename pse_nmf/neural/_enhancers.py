"""Generalist neural mask estimators: GRUEnhancer, DAEEnhancer."""

from __future__ import annotations

import numbers

from sklearn.utils._param_validation import Interval

from .._persistence import register_estimator
from ._base import BaseNeuralEnhancer
from ._models import DAEMaskNet, GRUMaskNet, TCNMaskNet

__all__ = ["GRUEnhancer", "DAEEnhancer", "TCNEnhancer"]

_TRAINING_PARAMS_DOC = """    snr_range : (float, float), default=(-5.0, 10.0)
        SNRs in dB of the training mixtures, drawn uniformly.
    segment_seconds : float, default=2.0
        The speech is cut into segments of this length (the last, shorter
        piece of each recording is kept); one segment is one example.
    max_epochs : int, default=50
    batch_size : int, default=16
        Segments per Adam step.
    learning_rate : float, default=1e-3
    validation_fraction : float, default=0.1
        Fraction of the speech segments held out for early stopping, mixed
        once. 0 monitors the training loss instead.
    patience : int, default=5
        Epochs without an improvement larger than ``tol`` before stopping.
    tol : float, default=1e-4
        Smallest improvement of the monitored loss (mean squared mask error)
        that counts.
    sr : int, default=16000
    n_fft : int, default=1024
    hop_length : int, default=256
    device : str, default="cpu"
        Torch device of the network.
    n_threads : int or None, default=1
        Torch intra-op threads while training and predicting (the previous
        setting is restored after). Small networks gain little from more,
        and on a loaded 2-core machine two spinning threads made a GRU step
        20-100 times slower than one. None leaves torch's setting.
    random_state : int, RandomState instance or None
        Draws the initial weights (through a seeded fork of torch's RNG, so
        torch's global state is left as it was), the training mixtures and
        the order of the batches.
    verbose : int, default=0
        Print one line per epoch. (Independently, a progress bar with the
        loss and the remaining time is shown on stderr when it is a
        terminal.)"""

_ATTRIBUTES_DOC = """    module_ : torch.nn.Module
        The trained network (on ``device``), in eval mode, with the weights
        of the best epoch.
    optimizer_ : torch.optim.Adam or None
        None after loading from a file.
    history_ : list of dict
        One dict per epoch: ``epoch``, ``train_loss``, ``valid_loss`` (None
        without validation) and ``dur`` (seconds).
    n_epochs_ : int
    best_epoch_ : int
    best_loss_ : float
        The monitored loss at ``best_epoch_``.
    n_features_in_ : int
        Frequency bins, ``n_fft // 2 + 1``."""


@register_estimator
class GRUEnhancer(BaseNeuralEnhancer):
    __doc__ = r"""Speech enhancement with a GRU mask estimator (a generalist).

    A unidirectional GRU reads level-normalised log-magnitude STFT frames
    (each sequence divided by its mean magnitude) and a linear layer with a
    sigmoid gives a mask in [0, 1] per frame and bin, applied to the complex
    mixture STFT. ``fit(speech, noise)`` trains it on mixtures made on the
    fly at random SNRs, to the ideal ratio mask:

    .. math::

        \min_\theta \frac{1}{TK} \sum_{t,k}
        \left(\sigma(W h_t + b)_k - \frac{|S_{t,k}|}{|S_{t,k}| + |N_{t,k}|}\right)^2,
        \qquad h_t = \mathrm{GRU}_\theta(\log(|Y_t| / \bar{Y} + 10^{-3}), h_{t-1}).

    Apart from the per-sequence mean, the model is causal: one frame of
    algorithmic latency beyond the STFT window.

    Parameters
    ----------
    hidden_size : int, default=64
    num_layers : int, default=2
""" + _TRAINING_PARAMS_DOC + """

    Attributes
    ----------
""" + _ATTRIBUTES_DOC + """

    See Also
    --------
    pse_nmf.neural.complexity : parameters and multiply-accumulates per second.

    References
    ----------
    .. [1] Y. Xia, S. Braun, C. K. A. Reddy, H. Dubey, R. Cutler and
       I. Tashev, "Weighted speech distortion losses for neural-network-based
       real-time speech enhancement", ICASSP 2020 (GRU mask estimators).
    .. [2] Y. Wang, A. Narayanan and D. Wang, "On training targets for
       supervised speech separation", IEEE/ACM TASLP 22(12), 2014
       (ideal ratio mask target). doi:10.1109/TASLP.2014.2352935

    Examples
    --------
    >>> import warnings
    >>> from pse_nmf.datasets import load_example
    >>> from pse_nmf.neural import GRUEnhancer
    >>> data = load_example()
    >>> speech = data.speech[sorted(data.speech)[0]]
    >>> model = GRUEnhancer(hidden_size=8, num_layers=1, max_epochs=2, n_fft=256, hop_length=128,
    ...                     random_state=0)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # 2 epochs: a ConvergenceWarning
    ...     model = model.fit(speech[:2], data.noise)
    >>> model.denoise(speech[2]).shape == speech[2].shape
    True
    """

    _parameter_constraints = {
        "hidden_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_layers": [Interval(numbers.Integral, 1, None, closed="left")],
        **BaseNeuralEnhancer._base_constraints,
    }

    def __init__(self, hidden_size=64, num_layers=2, *, snr_range=(-5.0, 10.0), segment_seconds=2.0,
                 max_epochs=50, batch_size=16, learning_rate=1e-3, validation_fraction=0.1, patience=5,
                 tol=1e-4, sr=16000, n_fft=1024, hop_length=256, device="cpu", n_threads=1, random_state=None,
                 verbose=0):
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.snr_range = snr_range
        self.segment_seconds = segment_seconds
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _build_module(self, n_bins):
        return GRUMaskNet(n_bins, self.hidden_size, self.num_layers)


@register_estimator
class DAEEnhancer(BaseNeuralEnhancer):
    __doc__ = r"""Speech enhancement with a feed-forward denoising autoencoder on frames.

    Each frame's mask is predicted from a window of ``2 * context + 1``
    level-normalised log-magnitude frames by fully connected layers
    ``in -> hidden_size -> bottleneck_size -> hidden_size -> n_bins`` (ReLU,
    sigmoid output). Trained like :class:`GRUEnhancer` (same objective, data
    and early stopping); it looks ``context`` frames ahead.

    Parameters
    ----------
    hidden_size : int, default=256
    bottleneck_size : int, default=64
    context : int, default=2
        Frames on each side of the predicted frame.
""" + _TRAINING_PARAMS_DOC + """

    Attributes
    ----------
""" + _ATTRIBUTES_DOC + """

    References
    ----------
    .. [1] X. Lu, Y. Tsao, S. Matsuda and C. Hori, "Speech enhancement based
       on deep denoising autoencoder", Interspeech 2013.
    .. [2] Y. Wang, A. Narayanan and D. Wang, "On training targets for
       supervised speech separation", IEEE/ACM TASLP 22(12), 2014.
    """

    _parameter_constraints = {
        "hidden_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "bottleneck_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "context": [Interval(numbers.Integral, 0, None, closed="left")],
        **BaseNeuralEnhancer._base_constraints,
    }

    def __init__(self, hidden_size=256, bottleneck_size=64, context=2, *, snr_range=(-5.0, 10.0),
                 segment_seconds=2.0, max_epochs=50, batch_size=16, learning_rate=1e-3, validation_fraction=0.1,
                 patience=5, tol=1e-4, sr=16000, n_fft=1024, hop_length=256, device="cpu", random_state=None,
                 n_threads=1, verbose=0):
        self.hidden_size = hidden_size
        self.bottleneck_size = bottleneck_size
        self.context = context
        self.snr_range = snr_range
        self.segment_seconds = segment_seconds
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _build_module(self, n_bins):
        return DAEMaskNet(n_bins, self.hidden_size, self.bottleneck_size, self.context)


@register_estimator
class TCNEnhancer(BaseNeuralEnhancer):
    __doc__ = r"""Speech enhancement with a compact, causal Conv-TasNet-style network on STFT frames.

    Conv-TasNet's separator (a temporal convolutional network of residual
    1-D conv blocks with exponentially growing dilations, 1x1 bottlenecks and
    depthwise convolutions) predicts a mask on level-normalised log-magnitude
    frames; the STFT replaces Conv-TasNet's learned encoder and decoder, so
    the model shares the front end, the training (same objective, data and
    early stopping as :class:`GRUEnhancer`) and the file format of the other
    estimators. The convolutions are causal (left-padded) and normalised per
    frame, so apart from the per-sequence mean the model uses no future
    frame; it sees ``1 + num_repeats * (kernel_size - 1) * (2 ** num_blocks - 1)``
    past frames (61 with the defaults, about 1 s at hop 256).

    Parameters
    ----------
    channels : int, default=64
        Bottleneck channels between blocks (Conv-TasNet's B).
    hidden_size : int, default=128
        Channels inside a block (Conv-TasNet's H).
    kernel_size : int, default=3
        Depthwise kernel length, in frames (P).
    num_blocks : int, default=4
        Blocks per stack, dilations 1, 2, ..., 2 ** (num_blocks - 1) (X).
    num_repeats : int, default=2
        Stacks (R).
""" + _TRAINING_PARAMS_DOC + """

    Attributes
    ----------
""" + _ATTRIBUTES_DOC + """

    References
    ----------
    .. [1] Y. Luo and N. Mesgarani, "Conv-TasNet: surpassing ideal
       time-frequency magnitude masking for speech separation", IEEE/ACM
       TASLP 27(8), 2019. doi:10.1109/TASLP.2019.2915167
    """

    _parameter_constraints = {
        "channels": [Interval(numbers.Integral, 1, None, closed="left")],
        "hidden_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "kernel_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_blocks": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_repeats": [Interval(numbers.Integral, 1, None, closed="left")],
        **BaseNeuralEnhancer._base_constraints,
    }

    def __init__(self, channels=64, hidden_size=128, kernel_size=3, num_blocks=4, num_repeats=2, *,
                 snr_range=(-5.0, 10.0), segment_seconds=2.0, max_epochs=50, batch_size=16, learning_rate=1e-3,
                 validation_fraction=0.1, patience=5, tol=1e-4, sr=16000, n_fft=1024, hop_length=256,
                 device="cpu", n_threads=1, random_state=None, verbose=0):
        self.channels = channels
        self.hidden_size = hidden_size
        self.kernel_size = kernel_size
        self.num_blocks = num_blocks
        self.num_repeats = num_repeats
        self.snr_range = snr_range
        self.segment_seconds = segment_seconds
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.sr = sr
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _build_module(self, n_bins):
        return TCNMaskNet(n_bins, self.channels, self.hidden_size, self.kernel_size, self.num_blocks,
                          self.num_repeats)
