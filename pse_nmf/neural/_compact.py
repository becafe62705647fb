"""The compact causal mask network of :class:`~pse_nmf.neural.CompactEnhancer` (private ``nn.Module``).

Input: STFT magnitudes (batch, n_frames, n_bins), the library's orientation.
Output: a real mask in [0, 1] of the same shape. Every step is causal, and
:meth:`CompactMaskNet.step` runs the same computation one frame at a time
with an explicit state, so streaming gives the whole-utterance output.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["CompactMaskNet", "band_matrix"]


def _hz_to_erb(f):
    """Glasberg & Moore's ERB-rate scale (ERB number) of a frequency in Hz."""
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f, dtype=np.float64))


def _erb_to_hz(e):
    return (10.0 ** (np.asarray(e, dtype=np.float64) / 21.4) - 1.0) / 0.00437


def band_matrix(n_bins, sr, n_linear, n_erb):
    r"""Compression matrix: the first ``n_linear`` bins kept, the rest pooled into ``n_erb`` ERB bands.

    GTCRN's layout (Rong et al. 2024): the low bins, where the harmonics of
    voiced speech are resolved, stay at full resolution; above them,
    triangular filters with centres equally spaced on the ERB-rate scale
    pool the bins. Each row is normalised to sum to one, so a band's value
    is a weighted mean of its bins' powers.

    Parameters
    ----------
    n_bins : int
        ``n_fft // 2 + 1``.
    sr : int
    n_linear : int
        Bins kept as they are (0 .. n_linear - 1).
    n_erb : int
        Bands above them.

    Returns
    -------
    ndarray of shape (n_linear + n_erb, n_bins)
        Non-negative; every row sums to 1 and every bin is covered by at
        least one row.
    """
    if not 0 < n_linear < n_bins or n_erb < 1 or n_erb > n_bins - n_linear:
        raise ValueError(f"need 0 < n_linear < n_bins and 1 <= n_erb <= n_bins - n_linear, got "
                         f"n_linear={n_linear}, n_erb={n_erb}, n_bins={n_bins}")
    freqs = np.linspace(0.0, sr / 2.0, n_bins)
    high = freqs[n_linear:]
    # band centres equally spaced in ERB number from the first pooled bin to Nyquist, edges included
    centres = _erb_to_hz(np.linspace(_hz_to_erb(high[0]), _hz_to_erb(high[-1]), n_erb))
    W = np.zeros((n_linear + n_erb, n_bins))
    W[np.arange(n_linear), np.arange(n_linear)] = 1.0
    for b in range(n_erb):
        lo = centres[b - 1] if b > 0 else centres[0] - (centres[1] - centres[0] if n_erb > 1 else 1.0)
        hi = centres[b + 1] if b + 1 < n_erb else centres[-1] + (centres[-1] - centres[-2] if n_erb > 1 else 1.0)
        c = centres[b]
        rise = (high - lo) / max(c - lo, 1e-9)
        fall = (hi - high) / max(hi - c, 1e-9)
        W[n_linear + b, n_linear:] = np.clip(np.minimum(rise, fall), 0.0, None)
    # a band narrower than the bin spacing can miss every bin: give it its nearest bin
    for b in range(n_erb):
        if W[n_linear + b].sum() == 0:
            W[n_linear + b, n_linear + int(np.argmin(np.abs(high - centres[b])))] = 1.0
    W /= W.sum(axis=1, keepdims=True)
    return W


