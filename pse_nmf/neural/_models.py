"""Mask networks (private ``nn.Module``s) and their analytic cost.

Every network maps STFT magnitude frames of shape (batch, n_frames, n_bins)
(the library's orientation, with a batch axis in front) to a mask of the
same shape with values in [0, 1]. ``forward(mag, weight=None)``: ``weight``
(batch, n_frames, 1) marks a batch's real frames (see :func:`log_features`);
the GRU and the TCN are causal and the DAE's context is edge-padded with
zero features, so with it a zero-padded sequence gets exactly the mask it
gets alone on its real frames. The networks compute their own input
features, so the estimators hand them raw magnitudes and nothing else.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GRUMaskNet", "DAEMaskNet", "TCNMaskNet", "log_features", "complexity"]


def log_features(mag, floor=1e-3, weight=None):
    r"""Level-free log-magnitude features.

    .. math:: f_{t,k} = \log\left(\frac{|Y_{t,k}|}{\bar{Y}} + \epsilon\right)

    with :math:`\bar{Y}` the mean magnitude of each sequence (over frames and
    bins) and :math:`\epsilon` = ``floor``. Dividing by the mean makes the
    mask independent of the input's level (as the NMF estimators' mean
    normalisation does); the floor bounds the features of silent bins.
    The mean is over the whole sequence, so this one step is not causal.

    Parameters
    ----------
    mag : Tensor of shape (batch, n_frames, n_bins), non-negative
    floor : float, default=1e-3
    weight : Tensor of shape (batch, n_frames, 1) or None
        1 on real frames, 0 on the zero padding of a batch of sequences of
        different lengths: the mean is then over the real frames only and
        the padded frames' features are 0 (what the networks' own edge
        padding uses), so a padded sequence gets the same features on its
        real frames as alone, unpadded.
    """
    if weight is None:
        scale = mag.mean(dim=(1, 2), keepdim=True)
    else:
        count = torch.clamp(weight.sum(dim=(1, 2), keepdim=True) * mag.shape[-1], min=1.0)
        scale = (mag * weight).sum(dim=(1, 2), keepdim=True) / count
    scale = torch.clamp(scale, min=torch.finfo(mag.dtype).tiny)
    features = torch.log(mag / scale + floor)
    return features if weight is None else features * weight


def context_features(mag, context, weight=None):
    """:func:`log_features` of each frame stacked with its ``context`` neighbours on each side.

    The frame axis is zero-padded, then the ``2 context + 1`` shifted copies
    are concatenated along the features: (batch, frames, (2c+1) n_bins).
    """
    x = log_features(mag, weight=weight)
    if context:
        n_frames = x.shape[1]
        xp = nn.functional.pad(x, (0, 0, context, context))
        x = torch.cat([xp[:, i : i + n_frames] for i in range(2 * context + 1)], dim=2)
    return x


class GRUMaskNet(nn.Module):
    """Unidirectional GRU on log-magnitude frames, sigmoid mask per bin.

    Parameters
    ----------
    n_bins : int
    hidden_size : int
    num_layers : int
    """

    def __init__(self, n_bins, hidden_size, num_layers):
        super().__init__()
        self.n_bins = n_bins
        self.gru = nn.GRU(n_bins, hidden_size, num_layers=num_layers, batch_first=True)
        self.out = nn.Linear(hidden_size, n_bins)

    def forward(self, mag, weight=None):
        h, _ = self.gru(log_features(mag, weight=weight))
        return torch.sigmoid(self.out(h))


class DAEMaskNet(nn.Module):
    """Denoising autoencoder on frames: a context window in, one frame's mask out.

    Each output frame sees its own log-magnitude frame and ``context`` frames
    on each side (zero-padded at the edges), through
    ``in -> hidden -> bottleneck -> hidden -> n_bins`` fully connected layers
    with ReLU, and a sigmoid at the end.

    Parameters
    ----------
    n_bins : int
    hidden_size : int
    bottleneck_size : int
    context : int
    """

    def __init__(self, n_bins, hidden_size, bottleneck_size, context):
        super().__init__()
        self.n_bins = n_bins
        self.context = context
        n_in = n_bins * (2 * context + 1)
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, bottleneck_size), nn.ReLU(),
            nn.Linear(bottleneck_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, n_bins),
        )

    def forward(self, mag, weight=None):
        return torch.sigmoid(self.net(context_features(mag, self.context, weight)))


class _FrameLayerNorm(nn.Module):
    """LayerNorm over the channels of each frame of (batch, channels, n_frames): causal."""

    def __init__(self, channels):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x):
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class _TCNBlock(nn.Module):
    """Conv-TasNet's 1-D conv block: 1x1 conv, PReLU, norm, causal dilated depthwise conv, PReLU, norm, 1x1 conv."""

    def __init__(self, channels, hidden, kernel_size, dilation):
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        self.expand = nn.Conv1d(channels, hidden, 1)
        self.act1, self.norm1 = nn.PReLU(), _FrameLayerNorm(hidden)
        self.depthwise = nn.Conv1d(hidden, hidden, kernel_size, dilation=dilation, groups=hidden)
        self.act2, self.norm2 = nn.PReLU(), _FrameLayerNorm(hidden)
        self.project = nn.Conv1d(hidden, channels, 1)

    def forward(self, x):
        h = self.norm1(self.act1(self.expand(x)))
        h = nn.functional.pad(h, (self.left_pad, 0))  # causal: frame t sees frames <= t
        h = self.norm2(self.act2(self.depthwise(h)))
        return x + self.project(h)


