"""Tests of the PSE data tools: recording folders, mixing, personalization tasks.

The functions are public in :mod:`pse_nmf.datasets` (module ``pse_nmf.datasets._tasks``).
"""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pse_nmf.datasets import (
    PersonalizationTask,
    TestMixture,
    example_path,
    list_recordings,
    load_example,
    load_recordings,
    make_personalization_task,
    mix_at_snr,
)

DEV_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def snr_db(speech, noise):
    s = np.asarray(speech, dtype=np.float64)
    n = np.asarray(noise, dtype=np.float64)
    return 10.0 * np.log10(np.sum(s**2) / np.sum(n**2))


def find_window(noise, scaled):
    """Offset k and gain g with scaled == g * noise[k:k+n] (cyclically), or None."""
    n = scaled.size
    for k in range(noise.size):
        window = noise[(k + np.arange(n)) % noise.size]
        g = np.dot(window, scaled) / np.dot(window, window)
        if g > 0 and np.allclose(scaled, g * window, rtol=1e-5, atol=1e-6 * np.max(np.abs(scaled))):
            return k, g
    return None


# --------------------------------------------------------------------------- mix_at_snr


@pytest.mark.parametrize("target", [-10.0, -5.0, 0.0, 5.0, 20.0])
def test_mix_at_snr_hits_snr_synthetic(target):
    rng = np.random.RandomState(0)
    speech = rng.standard_normal(4000) * 0.1
    noise = rng.standard_normal(9000) * 0.003
    mixture, scaled = mix_at_snr(speech, noise, target, random_state=1)
    assert mixture.dtype == np.float32 and scaled.dtype == np.float32
    assert mixture.shape == scaled.shape == speech.shape
    assert abs(snr_db(speech.astype(np.float32), scaled) - target) < 1e-3
    np.testing.assert_allclose(mixture, speech + scaled.astype(np.float64), atol=1e-6)


def test_mix_at_snr_hits_snr_on_real_audio():
    data = load_example()
    speech = data.speech["so762_9604"][0]
    for noise_type, clips in data.noise.items():
        for target in (-5, 0, 5):
            mixture, scaled = mix_at_snr(speech, clips[0], target, random_state=0)
            assert abs(snr_db(speech, scaled) - target) < 1e-3, noise_type
            assert np.all(np.isfinite(mixture))


def test_mix_at_snr_cuts_a_contiguous_excerpt():
    rng = np.random.RandomState(3)
    speech = rng.standard_normal(300)
    noise = rng.standard_normal(1000)
    _, scaled = mix_at_snr(speech, noise, 0.0, random_state=0)
    found = find_window(noise, scaled)
    assert found is not None
    k, _ = found
    assert k + speech.size <= noise.size  # a cut, no wrap-around needed


def test_mix_at_snr_tiles_short_noise():
    rng = np.random.RandomState(4)
    speech = rng.standard_normal(1050)
    noise = rng.standard_normal(100)
    offsets = set()
    for seed in range(5):
        mixture, scaled = mix_at_snr(speech, noise, 3.0, random_state=seed)
        assert scaled.shape == mixture.shape == speech.shape
        np.testing.assert_allclose(scaled[100:], scaled[:-100], rtol=1e-5, atol=1e-7)  # period of the noise
        found = find_window(noise, scaled)
        assert found is not None
        offsets.add(found[0])
        assert abs(snr_db(speech.astype(np.float32), scaled) - 3.0) < 1e-3
    assert len(offsets) > 1  # the tiling starts at a random offset


