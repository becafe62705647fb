"""Streaming STFT and inverse STFT with the framing of :func:`pse_nmf.audio.stft`.

:class:`StreamingSTFT` cuts a signal that arrives in blocks of any size into
the same frames as ``pse_nmf.audio.stft`` (librosa's ``center=True``: ``n_fft // 2``
zeros before the signal and after it, periodic Hann window, frame ``t``
starting at ``t * hop_length`` of the padded signal, ``1 + n_samples //
hop_length`` frames) and resynthesises by overlap-add normalised by the summed
squared window, as ``pse_nmf.audio.istft`` does. The frames, and the output samples,
do not depend on how the input was split into blocks: the frames are cut from
a contiguous buffer and the overlap-add runs frame after frame in a Numba
kernel.

Timing (padded coordinates ``p = n + n_fft // 2`` for input sample ``n``):
frame ``t`` can be analysed once input sample ``t hop + n_fft - n_fft // 2 - 1``
has arrived, and output sample ``n`` is final once every frame covering it has
been synthesised. After ``N`` input samples at least ``N - (n_fft - 1)``
output samples are final, so a stream that returns each output sample
``n_fft - 1`` samples after its input sample never waits: that is the
algorithmic latency (1023 samples, 63.9 ms, at the library's 1024 / 16 kHz).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["StreamingSTFT", "hann_window", "overlap_add"]


def hann_window(n_fft):
    """Periodic Hann window of ``n_fft`` samples (librosa's ``"hann"``, ``fftbins=True``)."""
    n = np.arange(n_fft, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)


class StreamingSTFT:
    """Block-wise analysis and synthesis with ``pse_nmf.audio.stft`` framing.

    Parameters
    ----------
    n_fft : int, default=1024
    hop_length : int, default=256
        At most ``n_fft``.

    Use: ``S = analyze(block)`` gives the complex frames (n_new, n_fft // 2 + 1)
    completed by ``block``; ``y = synthesize(S_mod)`` overlap-adds the same
    number of (modified) frames and returns the output samples that became
    final; at the end ``S = finish()`` gives the last frames (right padding)
    and ``synthesize(S_mod, final=True)`` the rest of the output. The output
    samples are aligned with the input (no delay inside this class); in total
    as many come out as went in.
    """

    def __init__(self, n_fft=1024, hop_length=256):
        if hop_length > n_fft or hop_length < 1:
            raise ValueError(f"hop_length must be in [1, n_fft={n_fft}], got {hop_length}")
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.window = hann_window(self.n_fft)
        self.reset()

    @property
    def latency(self):
        """Samples between an input sample and the moment its output is final, at most."""
        return self.n_fft - 1

    def reset(self):
        pad = self.n_fft // 2
        self._buf = np.zeros(pad, dtype=np.float64)  # padded input from _buf_start on
        self._buf_start = 0  # padded coordinate of _buf[0]
        self._next_frame = 0  # next frame to analyse
        self._n_in = 0  # input samples received
        self._n_synth = 0  # frames synthesised
        self._acc = np.zeros(0, dtype=np.float64)  # overlap-add from _acc_start on
        self._wss = np.zeros(0, dtype=np.float64)
        self._acc_start = 0
        self._n_out = 0  # output samples returned (input coordinates)
        self._finished = False

    # -- analysis --------------------------------------------------------------------------
    def _frames(self, last_frame):
        """Complex spectra of frames ``_next_frame .. last_frame - 1`` from the buffer."""
        n = last_frame - self._next_frame
        F = self.n_fft // 2 + 1
        if n <= 0:
            return np.zeros((0, F), dtype=np.complex128)
        start = self._next_frame * self.hop_length - self._buf_start
        stop = start + (n - 1) * self.hop_length + self.n_fft
        seg = self._buf[start:stop]
        frames = np.lib.stride_tricks.sliding_window_view(seg, self.n_fft)[:: self.hop_length]
        S = np.fft.rfft(frames * self.window, axis=-1)
        self._next_frame = last_frame
        # keep the input from the next frame's start on
        keep = self._next_frame * self.hop_length - self._buf_start
        self._buf = self._buf[keep:].copy()
        self._buf_start += keep
        return S

    def analyze(self, block):
        """Append ``block`` (1-D float64) and return the frames it completed."""
        if self._finished:
            raise RuntimeError("the stream was finished; call reset() to start a new one")
        block = np.asarray(block, dtype=np.float64)
        self._buf = np.concatenate([self._buf, block])
        self._n_in += block.size
        available = self._buf_start + self._buf.size  # padded samples known
        last_frame = (available - self.n_fft) // self.hop_length + 1 if available >= self.n_fft else 0
        return self._frames(max(last_frame, self._next_frame))

    def n_frames_total(self):
        """Frames of the whole signal so far: ``1 + n_samples // hop_length``."""
        pad = self.n_fft // 2
        return 1 + (self._n_in + 2 * pad - self.n_fft) // self.hop_length

    def finish(self):
        """Pad the end with zeros and return the remaining frames; no more input after this."""
        if self._finished:
            raise RuntimeError("the stream was already finished")
        self._finished = True
        pad = self.n_fft // 2
        self._buf = np.concatenate([self._buf, np.zeros(self.n_fft - pad + pad, dtype=np.float64)])
        return self._frames(self.n_frames_total())

    # -- synthesis -------------------------------------------------------------------------
    def synthesize(self, S, final=False):
        """Overlap-add the next ``len(S)`` frames; return the output samples now final.

        Parameters
        ----------
        S : complex ndarray of shape (n, n_fft // 2 + 1)
            Frames in analysis order, ``n`` at most the frames analysed and not
            yet synthesised.
        final : bool
            After :meth:`finish`: return everything up to the input's length.
        """
        n = S.shape[0]
        hop, n_fft, pad = self.hop_length, self.n_fft, self.n_fft // 2
        if self._n_synth + n > self._next_frame:
            raise ValueError("more frames to synthesise than were analysed")
        if n:
            frames = np.fft.irfft(S, n=n_fft, axis=-1)
            first = self._n_synth * hop
            end = (self._n_synth + n - 1) * hop + n_fft
            need = end - self._acc_start
            if need > self._acc.size:
                grow = need - self._acc.size
                self._acc = np.concatenate([self._acc, np.zeros(grow)])
                self._wss = np.concatenate([self._wss, np.zeros(grow)])
            overlap_add(self._acc, self._wss, np.ascontiguousarray(frames), self.window,
                        first - self._acc_start, hop)
            self._n_synth += n
        if final:
            if self._n_synth != self.n_frames_total():
                raise ValueError("final synthesis needs every frame of the signal")
            stop_p = self._n_in + pad
        else:
            stop_p = self._n_synth * hop  # no later frame touches samples before this
        stop_p = min(stop_p, self._n_in + pad)
        start_p = max(self._acc_start, pad + self._n_out)
        if stop_p <= start_p:
            return np.zeros(0, dtype=np.float64)
        a = start_p - self._acc_start
        b = stop_p - self._acc_start
        if b > self._acc.size:  # samples no frame touched (cannot happen with hop <= n_fft)
            grow = b - self._acc.size
            self._acc = np.concatenate([self._acc, np.zeros(grow)])
            self._wss = np.concatenate([self._wss, np.zeros(grow)])
        y = self._acc[a:b].copy()
        w = self._wss[a:b]
        nz = w > np.finfo(np.float64).tiny
        y[nz] /= w[nz]
        self._n_out += y.size
        self._acc = self._acc[b:].copy()
        self._wss = self._wss[b:].copy()
        self._acc_start = stop_p
        return y


@njit(cache=True, nogil=True)
def overlap_add(acc, wss, frames, window, offset, hop):
    """``acc[offset + i hop + j] += frames[i, j] window[j]``; ``wss`` gets ``window[j] ** 2``.

    Frames are added in order, so each output sample sees its additions in the
    same order however the frames are split between calls.
    """
    n, m = frames.shape
    for i in range(n):
        o = offset + i * hop
        for j in range(m):
            w = window[j]
            acc[o + j] += frames[i, j] * w
            wss[o + j] += w * w