class CompactMaskNet(nn.Module):
    r"""Causal band-GRU mask estimator in the ultra-light class (< 100k parameters).

    Per frame :math:`t`:

    1. band powers :math:`p_t = B |Y_t|^2` with :math:`B` from
       :func:`band_matrix` (``n_linear`` low bins, ``n_erb`` ERB bands);
    2. level-free log features :math:`f_t = \log(p_t / L_t + \epsilon)`,
       where :math:`L_t` is a causal running mean of the frame's mean band
       power: the cumulative mean for the first frames, then an exponential
       mean with time constant ``norm_seconds``
       (:math:`L_t = \alpha_t L_{t-1} + (1 - \alpha_t) \bar p_t`,
       :math:`\alpha_t = \min(\alpha, t / (t + 1))`), so a gain on the input
       does not change the mask;
    3. a causal convolution over the current and previous frame, PReLU,
       two GRU layers, a linear layer and a sigmoid give one gain per band;
    4. the band gains are spread back to the bins by the transpose of
       :math:`B` normalised per bin (each bin's gain is a weighted mean of the
       gains of the bands that cover it).

    Parameters
    ----------
    n_bins : int
    sr : int
    hop_length : int
    n_linear, n_erb : int
        See :func:`band_matrix`.
    conv_channels, hidden_size, hidden_size2 : int
        Widths of the convolution and of the two GRU layers.
    norm_seconds : float
        Time constant of the level normalisation.
    """

    floor = 1e-6  # relative floor of the log features: silent bands sit 60 dB below the running level

    def __init__(self, n_bins, sr, hop_length, n_linear=64, n_erb=32, conv_channels=64, hidden_size=96,
                 hidden_size2=64, norm_seconds=3.0):
        super().__init__()
        self.n_bins, self.sr, self.hop_length = int(n_bins), int(sr), int(hop_length)
        self.n_linear, self.n_erb = int(n_linear), int(n_erb)
        self.norm_seconds = float(norm_seconds)
        W = band_matrix(self.n_bins, self.sr, self.n_linear, self.n_erb)
        expand = W.T / W.T.sum(axis=1, keepdims=True)  # (n_bins, n_bands): a bin's gain = mean of its bands'
        self.register_buffer("compress", torch.tensor(W.T, dtype=torch.float32), persistent=False)
        self.register_buffer("expand", torch.tensor(expand.T, dtype=torch.float32), persistent=False)
        n_bands = self.n_linear + self.n_erb
        self.n_bands = n_bands
        self.conv = nn.Conv1d(n_bands, conv_channels, kernel_size=2)
        self.act = nn.PReLU(conv_channels)
        self.gru1 = nn.GRU(conv_channels, hidden_size, batch_first=True)
        self.gru2 = nn.GRU(hidden_size, hidden_size2, batch_first=True)
        self.out = nn.Linear(hidden_size2, n_bands)

    @property
    def alpha(self):
        return math.exp(-self.hop_length / (self.sr * self.norm_seconds))

    # -- features -------------------------------------------------------------------------------
    def band_powers(self, mag):
        """(batch, n_frames, n_bins) magnitudes -> (batch, n_frames, n_bands) band powers."""
        return torch.matmul(torch.square(mag), self.compress)

    def _level(self, frame_power, count, level):
        """One step of the running level: (batch,) mean band power, frames seen so far, previous level."""
        a = min(self.alpha, count / (count + 1.0))
        return a * level + (1.0 - a) * frame_power

    def features(self, mag):
        """Level-free log band features (batch, n_frames, n_bands); no gradient flows through the level."""
        p = self.band_powers(mag)
        with torch.no_grad():
            frame_power = p.mean(dim=2)
            levels = torch.empty_like(frame_power)
            level = torch.zeros_like(frame_power[:, 0])
            for t in range(p.shape[1]):
                level = self._level(frame_power[:, t], float(t), level)
                levels[:, t] = level
            levels = torch.clamp(levels, min=torch.finfo(p.dtype).tiny)
        return torch.log(p / levels[:, :, None] + self.floor)

    # -- network --------------------------------------------------------------------------------
    def _head(self, h):
        return torch.matmul(torch.sigmoid(self.out(h)), self.expand)

    def forward(self, mag, weight=None):
        """Mask (batch, n_frames, n_bins) for magnitudes of the same shape.

        ``weight`` (the library's padding marker) is accepted and unused:
        the network is causal, so zero padding after a sequence's end does
        not change its real frames' masks.
        """
        f = self.features(mag).transpose(1, 2)  # (batch, n_bands, n_frames) for Conv1d
        x = self.act(self.conv(nn.functional.pad(f, (1, 0))))  # causal: frame t sees t-1 and t
        h, _ = self.gru1(x.transpose(1, 2))
        h, _ = self.gru2(h)
        return self._head(h)

    # -- streaming ------------------------------------------------------------------------------
    def initial_state(self, batch=1):
        """State before the first frame: (frames seen, level, previous features, GRU states)."""
        dtype = self.out.weight.dtype
        zeros = torch.zeros(batch, self.n_bands, dtype=dtype)
        return {
            "count": 0.0,
            "level": torch.zeros(batch, dtype=dtype),
            "prev": zeros,
            "h1": torch.zeros(1, batch, self.gru1.hidden_size, dtype=dtype),
            "h2": torch.zeros(1, batch, self.gru2.hidden_size, dtype=dtype),
        }

    def step(self, mag_frame, state):
        """One frame: magnitudes (batch, n_bins) -> mask (batch, n_bins) and the new state.

        Gives exactly what :meth:`forward` gives on that frame of the whole
        sequence (up to float round-off).
        """
        p = torch.matmul(torch.square(mag_frame), self.compress)
        level = self._level(p.mean(dim=1), state["count"], state["level"])
        f = torch.log(p / torch.clamp(level, min=torch.finfo(p.dtype).tiny)[:, None] + self.floor)
        x = self.act(self.conv(torch.stack([state["prev"], f], dim=2)))  # (batch, channels, 1)
        h1, s1 = self.gru1(x.transpose(1, 2), state["h1"])
        h2, s2 = self.gru2(h1, state["h2"])
        new = {"count": state["count"] + 1.0, "level": level, "prev": f, "h1": s1, "h2": s2}
        return self._head(h2)[:, 0], new

    def extra_macs_per_frame(self):
        """Multiply-accumulates of the band compression and expansion (their non-zero weights)."""
        return int(torch.count_nonzero(self.compress)) + int(torch.count_nonzero(self.expand))