def test_mix_at_snr_deterministic_per_seed_and_differs_across_seeds():
    rng = np.random.RandomState(5)
    speech = rng.standard_normal(2000)
    noise = rng.standard_normal(20000)
    a = mix_at_snr(speech, noise, 0.0, random_state=7)
    b = mix_at_snr(speech, noise, 0.0, random_state=7)
    c = mix_at_snr(speech, noise, 0.0, random_state=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_mix_at_snr_equal_lengths_uses_whole_noise():
    rng = np.random.RandomState(6)
    speech, noise = rng.standard_normal(500), rng.standard_normal(500)
    _, scaled = mix_at_snr(speech, noise, 0.0, random_state=11)
    g = np.dot(noise, scaled) / np.dot(noise, noise)
    np.testing.assert_allclose(scaled, g * noise, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "speech, noise, match",
    [
        (np.zeros(100), np.ones(200), "speech is silent"),
        (np.ones(100), np.zeros(200), "noise is silent"),
        (np.r_[np.ones(50), np.nan, np.ones(49)], np.ones(200), "NaN"),
        (np.ones(100), np.r_[np.ones(50), np.inf], "NaN or infinite"),
        (np.array([]), np.ones(200), "speech is empty"),
        (np.ones(100), np.array([]), "noise is empty"),
    ],
)
def test_mix_at_snr_errors(speech, noise, match):
    with pytest.raises(ValueError, match=match):
        mix_at_snr(speech, noise, 0.0, random_state=0)


def test_mix_at_snr_silent_excerpt_error():
    noise = np.zeros(1000)
    noise[0] = 1.0  # only the excerpt at offset 0 is non-silent
    with pytest.raises(ValueError, match="excerpt .* is silent"):
        mix_at_snr(np.ones(10), noise, 0.0, random_state=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, "5"])
def test_mix_at_snr_bad_snr(bad):
    with pytest.raises(ValueError, match="snr_db must be a finite number"):
        mix_at_snr(np.ones(10), np.ones(10), bad)


# --------------------------------------------------------------------------- folders


def _write(path, n=800, sr=16000, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    y = np.random.RandomState(seed).uniform(-0.5, 0.5, n)
    sf.write(path, y, sr, subtype="PCM_16")
    return y


def test_list_recordings_layout(tmp_path):
    _write(tmp_path / "spk_b" / "u2.flac")
    _write(tmp_path / "spk_b" / "u1.WAV")
    _write(tmp_path / "spk_a" / "x.wav")
    (tmp_path / "spk_a" / "notes.txt").write_text("not audio")
    (tmp_path / "spk_a" / ".hidden.wav").write_bytes(b"")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "README.md").write_text("loose file")
    recs = list_recordings(tmp_path)
    assert list(recs) == ["spk_a", "spk_b"]
    assert [p.name for p in recs["spk_a"]] == ["x.wav"]
    assert [p.name for p in recs["spk_b"]] == ["u1.WAV", "u2.flac"]
    assert all(isinstance(p, Path) and p.is_file() for ps in recs.values() for p in ps)


def test_list_recordings_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_recordings(tmp_path / "nowhere")


def test_list_recordings_file_instead_of_folder(tmp_path):
    f = tmp_path / "a.wav"
    _write(f)
    with pytest.raises(NotADirectoryError, match="not a folder"):
        list_recordings(f)


def test_list_recordings_no_groups(tmp_path):
    _write(tmp_path / "loose.wav")
    with pytest.raises(ValueError, match="no group subfolders"):
        list_recordings(tmp_path)


def test_list_recordings_group_without_audio(tmp_path):
    _write(tmp_path / "good" / "a.wav")
    (tmp_path / "silent_group").mkdir()
    (tmp_path / "silent_group" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="group 'silent_group' .* holds no audio"):
        list_recordings(tmp_path)


def test_load_recordings_folder_and_mapping(tmp_path):
    y = _write(tmp_path / "spk" / "a.wav", n=1600)
    from_folder = load_recordings(tmp_path)
    assert list(from_folder) == ["spk"]
    (x,) = from_folder["spk"]
    assert x.dtype == np.float32 and x.shape == (1600,)
    np.testing.assert_allclose(x, y, atol=1 / 2**15)  # 16-bit quantisation

    mapping = {"spk": [tmp_path / "spk" / "a.wav", np.array([0, 16384], dtype=np.int16)]}
    from_map = load_recordings(mapping, sr=8000)
    a, b = from_map["spk"]
    assert abs(a.size - 800) <= 1  # the path is resampled
    np.testing.assert_array_equal(b, np.array([0.0, 0.5], dtype=np.float32))  # the array is taken as is


def test_load_recordings_errors():
    with pytest.raises(TypeError, match="list of waveforms or paths"):
        load_recordings({"spk": np.ones(10)})
    with pytest.raises(ValueError, match="empty"):
        load_recordings({"spk": []})
    with pytest.raises(ValueError, match="NaN"):
        load_recordings({"spk": [np.array([0.0, np.nan])]})
    with pytest.raises(TypeError, match="folder laid out"):
        load_recordings(42)


# --------------------------------------------------------------------------- tasks


