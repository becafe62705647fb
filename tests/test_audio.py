"""Audio front end: STFT against a naive framed FFT, waveform checks, file I/O, masks."""

import os

import numpy as np
import pytest
import soundfile as sf

from pse_nmf.audio import (
    check_waveform,
    istft,
    oracle_mask_denoise,
    ratio_mask,
    read_audio,
    resample,
    stft,
    write_audio,
)
from pse_nmf.metrics import si_sdr

N_FFT, HOP = 1024, 256


# --------------------------------------------------------------------------- STFT


def naive_stft(x, n_fft=N_FFT, hop=HOP):
    """Framed FFT written out: periodic Hann window, frames centred with zero padding.

    librosa (0.10 and later) pads with zeros when ``center=True`` (its
    ``pad_mode`` defaults to "constant"); the window is the periodic
    ("fftbins") Hann, w[n] = 0.5 - 0.5 cos(2 pi n / n_fft).
    """
    x = np.asarray(x, dtype=np.float64)
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    padded = np.concatenate([np.zeros(n_fft // 2), x, np.zeros(n_fft // 2)])
    k = np.arange(n_fft // 2 + 1)
    dft = np.exp(-2j * np.pi * np.outer(k, n) / n_fft)  # (n_bins, n_fft), the DFT by definition
    n_frames = 1 + x.size // hop
    frames = []
    for t in range(n_frames):
        seg = padded[t * hop : t * hop + n_fft]
        seg = np.concatenate([seg, np.zeros(n_fft - seg.size)])
        frames.append(dft @ (seg * window))
    return np.array(frames)


def test_librosa_pads_with_zeros_by_default():
    """The oracle's padding assumption, checked against the installed librosa."""
    import inspect

    import librosa

    assert inspect.signature(librosa.stft).parameters["pad_mode"].default == "constant"


@pytest.mark.parametrize("n_samples", [2048, 3000])
def test_stft_matches_naive_framed_fft(n_samples):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n_samples).astype(np.float32)
    S = stft(x)
    expected = naive_stft(x)
    assert S.shape == expected.shape == (1 + n_samples // HOP, N_FFT // 2 + 1)
    np.testing.assert_allclose(S, expected, atol=1e-3 * np.abs(expected).max())


def test_stft_orientation_and_dtype():
    x = np.random.default_rng(1).standard_normal(16000).astype(np.float32)
    S = stft(x)
    assert S.shape == (1 + 16000 // HOP, 513)
    assert np.iscomplexobj(S) and S.flags.c_contiguous
    # a pure tone at bin 64 lights up column 64 of every (interior) frame
    t = np.arange(16000)
    tone = np.sin(2 * np.pi * 64 * t / N_FFT)
    mag = np.abs(stft(tone))
    assert np.all(np.argmax(mag[4:-4], axis=1) == 64)


@pytest.mark.parametrize("n_samples", [1024, 16000, 16001, 12345])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stft_istft_round_trip(n_samples, dtype):
    x = np.random.default_rng(2).uniform(-0.5, 0.5, n_samples).astype(dtype)
    y = istft(stft(x), length=n_samples)
    assert y.shape == (n_samples,)
    np.testing.assert_allclose(y, x, atol=1e-5 if dtype == np.float32 else 1e-10)


# --------------------------------------------------------------------------- check_waveform


def test_check_waveform_int16_scaling():
    x = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    y = check_waveform(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x.astype(np.float64) / 32768.0, rtol=0, atol=1e-7)


def test_check_waveform_int32_scaling():
    x = np.array([-(2**31), -(2**30), 0, 2**30, 2**31 - 1], dtype=np.int32)
    np.testing.assert_allclose(check_waveform(x), x.astype(np.float64) / 2.0**31, rtol=1e-7)


def test_check_waveform_uint8_scaling():
    x = np.array([0, 64, 128, 192, 255], dtype=np.uint8)
    np.testing.assert_allclose(check_waveform(x), (x.astype(np.float64) - 128.0) / 128.0, rtol=0, atol=1e-7)


def test_check_waveform_int_matches_soundfile(tmp_path):
    """Integer PCM is scaled as soundfile reads the same samples from a file."""
    x = np.random.default_rng(3).integers(-32768, 32767, 500, dtype=np.int16)
    path = tmp_path / "pcm.wav"
    sf.write(path, x, 16000, subtype="PCM_16")
    from_file, _ = sf.read(path, dtype="float32")
    np.testing.assert_array_equal(check_waveform(x), from_file)


def test_check_waveform_float_passthrough_and_dtype():
    x = np.random.default_rng(4).uniform(-1, 1, 100)
    np.testing.assert_array_equal(check_waveform(x, dtype=np.float64), x)
    assert check_waveform(x).dtype == np.float32
    assert check_waveform(list(x)).shape == (100,)
    # a (n, 1) or (1, n) array is one channel
    np.testing.assert_array_equal(check_waveform(x[:, None]), check_waveform(x))
    np.testing.assert_array_equal(check_waveform(x[None, :]), check_waveform(x))


@pytest.mark.parametrize("layout", ["samples_channels", "channels_samples"])
def test_check_waveform_stereo(layout):
    rng = np.random.default_rng(5)
    left, right = rng.uniform(-1, 1, 1000), rng.uniform(-1, 1, 1000)
    x = np.stack([left, right], axis=1 if layout == "samples_channels" else 0)
    with pytest.raises(ValueError, match="downmix"):
        check_waveform(x)
    np.testing.assert_allclose(check_waveform(x, downmix=True), (left + right) / 2, rtol=1e-6, atol=1e-7)


def test_check_waveform_too_many_channels():
    with pytest.raises(ValueError, match="at most 16 channels"):
        check_waveform(np.zeros((100, 50)), downmix=True)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_waveform_non_finite(bad):
    x = np.zeros(100)
    x[10] = bad
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        check_waveform(x)


def test_check_waveform_rejects():
    with pytest.raises(ValueError, match="empty"):
        check_waveform(np.zeros(0))
    with pytest.raises(ValueError, match="complex"):
        check_waveform(np.ones(10, dtype=complex))
    with pytest.raises(ValueError, match="boolean"):
        check_waveform(np.ones(10, dtype=bool))
    with pytest.raises(ValueError, match="numeric"):
        check_waveform(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="1-D"):
        check_waveform(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="fewer than the 1024"):
        check_waveform(np.zeros(1023), min_length=1024)
    with pytest.raises(TypeError, match="read it with pse_nmf.audio.read_audio"):
        check_waveform("speech.wav")


def test_check_waveform_name_in_message():
    with pytest.raises(ValueError, match="mixture is empty"):
        check_waveform([], name="mixture")


# --------------------------------------------------------------------------- files


def test_write_read_round_trip_pcm16(tmp_path):
    x = np.random.default_rng(6).uniform(-0.9, 0.9, 8000).astype(np.float32)
    path = write_audio(tmp_path / "x.wav", x, 16000)
    assert path.is_file()
    y, sr = read_audio(path)
    assert sr == 16000 and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1.0 / 32768 + 1e-7)


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_write_read_round_trip_float_subtype(tmp_path, ext):
    x = np.random.default_rng(7).uniform(-0.9, 0.9, 4000).astype(np.float32)
    subtype = "FLOAT" if ext == "wav" else "PCM_24"
    write_audio(tmp_path / f"x.{ext}", x, 16000, subtype=subtype)
    y, _ = read_audio(tmp_path / f"x.{ext}", sr=None)
    np.testing.assert_allclose(y, x, atol=0 if ext == "wav" else 2.0**-23)


def test_write_refuses_overwrite(tmp_path):
    path = tmp_path / "x.wav"
    write_audio(path, np.full(100, 0.5), 16000)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_audio(path, np.zeros(100), 16000)
    assert path.read_bytes() == before
    write_audio(path, np.zeros(200), 16000, overwrite=True)
    assert read_audio(path)[0].shape == (200,)


@pytest.mark.parametrize("kwargs, name, exc", [
    (dict(subtype="PCM_99"), "x.wav", ValueError),
    ({}, "x.notaformat", ValueError),
])
def test_failed_write_leaves_no_temp_file(tmp_path, kwargs, name, exc):
    with pytest.raises(exc):
        write_audio(tmp_path / name, np.zeros(100), 16000, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_file(tmp_path):
    path = tmp_path / "x.wav"
    write_audio(path, np.full(100, 0.25), 16000)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_audio(path, np.zeros(100), 16000, subtype="PCM_99", overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]


def test_write_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_audio(tmp_path / "no" / "x.wav", np.zeros(10), 16000)


def test_write_clips_with_warning(tmp_path):
    with pytest.warns(UserWarning, match="clipped"):
        write_audio(tmp_path / "x.wav", np.array([0.0, 2.0, -3.0]), 16000)
    y, _ = read_audio(tmp_path / "x.wav")
    assert np.max(np.abs(y)) <= 1.0


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no audio file"):
        read_audio(tmp_path / "missing.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    with pytest.raises(ValueError, match="cannot read"):
        read_audio(text)


def test_read_stereo_file(tmp_path):
    rng = np.random.default_rng(8)
    stereo = rng.uniform(-0.5, 0.5, (1000, 2))
    sf.write(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="downmix"):
        read_audio(tmp_path / "s.wav")
    y, _ = read_audio(tmp_path / "s.wav", downmix=True)
    np.testing.assert_allclose(y, stereo.mean(axis=1), atol=1e-6)


def test_read_resamples(tmp_path):
    x = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000) * 0.5
    sf.write(tmp_path / "x8k.wav", x, 8000, subtype="FLOAT")
    y, sr = read_audio(tmp_path / "x8k.wav", sr=16000)
    assert sr == 16000 and y.shape == (16000,)
    y, sr = read_audio(tmp_path / "x8k.wav", sr=None)
    assert sr == 8000 and y.shape == (8000,)


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("n, orig, target", [(16000, 16000, 8000), (16001, 16000, 8000), (8000, 8000, 16000),
                                             (44100, 44100, 16000)])
def test_resample_length(n, orig, target):
    y = resample(np.zeros(n, dtype=np.float32), orig, target)
    assert y.shape == (int(np.ceil(n * target / orig)),)
    assert y.dtype == np.float32


def test_resample_keeps_a_tone():
    f = 440.0
    x = np.sin(2 * np.pi * f * np.arange(16000) / 16000).astype(np.float32)
    y = resample(x, 16000, 8000)
    expected = np.sin(2 * np.pi * f * np.arange(8000) / 8000)
    np.testing.assert_allclose(y[200:-200], expected[200:-200], atol=1e-2)


def test_resample_identity_and_errors():
    x = np.ones(10, dtype=np.float32)
    assert resample(x, 16000, 16000) is x
    with pytest.raises(ValueError, match="positive"):
        resample(x, 0, 16000)


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_ratio_mask_formula_and_bounds(power):
    rng = np.random.default_rng(9)
    t = rng.uniform(0, 2, (30, 20))
    i = rng.uniform(0, 2, (30, 20))
    t[0, :5] = 0.0
    i[1, :5] = 0.0
    m = ratio_mask(t, i, power=power)
    assert m.shape == t.shape
    assert np.all((m >= 0) & (m <= 1))
    np.testing.assert_allclose(m, t**power / (t**power + i**power))
    assert np.all(m[0, :5] == 0) and np.all(m[1, :5] == 1)


def test_ratio_mask_zeros_and_negatives():
    m = ratio_mask(np.array([[0.0, -1.0, 2.0]]), np.array([[0.0, 1.0, -2.0]]))
    np.testing.assert_array_equal(m, [[0.0, 0.0, 1.0]])  # 0/0 -> 0; negatives count as zero
    assert np.all(np.isfinite(ratio_mask(np.zeros((4, 4)), np.zeros((4, 4)))))


def test_ratio_mask_keeps_float32():
    m = ratio_mask(np.ones((3, 3), np.float32), np.ones((3, 3), np.float32))
    assert m.dtype == np.float32


def test_oracle_mask_denoise_beats_mixture(real_mixture):
    mix, speech = real_mixture.mixture, real_mixture.speech
    y = oracle_mask_denoise(mix, speech)
    assert y.shape == mix.shape
    assert si_sdr(y, speech) > si_sdr(mix, speech) + 10.0


def test_oracle_mask_denoise_length_mismatch():
    with pytest.raises(ValueError, match="differ in length"):
        oracle_mask_denoise(np.zeros(2048), np.zeros(2049))


# --------------------------------------------------------------------------- the shared writer (issue 19)
# _atomic_write is private; these tests reach for it because the race and the signal it handles
# cannot be produced deterministically through the public functions.


def test_write_does_not_replace_a_file_that_appeared_meanwhile(tmp_path):
    from pse_nmf.audio._io import _atomic_write

    path = tmp_path / "o.wav"

    def write_while_another_run_finishes(tmp):
        sf.write(tmp, np.zeros(100), 16000)
        path.write_bytes(b"the other run's result")

    with pytest.raises(FileExistsError, match="appeared while"):
        _atomic_write(path, write_while_another_run_finishes)
    assert path.read_bytes() == b"the other run's result"
    assert [p.name for p in tmp_path.iterdir()] == ["o.wav"]


def test_write_with_overwrite_replaces_a_file_that_appeared_meanwhile(tmp_path):
    from pse_nmf.audio._io import _atomic_write

    path = tmp_path / "o.wav"

    def write(tmp):
        sf.write(tmp, np.full(100, 0.5), 16000)
        path.write_bytes(b"old")

    _atomic_write(path, write, overwrite=True)
    assert read_audio(path)[0].shape == (100,)
    assert [p.name for p in tmp_path.iterdir()] == ["o.wav"]


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_write_removes_its_temp_file_on_termination_signals(tmp_path, signame):
    """The signal still kills the process (in a child here, not pytest), but the temp file is gone."""
    import signal
    import subprocess
    import sys

    script = f"""
import os, signal, numpy as np, soundfile as sf
from pse_nmf.audio._io import _atomic_write
def write_then_get_killed(tmp):
    sf.write(tmp, np.zeros(1000), 16000)
    print(tmp, flush=True)
    os.kill(os.getpid(), signal.{signame})
    raise AssertionError("still alive after the signal")
_atomic_write({str(tmp_path / "o.wav")!r}, write_then_get_killed)
"""
    sig = getattr(signal, signame)
    # the child starts with the signal at its default action, as from a terminal: under nohup (or a CI
    # runner that ignores SIGHUP) it would be inherited as ignored, and the writer rightly leaves it so
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    assert proc.returncode == -sig, proc.stderr
    assert proc.stdout.strip().endswith(".wav")  # the temp file existed
    assert list(tmp_path.iterdir()) == []


def test_write_restores_the_signal_handlers(tmp_path):
    import signal

    from pse_nmf.audio._io import _atomic_write

    before = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)]
    seen = []
    _atomic_write(tmp_path / "o.wav", lambda tmp: (seen.append(signal.getsignal(signal.SIGTERM)),
                                                   sf.write(tmp, np.zeros(10), 16000)))
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)] == before
    if before[0] is signal.SIG_DFL:  # handled while writing, default again after
        assert seen[0] is not signal.SIG_DFL


def test_write_checks_the_folder_is_writable_before_the_work(tmp_path, monkeypatch):
    import tempfile

    from pse_nmf.audio._io import _atomic_write

    def read_only(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", os.path.join(dir, ".o.abc123.wav"))

    import os

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    calls = []
    with pytest.raises(PermissionError, match=r"output folder '.*' is not writable") as info:
        _atomic_write(tmp_path / "o.wav", calls.append)
    assert ".o.abc123" not in str(info.value) and calls == []


@pytest.mark.parametrize("kwargs, name, exc, message", [
    (dict(sr=0), "x.wav", ValueError, "sample rate must be a positive integer"),
    (dict(sr=16000), "x.xyz", ValueError, r"cannot write audio of type '\.xyz'"),
    (dict(sr=16000), "folder.wav", IsADirectoryError, "is a folder"),
])
def test_write_audio_bad_arguments_name_the_file_not_the_temp_file(tmp_path, kwargs, name, exc, message):
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(exc, match=message) as info:
        write_audio(tmp_path / name, np.zeros(100), **kwargs, overwrite=True)
    assert name in str(info.value) and "/." not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.wav"]


def test_read_unreadable_file_says_why(tmp_path, monkeypatch):
    """Libsndfile reports an unreadable file as "System error."; the reason and the file are named."""
    import pse_nmf.audio._io as audio_module

    path = tmp_path / "locked.wav"
    sf.write(path, np.zeros(100), 16000)

    def no_permission(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(audio_module, "open", no_permission, raising=False)  # as root, chmod cannot do it
    with pytest.raises(PermissionError, match=r"cannot open '.*locked.wav': Permission denied"):
        read_audio(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_read_file_without_read_permission(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(path, np.zeros(100), 16000)
    path.chmod(0)
    with pytest.raises(PermissionError, match="locked.wav"):
        read_audio(path)
