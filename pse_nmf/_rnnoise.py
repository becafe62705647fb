"""RNNoise (Valin 2018) as a peer estimator with the library's ``denoise`` interface.

The network and its weights are pyrnnoise's bundled C library; this module
only adapts rates, levels, framing and delay. pyrnnoise is imported on first
use, never by ``import pse_nmf``.
"""

from __future__ import annotations

import ctypes
import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

from ._persistence import ModelIOMixin, register_estimator
from .audio._io import check_waveform, resample

__all__ = ["RNNoiseEnhancer"]

#: RNNoise works on 10 ms frames of 48 kHz audio.
_RATE = 48000
_FRAME = 480
#: Algorithmic delay of the bundled RNNoise, in 48 kHz samples (two frames, 20 ms): the lag at which the
#: output of clean speech cross-correlates best with the input (the same lag, to the sample, on each of the
#: example speakers; a lag one sample off costs 1.6-5 dB of SI-SDR to the input).
_DELAY = 960
#: The C library expects int16-range samples held in floats.
_SCALE = 32767.0


def _rnnoise_library():
    """Pyrnnoise's ctypes handle to librnnoise, imported on first use."""
    try:
        from pyrnnoise import rnnoise
    except ImportError as exc:
        raise ImportError(
            'RNNoiseEnhancer needs pyrnnoise, which is not installed: pip install "pse_nmf[peers]"'
        ) from exc
    if rnnoise.FRAME_SIZE != _FRAME or rnnoise.SAMPLE_RATE != _RATE:
        raise ImportError(
            f"pyrnnoise's RNNoise uses {rnnoise.FRAME_SIZE}-sample frames at {rnnoise.SAMPLE_RATE} Hz; "
            f"RNNoiseEnhancer expects {_FRAME} at {_RATE} Hz"
        )
    return rnnoise.lib


