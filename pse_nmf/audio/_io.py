"""Waveforms in and out: reading, checking, resampling and (atomic) writing."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = [
    "AUDIO_EXTENSIONS",
    "check_waveform",
    "read_audio",
    "write_audio",
    "resample",
]

#: File endings that :func:`read_audio` and the folder loaders look for.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

# Channels beyond this count on the short axis are taken as samples, not channels.
_MAX_CHANNELS = 16


def _pcm_to_float(x):
    """Integer PCM to float32 in [-1, 1), as soundfile reads it."""
    if x.dtype == np.uint8:  # 8-bit WAV is offset binary
        return (x.astype(np.float32) - 128.0) / 128.0
    info = np.iinfo(x.dtype)
    scale = float(-info.min) if info.min < 0 else float(info.max + 1) / 2.0
    offset = 0.0 if info.min < 0 else scale
    return ((x.astype(np.float64) - offset) / scale).astype(np.float32)


def check_waveform(x, *, name="x", downmix=False, min_length=1, dtype=np.float32):
    """Validate a waveform and return it as a 1-D float array.

    Parameters
    ----------
    x : array-like of shape (n_samples,) or (n_samples, n_channels)
        Audio samples. Integer PCM (int8/16/32, uint8) is scaled to
        [-1, 1). A 2-D array is multichannel audio, in soundfile's
        (n_samples, n_channels) or librosa's (n_channels, n_samples) layout
        (the shorter axis, at most 16 long, is taken as channels).
    name : str, default="x"
        Name used in error messages.
    downmix : bool, default=False
        Average the channels of multichannel audio. Without it,
        multichannel audio is an error: silently dropping a channel loses data.
    min_length : int, default=1
        Fewest samples accepted.
    dtype : numpy dtype, default=np.float32
        Floating dtype of the result.

    Returns
    -------
    y : ndarray of shape (n_samples,)
        Finite samples of dtype ``dtype``.

    Raises
    ------
    ValueError
        For empty, too short, non-finite, complex or non-numeric input, or
        multichannel input without ``downmix``.
    """
    if isinstance(x, (str, os.PathLike)):
        raise TypeError(f"{name} is a path ({x!r}); read it with pse_nmf.audio.read_audio first")
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "c":
            raise ValueError(f"{name} is complex; a real-valued waveform is expected")
        raise ValueError(f"{name} must be a numeric waveform, got dtype {arr.dtype}")
    if arr.dtype.kind == "b":
        raise ValueError(f"{name} is boolean; a numeric waveform is expected")
    if arr.dtype.kind in "iu":
        arr = _pcm_to_float(arr)
    if arr.size == 0:
        raise ValueError(f"{name} is empty: no audio samples")
    if arr.ndim == 2:
        if 1 in arr.shape:
            arr = arr.reshape(-1)
        else:
            ch_axis = 1 if arr.shape[1] <= arr.shape[0] else 0
            n_ch = arr.shape[ch_axis]
            if n_ch > _MAX_CHANNELS:
                raise ValueError(
                    f"{name} has shape {arr.shape}; expected a 1-D waveform or "
                    f"(n_samples, n_channels) audio with at most {_MAX_CHANNELS} channels"
                )
            if not downmix:
                raise ValueError(
                    f"{name} is {n_ch}-channel audio of shape {arr.shape}; pse_nmf "
                    "enhances one channel. Pass downmix=True (CLI: --downmix) to "
                    "average the channels, or select one channel yourself."
                )
            arr = arr.mean(axis=ch_axis)
    elif arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or 2-D multichannel), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: no audio samples")
    if arr.size < min_length:
        raise ValueError(
            f"{name} has {arr.size} samples, fewer than the {min_length} needed "
            "(at least one STFT frame)"
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {n_bad} NaN or infinite sample(s)")
    return arr


def resample(y, orig_sr, target_sr):
    """Resample a 1-D waveform with librosa's high-quality soxr resampler.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
    orig_sr, target_sr : int
        Rates of ``y`` and of the result, in Hz (positive).

    Returns
    -------
    y : ndarray of shape (about n_samples * target_sr / orig_sr,)
        Same dtype as the input; ``y`` itself when the rates are equal.
    """
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} and {target_sr}")
    if orig_sr == target_sr:
        return y
    import librosa  # deferred: librosa's import is the slowest of ours

    return librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(
        y.dtype, copy=False
    )


def _check_readable(path):
    """Open ``path`` once: libsndfile reports an unreadable file as "System error."; the OS says why."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot open {str(path)!r}: {exc.strerror}") from None