@pytest.fixture(params=["devset", "example"])
def corpus(request):
    """(speech folder, noise folder, speaker) of the real developer set, then the example data."""
    if request.param == "devset":
        if not DEV_DATA.is_dir():
            pytest.skip(f"developer set not found at {DEV_DATA}")
        return DEV_DATA / "speech", DEV_DATA / "noise", "so762_0739"
    root = load_example().root
    return root / "speech", root / "noise", "so762_9604"


def _read16(path):
    y, sr = sf.read(path, dtype="float32")
    assert sr == 16000
    return y


def test_task_enrollment_test_and_snrs(corpus):
    speech_dir, noise_dir, spk = corpus
    snrs = (-5, 0, 5)
    enroll = 20.0
    task = make_personalization_task(
        speech_dir, noise_dir, spk, enroll_seconds=enroll, snrs=snrs, n_noisy=1, random_state=0
    )
    assert isinstance(task, PersonalizationTask)
    assert task.speaker == spk and task.sr == 16000

    # Enrollment reaches enroll_seconds, and stops there (without its last utterance it would not).
    lengths = [x.size for x in task.enrollment]
    assert sum(lengths) / 16000 >= enroll
    assert (sum(lengths) - lengths[-1]) / 16000 < enroll

    files = {p.stem: p for p in (speech_dir / spk).iterdir()}
    for utt, x in zip(task.enrollment_utterances, task.enrollment):
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, _read16(files[utt]))

    test_utts = {t.utterance for t in task.test}
    assert test_utts
    roles = [set(task.enrollment_utterances), test_utts, set(task.noisy_utterances)]
    assert sum(len(r) for r in roles) == len(set().union(*roles))  # no utterance in two roles
    # The same by content: no test speech equals an enrollment utterance.
    for t in task.test:
        assert not any(t.speech.size == x.size and np.array_equal(t.speech, x) for x in task.enrollment)

    # Every test utterance at every SNR, hitting the SNR; speech is the clean file.
    per_utt = {}
    for t in task.test:
        assert isinstance(t, TestMixture)
        per_utt.setdefault(t.utterance, []).append(t.snr_db)
        assert t.mixture.dtype == t.noise.dtype == np.float32
        assert t.mixture.shape == t.speech.shape == t.noise.shape
        np.testing.assert_array_equal(t.speech, _read16(files[t.utterance]))
        assert abs(snr_db(t.speech, t.noise) - t.snr_db) < 1e-3
        np.testing.assert_allclose(t.mixture, t.speech.astype(np.float64) + t.noise, atol=1e-6)
        assert t.noise_clip in {p.stem for p in (noise_dir / t.noise_type).iterdir()}
    assert all(sorted(v) == sorted(snrs) for v in per_utt.values())
    # One noise excerpt per utterance, only its level changes across SNRs.
    for utt in per_utt:
        mixes = [t for t in task.test if t.utterance == utt]
        assert len({t.noise_clip for t in mixes}) == 1
        ref = mixes[0].noise.astype(np.float64)
        for t in mixes[1:]:
            g = np.dot(ref, t.noise) / np.dot(ref, ref)
            np.testing.assert_allclose(t.noise, g * ref, rtol=1e-4, atol=1e-6 * np.max(np.abs(t.noise)))
    # Everything not used for enrollment or noisy recordings is a test utterance.
    assert len(test_utts) == len(files) - len(task.enrollment) - 1

    assert len(task.noisy) == len(task.noisy_utterances) == 1
    (noisy,) = task.noisy
    clean = _read16(files[task.noisy_utterances[0]])
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert min(abs(snr_db(clean, noisy - clean) - s) for s in snrs) < 0.05


def test_task_deterministic_per_seed(corpus):
    speech_dir, noise_dir, spk = corpus
    kw = dict(enroll_seconds=15.0, n_test=2, n_noisy=1, snrs=(0, 5))
    a = make_personalization_task(speech_dir, noise_dir, spk, random_state=3, **kw)
    b = make_personalization_task(speech_dir, noise_dir, spk, random_state=3, **kw)
    c = make_personalization_task(speech_dir, noise_dir, spk, random_state=4, **kw)
    assert a.enrollment_utterances == b.enrollment_utterances
    assert a.noisy_utterances == b.noisy_utterances
    for x, y in zip(a.enrollment + a.noisy, b.enrollment + b.noisy):
        np.testing.assert_array_equal(x, y)
    assert len(a.test) == len(b.test) == 4
    for s, t in zip(a.test, b.test):
        key = ("utterance", "noise_type", "noise_clip", "snr_db")
        assert [getattr(s, k) for k in key] == [getattr(t, k) for k in key]
        np.testing.assert_array_equal(s.mixture, t.mixture)
        np.testing.assert_array_equal(s.noise, t.noise)
    differs = a.enrollment_utterances != c.enrollment_utterances or any(
        s.mixture.shape != t.mixture.shape or not np.array_equal(s.mixture, t.mixture) for s, t in zip(a.test, c.test)
    )
    assert differs