def _rnnoise_run(lib, y):
    """Run RNNoise over a 48 kHz waveform; the output is aligned with the input.

    Parameters
    ----------
    lib : ctypes.CDLL
        librnnoise (``rnnoise_create``, ``rnnoise_process_frame``, ``rnnoise_destroy``).
    y : ndarray of shape (n_samples,)
        float32, in int16 range (full scale 32767).

    Returns
    -------
    out : ndarray of shape (n_samples,)
        float32 enhanced samples, in the input's range.
    prob : ndarray of shape (ceil(n_samples / 480),)
        float32 speech probability of each 10 ms frame of ``out``.

    The input is zero-padded by the delay (and to whole frames), and the
    first ``_DELAY`` output samples are dropped. Samples stay float32 from
    end to end: pyrnnoise's ``process_mono_frame`` rounds them to int16 on
    the way in and out, which quantises the output, wraps it around where
    the gains push it past full scale, and refuses float input beyond
    [-1, 1]; the C library itself works in floats and needs none of that.
    """
    n = y.size
    n_frames = -(-(n + _DELAY) // _FRAME)
    buf = np.zeros(n_frames * _FRAME, dtype=np.float32)
    buf[:n] = y
    out = np.empty_like(buf)
    prob = np.empty(n_frames, dtype=np.float32)
    fptr = ctypes.POINTER(ctypes.c_float)
    step = _FRAME * buf.itemsize
    src, dst = buf.ctypes.data, out.ctypes.data
    state = lib.rnnoise_create(None)
    if not state:
        raise MemoryError("rnnoise_create failed")
    try:
        for k in range(n_frames):
            prob[k] = lib.rnnoise_process_frame(state, ctypes.cast(dst + k * step, fptr),
                                                ctypes.cast(src + k * step, fptr))
    finally:
        lib.rnnoise_destroy(state)
    lag = _DELAY // _FRAME
    return out[_DELAY:_DELAY + n], prob[lag:lag + -(-n // _FRAME)]


@register_estimator
class RNNoiseEnhancer(ModelIOMixin, BaseEstimator):
    r"""RNNoise, the generic real-time speech enhancer of Valin (2018), as a pse_nmf estimator.

    A thin wrapper around the RNNoise C library and its 2024 weights bundled
    with `pyrnnoise <https://pypi.org/project/pyrnnoise/>`_ (install with
    ``pip install "pse_nmf[peers]"``). RNNoise is a hybrid DSP / recurrent
    network: on 10 ms frames of 48 kHz audio it computes 22 Bark-like band
    energies and pitch features, and GRU layers predict one gain per band,
    :math:`g_b \in [0, 1]`, interpolated across frequency and applied to the
    frame's spectrum (with a pitch comb filter), together with a speech
    probability per frame. It is trained once, on many speakers and noises:
    nothing is fitted here, so ``fit`` does nothing and the estimator is
    ready from construction. It serves as a baseline and as a teacher (e.g.
    for :class:`pse_nmf.neural.DistilledStudent`).

    ``denoise`` resamples the input to 48 kHz with :func:`pse_nmf.audio.resample`,
    scales it to RNNoise's int16 range (float samples in [-1, 1] times
    32767; samples stay floats, so nothing is rounded, clipped or wrapped),
    runs the frames through the library, removes its algorithmic delay of
    20 ms (960 samples at 48 kHz, measured by cross-correlating the output
    of clean speech with the input) by padding the input's end and dropping
    the first output samples, and resamples back: the output is aligned
    with the input, at its rate and of its length.

    Parameters
    ----------
    sr : int, default=16000
        Rate of waveforms passed without ``sr=``, in Hz (any rate is
        accepted; RNNoise itself runs at 48 kHz).

    See Also
    --------
    pse_nmf.SemiSupervisedNMF : a personal model fitted to one speaker.

    Notes
    -----
    RNNoise keeps a recurrent state across frames; each call starts from a
    fresh state, so a call's output depends only on its input. The first
    call imports pyrnnoise (about a third of a second).

    References
    ----------
    .. [1] J.-M. Valin, "A Hybrid DSP/Deep Learning Approach to Real-Time
       Full-Band Speech Enhancement", IEEE 20th International Workshop on
       Multimedia Signal Processing (MMSP), 2018. :doi:`10.1109/MMSP.2018.8547084`

    Examples
    --------
    >>> from pse_nmf import RNNoiseEnhancer
    >>> from pse_nmf.datasets import mix_at_snr
    >>> from pse_nmf.datasets import load_example
    >>> data = load_example()
    >>> speech = data.speech[sorted(data.speech)[0]][0]
    >>> noisy, _ = mix_at_snr(speech, data.noise["running_tap"][0], 0, random_state=0)
    >>> enhanced = RNNoiseEnhancer().denoise(noisy)
    >>> enhanced.shape == noisy.shape
    True
    """

    _parameter_constraints = {"sr": [Interval(numbers.Integral, 1, None, closed="left")]}

    def __init__(self, *, sr=16000):
        self.sr = sr

    def __sklearn_is_fitted__(self):
        # nothing to fit: the weights ship with the library (as FunctionTransformer is always fitted)
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    def fit(self, X=None, y=None):
        """Do nothing (RNNoise is pretrained); check the parameters and that pyrnnoise is installed.

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        _rnnoise_library()
        return self

    def _enhance(self, x, sr, downmix):
        """Validated input, enhanced output (both at the input's rate) and per-frame speech probability."""
        self._validate_params()
        y = check_waveform(x, name="x", downmix=downmix)
        rate = self.sr if sr is None else int(sr)
        lib = _rnnoise_library()
        y48 = resample(y, rate, _RATE)
        out48, prob = _rnnoise_run(lib, y48 * np.float32(_SCALE))
        out48 /= np.float32(_SCALE)
        speech = resample(out48, _RATE, rate)
        speech = np.pad(speech[: y.size], (0, max(0, y.size - speech.size)))
        return y, speech.astype(np.float32, copy=False), prob

    def denoise(self, x, *, sr=None, downmix=False):
        """Enhance a noisy waveform.

        Parameters
        ----------
        x : array-like of shape (n_samples,)
            Noisy audio; integer PCM is scaled to [-1, 1).
        sr : int or None
            Rate of ``x``; None means the estimator's ``sr``.
        downmix : bool, default=False
            Average the channels of multichannel input (refused otherwise).

        Returns
        -------
        ndarray of shape (n_samples,)
            The enhanced waveform, float32, same length and rate as ``x``
            and aligned with it (RNNoise's delay removed).
        """
        return self._enhance(x, sr, downmix)[1]

    def separate(self, x, *, sr=None, downmix=False):
        """Split a noisy waveform into speech and noise estimates.

        Parameters
        ----------
        x : array-like of shape (n_samples,)
        sr : int or None
            Rate of ``x``; None means the estimator's ``sr``.
        downmix : bool, default=False

        Returns
        -------
        speech, noise : ndarray of shape (n_samples,)
            float32, same length and rate as ``x``; ``noise`` is the input
            minus ``speech``.
        """
        y, speech, _ = self._enhance(x, sr, downmix)
        return speech, y - speech

    def speech_probability(self, x, *, sr=None, downmix=False):
        """RNNoise's speech probability of each 10 ms frame.

        Parameters
        ----------
        x : array-like of shape (n_samples,)
        sr : int or None
            Rate of ``x``; None means the estimator's ``sr``.
        downmix : bool, default=False

        Returns
        -------
        ndarray of shape (n_frames,)
            float32 in [0, 1]; value ``j`` comes with the network step whose
            gains shaped the ``j``-th 10 ms of the (delay-compensated)
            output, so frame ``j`` covers ``x[j * sr // 100 : (j + 1) * sr // 100]``
            up to rounding. ``n_frames`` is the number of 10 ms frames
            (started) at 48 kHz.
        """
        return self._enhance(x, sr, downmix)[2]