class TCNMaskNet(nn.Module):
    """A compact Conv-TasNet-style separator on STFT frames (causal).

    Conv-TasNet's temporal convolutional network with the STFT as encoder and
    decoder: a 1x1 bottleneck ``n_bins -> channels``, ``num_repeats`` stacks
    of ``num_blocks`` residual blocks with dilations 1, 2, 4, ... (causal
    depthwise convolutions, per-frame layer norm), and a 1x1 convolution back
    to ``n_bins`` with a sigmoid. Receptive field:
    ``1 + num_repeats * (kernel_size - 1) * (2 ** num_blocks - 1)`` frames.

    Parameters
    ----------
    n_bins, channels, hidden_size, kernel_size, num_blocks, num_repeats : int
    """

    def __init__(self, n_bins, channels, hidden_size, kernel_size, num_blocks, num_repeats):
        super().__init__()
        self.n_bins = n_bins
        self.bottleneck = nn.Conv1d(n_bins, channels, 1)
        self.blocks = nn.Sequential(*[
            _TCNBlock(channels, hidden_size, kernel_size, 2 ** b)
            for _ in range(num_repeats) for b in range(num_blocks)
        ])
        self.mask = nn.Conv1d(channels, n_bins, 1)

    def forward(self, mag, weight=None):
        x = log_features(mag, weight=weight).transpose(1, 2)  # (batch, n_bins, n_frames) for Conv1d
        return torch.sigmoid(self.mask(self.blocks(self.bottleneck(x)))).transpose(1, 2)