def read_audio(path, sr=16000, *, downmix=False, dtype=np.float32):
    """Read an audio file with soundfile.

    Parameters
    ----------
    path : str or path-like
        Any format libsndfile reads (WAV, FLAC, OGG, MP3, AIFF, ...).
    sr : int or None, default=16000
        Rate to resample to; ``None`` keeps the file's rate.
    downmix : bool, default=False
        Average the channels of a multichannel file; without it such a file is
        an error.
    dtype : numpy dtype, default=np.float32

    Returns
    -------
    y : ndarray of shape (n_samples,)
    sr : int
        The rate of ``y``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no audio file at {str(path)!r}")
    _check_readable(path)
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise ValueError(f"cannot read {str(path)!r} as audio: {exc}") from exc
    y = check_waveform(data, name=str(path), downmix=downmix, dtype=dtype)
    if sr is not None:
        y = resample(y, file_sr, sr)
        file_sr = int(sr)
    return y, int(file_sr)


# Signals whose default action kills the process without running Python's cleanup (SIGINT already
# raises KeyboardInterrupt, which the writer handles). SIGHUP does not exist on Windows.
_TERMINATION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
_PENDING = set()  # temporary files this process is writing now


def _remove_pending_and_die(signum, frame):
    """Handler: remove the temporary files being written, then die of the signal as by default.

    It does not raise an exception to unwind instead: a Python handler can
    run inside a C callback (Numba compiling through llvmlite calls back
    into Python), where an exception is printed and dropped and the process
    would go on as if no signal came.
    """
    for tmp in list(_PENDING):
        try:
            os.unlink(tmp)
        except OSError:
            pass
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@contextlib.contextmanager
def _removed_on_signals(tmp):
    """While the block runs, SIGTERM and SIGHUP remove ``tmp`` before they kill the process.

    Only signals left at their default action are handled (a handler the
    program installed, or an ignored signal, is respected), handlers are
    installed from the main thread only (the one place Python allows it; a
    file written from another thread is still removed when the main thread
    holds the handler), and the previous handlers are restored on exit.
    """
    _PENDING.add(tmp)
    saved = {}
    try:
        if threading.current_thread() is threading.main_thread():
            for signum in _TERMINATION_SIGNALS:
                if signal.getsignal(signum) is signal.SIG_DFL:
                    saved[signum] = signal.signal(signum, _remove_pending_and_die)
        yield
    finally:
        for signum, previous in saved.items():
            signal.signal(signum, previous)
        _PENDING.discard(tmp)


def _atomic_target(path, overwrite):
    """Check, before any work, that ``path`` can be created: returns it as a Path.

    Refuses a folder, an existing file without ``overwrite``, a missing
    folder and a folder where no file can be created (probed by creating and
    removing a temporary file, which also covers read-only mounts and
    root-owned folders, where permission bits alone mislead).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a folder; give a file name to write")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".probe", dir=path.parent)
    except OSError as exc:
        raise PermissionError(
            exc.errno, f"output folder {str(path.parent)!r} is not writable ({exc.strerror})"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return path


def _publish(tmp, path, overwrite):
    """Move the finished ``tmp`` to ``path``; without ``overwrite`` never replace a file.

    ``os.link`` creates the name only if it does not exist (O_EXCL
    semantics, atomic even between processes), so a file that appeared
    since :func:`_atomic_target` checked, e.g. another run's output, is kept
    and this write fails. Filesystems without hard links fall back to
    reserving the name with ``O_CREAT | O_EXCL`` and replacing the
    reservation.
    """
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(
            f"{str(path)!r} appeared while it was being written (another run?); it was kept. "
            "Pass overwrite=True (CLI: --overwrite) to replace it"
        ) from None
    except OSError:  # no hard links here (e.g. FAT, some network mounts)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise FileExistsError(
                f"{str(path)!r} appeared while it was being written (another run?); it was kept. "
                "Pass overwrite=True (CLI: --overwrite) to replace it"
            ) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _atomic_write(path, write, *, overwrite=False, suffix=None):
    """Call ``write(tmp_path)`` then move the temporary file onto ``path``.

    The temporary file sits beside the target so that the final move is
    atomic: readers see either the old file (or none) or the complete new
    one, never a part. The target is checked before ``write`` runs (see
    :func:`_atomic_target`); without ``overwrite`` it is created exclusively
    (see :func:`_publish`). The temporary file is removed on any error, on
    Ctrl-C and on SIGTERM / SIGHUP (which then kill the process as they
    would have, see :func:`_removed_on_signals`).
    """
    path = _atomic_target(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    with _removed_on_signals(tmp):
        try:
            write(tmp)
            # mkstemp makes the file private (0600); give it the mode a plain open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            _publish(tmp, path, overwrite)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return path


def write_audio(path, y, sr, *, subtype=None, overwrite=False):
    """Write a waveform atomically with soundfile.

    Parameters
    ----------
    path : str or path-like
        Output file; the format follows the extension.
    y : ndarray of shape (n_samples,)
    sr : int
    subtype : str or None
        soundfile subtype (e.g. ``"PCM_16"``, ``"FLOAT"``); default is the
        format's default (16-bit PCM for WAV and FLAC).
    overwrite : bool, default=False
        Replace an existing file. Without it an existing file is an error,
        also one that appears while this one is written.

    Returns
    -------
    path : Path

    Raises
    ------
    ValueError
        For a rate that is not a positive integer, an extension soundfile
        cannot write, a subtype the format does not take, or a bad waveform.
    FileExistsError, FileNotFoundError, IsADirectoryError, PermissionError
        For an existing file (without ``overwrite``), a missing or
        read-only folder, or a path that is a folder; all checked before
        anything is written.
    """
    path = Path(path)
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"cannot write {str(path)!r}: sample rate must be a positive integer, got {sr!r}")
    fmt = path.suffix[1:].upper()
    if not path.suffix or fmt not in sf.available_formats():
        raise ValueError(
            f"cannot write audio of type {path.suffix or '(no extension)'!r} to {str(path)!r}; "
            f"use one of {', '.join('.' + f.lower() for f in sorted(sf.available_formats()))}"
        )
    if subtype is not None and not sf.check_format(fmt, subtype):
        raise ValueError(f"cannot write {str(path)!r}: {fmt} files do not take subtype {subtype!r}")
    y = check_waveform(y, name=f"waveform to write to {str(path)!r}")
    peak = max(float(y.max()), -float(y.min()))  # np.abs(y) would be a temporary copy of a long signal
    is_float = subtype is not None and subtype.upper() in ("FLOAT", "DOUBLE")
    if peak > 1.0 and not is_float:
        warnings.warn(
            f"waveform peaks at {peak:.3f} > 1 and is clipped when written as integer PCM; "
            "write with subtype='FLOAT' to keep it",
            stacklevel=2,
        )
        y = np.clip(y, -1.0, 1.0)
    return _atomic_write(path, lambda tmp: sf.write(tmp, y, int(sr), subtype=subtype), overwrite=overwrite)
