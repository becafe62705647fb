"""STFT and masks.

Orientation
-----------
Every spectrogram in pse_nmf is held as **(n_frames, n_bins)**, the
scikit-learn orientation (frames are samples, frequency bins are features).
librosa returns (n_bins, n_frames); :func:`stft` and :func:`istft` are the one
place where that is transposed.
"""

from __future__ import annotations

import numpy as np

from ._io import check_waveform

__all__ = ["stft", "istft", "ratio_mask", "ideal_ratio_mask", "oracle_mask_denoise"]


def stft(x, *, n_fft=1024, hop_length=256, window="hann"):
    """Short-time Fourier transform in the library's orientation.

    Parameters
    ----------
    x : ndarray of shape (n_samples,)
    n_fft : int, default=1024
    hop_length : int, default=256
    window : str, default="hann"

    Returns
    -------
    S : complex ndarray of shape (n_frames, n_fft // 2 + 1)
        Frames are centred (librosa's ``center=True``), so
        ``n_frames = 1 + n_samples // hop_length``.
    """
    import librosa

    S = librosa.stft(np.asarray(x), n_fft=n_fft, hop_length=hop_length, window=window, center=True)
    return np.ascontiguousarray(S.T)  # librosa (bins, frames) -> ours (frames, bins)


def istft(S, *, n_fft=1024, hop_length=256, window="hann", length=None):
    """Inverse of :func:`stft`.

    Parameters
    ----------
    S : complex ndarray of shape (n_frames, n_fft // 2 + 1)
    n_fft : int, default=1024
    hop_length : int, default=256
    window : str, default="hann"
        As given to :func:`stft`.
    length : int or None, default=None
        Samples in the output; pass the input's length to get it back exactly.

    Returns
    -------
    y : ndarray of shape (length,)
    """
    import librosa

    return librosa.istft(
        np.ascontiguousarray(S.T), n_fft=n_fft, hop_length=hop_length, window=window, center=True, length=length
    )


def ratio_mask(target, interference, power=1.0):
    r"""Soft mask from non-negative magnitude estimates.

    .. math:: M = \frac{T^p}{T^p + I^p}

    ``power=1`` gives the ratio mask, ``power=2`` the Wiener-like mask on
    magnitudes. Where both estimates are zero the mask is 0.

    Parameters
    ----------
    target, interference : ndarray of shape (n_frames, n_bins)
    power : float, default=1.0

    Returns
    -------
    mask : ndarray of shape (n_frames, n_bins), values in [0, 1]
    """
    t = np.power(np.maximum(target, 0), power)
    i = np.power(np.maximum(interference, 0), power)
    den = t + i
    tiny = np.finfo(den.dtype).tiny if np.issubdtype(den.dtype, np.floating) else 1e-300
    return np.where(den > tiny, t / np.maximum(den, tiny), 0.0).astype(t.dtype, copy=False)


def ideal_ratio_mask(speech, noise, *, power=1.0, n_fft=1024, hop_length=256):
    """Oracle ideal ratio mask from the true speech and noise waveforms.

    Parameters
    ----------
    speech, noise : ndarray of shape (n_samples,)
        The two sources of the mixture, sample-aligned.
    power : float, default=1.0
        Mask exponent, as in :func:`ratio_mask`.
    n_fft : int, default=1024
    hop_length : int, default=256

    Returns
    -------
    mask : ndarray of shape (n_frames, n_bins)
    """
    return ratio_mask(
        np.abs(stft(speech, n_fft=n_fft, hop_length=hop_length)),
        np.abs(stft(noise, n_fft=n_fft, hop_length=hop_length)),
        power=power,
    )


def oracle_mask_denoise(mixture, speech, *, power=1.0, n_fft=1024, hop_length=256):
    """Apply the oracle ideal ratio mask to a mixture: the ceiling of masking.

    The noise is taken as ``mixture - speech``.

    Parameters
    ----------
    mixture, speech : ndarray of shape (n_samples,)
        The noisy signal and its clean speech, of the same length.
    power : float, default=1.0
        Mask exponent, as in :func:`ratio_mask`.
    n_fft : int, default=1024
    hop_length : int, default=256

    Returns
    -------
    y : ndarray of shape (len(mixture),)
    """
    mixture = check_waveform(mixture, name="mixture")
    speech = check_waveform(speech, name="speech")
    if mixture.shape != speech.shape:
        raise ValueError(f"mixture and speech differ in length: {mixture.size} vs {speech.size}")
    X = stft(mixture, n_fft=n_fft, hop_length=hop_length)
    mask = ideal_ratio_mask(speech, mixture - speech, power=power, n_fft=n_fft, hop_length=hop_length)
    return istft(X * mask, n_fft=n_fft, hop_length=hop_length, length=mixture.size)
