"""Audio: reading, checking, resampling and writing waveforms; the STFT and masks.

Spectrograms are ``(n_frames, n_bins)`` everywhere (scikit-learn's orientation);
:func:`stft` and :func:`istft` are the one place librosa's ``(n_bins, n_frames)``
is transposed.
"""

from ._io import AUDIO_EXTENSIONS, check_waveform, read_audio, resample, write_audio
from ._stft import ideal_ratio_mask, istft, oracle_mask_denoise, ratio_mask, stft

__all__ = [
    "AUDIO_EXTENSIONS",
    "read_audio",
    "write_audio",
    "check_waveform",
    "resample",
    "stft",
    "istft",
    "ratio_mask",
    "ideal_ratio_mask",
    "oracle_mask_denoise",
]