def _macs_per_frame(module):
    """Multiply-accumulates per STFT frame, counted analytically per layer type."""
    total = 0
    for sub in module.modules():
        extra = getattr(sub, "extra_macs_per_frame", None)
        if extra is not None:  # fixed (non-learned) products of a network, e.g. a band filterbank
            total += int(extra())
        if isinstance(sub, nn.GRU):
            h = sub.hidden_size
            directions = 2 if sub.bidirectional else 1
            for layer in range(sub.num_layers):
                n_in = sub.input_size if layer == 0 else h * directions
                # three gates (reset, update, candidate), each an input and a recurrent product
                total += directions * 3 * (n_in * h + h * h)
        elif isinstance(sub, nn.Linear):
            total += sub.in_features * sub.out_features
        elif isinstance(sub, nn.Conv1d):
            # one output frame: every output channel sums kernel_size * in_channels / groups products
            total += sub.out_channels * (sub.in_channels // sub.groups) * sub.kernel_size[0]
        elif isinstance(sub, (nn.LayerNorm, nn.PReLU)):
            continue  # elementwise: not counted, like biases and nonlinearities
        elif isinstance(sub, (nn.Sequential, nn.ReLU, nn.Sigmoid, nn.Identity, GRUMaskNet, DAEMaskNet, TCNMaskNet,
                              _TCNBlock, _FrameLayerNorm)):
            continue
        elif extra is not None:
            continue
        elif any(True for _ in sub.parameters(recurse=False)):
            raise ValueError(f"no MAC count for layer type {type(sub).__name__}")
    return total


def complexity(estimator_or_module, sr=None, hop_length=None):
    """Size and cost of a mask network.

    Multiply-accumulates are counted analytically, per STFT frame: a GRU
    layer costs ``3 * (n_in * hidden + hidden * hidden)`` (three gates, each
    with an input and a recurrent matrix product), a linear layer
    ``n_in * n_out``, a 1-D convolution
    ``out_channels * in_channels / groups * kernel_size``, and a network's
    fixed products (e.g. the band compression and expansion of
    :class:`~pse_nmf.neural.CompactEnhancer`, one MAC per non-zero weight)
    are added through its ``extra_macs_per_frame()``. Biases,
    nonlinearities, normalisations, the features and the STFT are not
    counted. Other layer types with weights raise ValueError.

    A model that runs only some of its networks per frame (a
    :class:`~pse_nmf.neural.SparseMixtureOfExperts`: one specialist and the
    gate) lists them in ``_active_modules()``; its MACs are theirs, its
    parameters all of its networks'.

    Parameters
    ----------
    estimator_or_module : fitted neural estimator or torch.nn.Module
    sr : int or None
        Sample rate; None means the estimator's ``sr`` (16000 for a module).
    hop_length : int or None
        STFT hop; None means the estimator's ``hop_length`` (256 for a module).

    Returns
    -------
    dict
        ``parameters`` (int), ``macs_per_frame`` (int), ``frames_per_second``
        (float, ``sr / hop_length``) and ``macs_per_second`` (float).

    Examples
    --------
    >>> from pse_nmf.neural import complexity
    >>> from pse_nmf.neural._models import GRUMaskNet
    >>> c = complexity(GRUMaskNet(513, 64, 2))
    >>> c["macs_per_frame"] == 3 * (513 * 64 + 64 * 64) + 3 * (64 * 64 + 64 * 64) + 64 * 513
    True
    """
    active = getattr(estimator_or_module, "_active_modules", None)
    if active is not None:  # a model of which only some networks run per frame (SparseMixtureOfExperts)
        modules = active()
        sr = estimator_or_module.sr if sr is None else sr
        hop_length = estimator_or_module.hop_length if hop_length is None else hop_length
        macs = sum(_macs_per_frame(m) for m in modules)
        return {
            "parameters": int(sum(p.numel() for p in estimator_or_module.module_.parameters())),
            "macs_per_frame": int(macs),
            "frames_per_second": float(sr / hop_length),
            "macs_per_second": float(macs * sr / hop_length),
        }
    if isinstance(estimator_or_module, nn.Module):
        module = estimator_or_module
        default_sr, default_hop = 16000, 256
    else:
        module = getattr(estimator_or_module, "module_", None)
        if module is None:
            raise ValueError(f"{type(estimator_or_module).__name__} is not fitted (no module_)")
        default_sr, default_hop = estimator_or_module.sr, estimator_or_module.hop_length
    sr = default_sr if sr is None else sr
    hop_length = default_hop if hop_length is None else hop_length
    macs = _macs_per_frame(module)
    fps = sr / hop_length
    return {
        "parameters": int(sum(p.numel() for p in module.parameters())),
        "macs_per_frame": int(macs),
        "frames_per_second": float(fps),
        "macs_per_second": float(macs * fps),
    }