def test_task_n_test_and_noise_types(corpus):
    speech_dir, noise_dir, spk = corpus
    types = sorted(p.name for p in noise_dir.iterdir() if p.is_dir())[:2]
    task = make_personalization_task(
        speech_dir, noise_dir, spk, enroll_seconds=10.0, n_test=2, snrs=(-5, 0, 5, 10), noise_types=types
    )
    assert len({t.utterance for t in task.test}) == 2
    assert len(task.test) == 8
    assert {t.noise_type for t in task.test} <= set(types)
    assert task.noisy == []


def test_task_errors(corpus):
    speech_dir, noise_dir, spk = corpus
    with pytest.raises(ValueError, match=r"unknown speaker 'nobody'; known: .*so762_"):
        make_personalization_task(speech_dir, noise_dir, "nobody")
    with pytest.raises(ValueError, match="unknown noise type 'vacuum'"):
        make_personalization_task(speech_dir, noise_dir, spk, noise_types=["vacuum"])
    with pytest.raises(ValueError, match="enroll_seconds=1000"):
        make_personalization_task(speech_dir, noise_dir, spk, enroll_seconds=1000)
    n_utts = len(list((speech_dir / spk).iterdir()))
    with pytest.raises(ValueError, match=f"n_noisy={n_utts}"):
        make_personalization_task(speech_dir, noise_dir, spk, enroll_seconds=5, n_noisy=n_utts)
    with pytest.raises(ValueError, match="enroll_seconds must be a positive number"):
        make_personalization_task(speech_dir, noise_dir, spk, enroll_seconds=0)
    with pytest.raises(ValueError, match="snrs is empty"):
        make_personalization_task(speech_dir, noise_dir, spk, snrs=())


def test_task_reads_only_the_files_it_needs(monkeypatch):
    """Reaches into pse_nmf.datasets._tasks to count file reads."""
    if not DEV_DATA.is_dir():
        pytest.skip(f"developer set not found at {DEV_DATA}")
    import pse_nmf.datasets._tasks as data_module

    read = []
    real_read = data_module.read_audio

    def counting_read(path, *args, **kwargs):
        read.append(Path(path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(data_module, "read_audio", counting_read)
    spk = "so762_0739"
    task = make_personalization_task(
        DEV_DATA / "speech", DEV_DATA / "noise", spk, enroll_seconds=10, n_test=1, snrs=(0,)
    )
    speech_read = [p for p in read if p.parent.parent.name == "speech"]
    noise_read = [p for p in read if p.parent.parent.name == "noise"]
    assert {p.parent.name for p in speech_read} == {spk}
    assert len(speech_read) == len(task.enrollment) + 1  # enrollment and the one test utterance
    assert len(noise_read) == 1
    assert len(read) == len(speech_read) + len(noise_read)


def test_task_from_in_memory_mappings():
    data = load_example()
    task = make_personalization_task(
        data.speech, data.noise, "so762_9626", enroll_seconds=20, snrs=(0,), random_state=1
    )
    assert all(u.startswith("so762_9626[") for u in task.enrollment_utterances)
    for t in task.test:
        i = int(t.utterance.split("[")[1].rstrip("]"))
        np.testing.assert_array_equal(t.speech, data.speech["so762_9626"][i])
        assert abs(snr_db(t.speech, t.noise) - 0.0) < 1e-3


def test_default_task_on_example_data():
    """The shipped speakers support the default 30 s enrollment plus a test utterance."""
    root = example_path()
    for spk in sorted(p.name for p in (root / "speech").iterdir()):
        task = make_personalization_task(root / "speech", root / "noise", spk)
        assert task.enrollment_seconds >= 30.0
        assert len(task.test) >= 3
