"""SemiSupervisedNMF: fitting on recordings, denoising, bad inputs, real mixtures."""

import numpy as np
import pytest
import soundfile as sf
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from pse_nmf import SemiSupervisedNMF
from pse_nmf.audio import resample
from pse_nmf.datasets import make_personalization_task, mix_at_snr
from pse_nmf.metrics import si_sdr

SR = 16000
N_BINS = 513


def _small(**kwargs):
    params = dict(n_components=6, n_noise_components=3, max_iter=10, test_max_iter=10, tol=0, random_state=0,
                  min_seconds=0)  # mechanics on 2 s clips, not quality
    params.update(kwargs)
    return SemiSupervisedNMF(**params)


@pytest.fixture(scope="module")
def speech(example):
    """Two short real utterances of one example speaker."""
    utts = example.speech[sorted(example.speech)[1]]
    return [utts[0][: 2 * SR], utts[1][: 2 * SR]]


# --------------------------------------------------------------------------- fitting on recordings


def test_fit_on_one_array(speech):
    model = _small().fit(speech[0])
    assert model.components_.shape == (6, N_BINS)
    assert model.n_features_in_ == N_BINS
    assert model.components_.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(model.components_, axis=1), 1.0, rtol=1e-5)


def test_fit_on_list_paths_and_folder_agree(speech, tmp_path):
    folder = tmp_path / "enroll"
    (folder / "sub").mkdir(parents=True)
    paths = [folder / "a.flac", folder / "sub" / "b.flac"]  # the folder is searched recursively
    for p, y in zip(paths, speech):
        sf.write(p, y, SR, subtype="PCM_16")
    (folder / "notes.txt").write_text("not audio; ignored")
    from_list = _small().fit(speech)
    from_paths = _small().fit([str(p) for p in paths])
    from_folder = _small().fit(folder)
    for model in (from_list, from_paths, from_folder):
        assert model.components_.shape == (6, N_BINS)
    # files hold the same audio up to 16-bit rounding: the dictionaries agree closely
    np.testing.assert_allclose(from_paths.components_, from_list.components_, atol=1e-3)
    np.testing.assert_array_equal(from_folder.components_, from_paths.components_)


def test_fit_resamples_arrays_given_sr(speech):
    y8 = resample(speech[0], SR, 8000)
    model = _small().fit(y8, sr=8000)
    assert model.components_.shape == (6, N_BINS)


def test_fit_on_frames():
    X = np.random.default_rng(0).random((50, 20))
    model = _small().fit(X)
    assert model.components_.shape == (6, 20)
    assert model.n_features_in_ == 20
    out = model.transform(X)
    assert out.shape == X.shape and out.dtype == X.dtype
    assert np.all(out >= 0) and np.all(out <= X * (1 + 1e-6))


def test_fit_errors(tmp_path):
    with pytest.raises(ValueError, match="silent"):
        _small().fit(np.zeros(4 * SR, dtype=np.float32))
    with pytest.raises(FileNotFoundError, match="no audio file or folder"):
        _small().fit(tmp_path / "missing")
    with pytest.raises(ValueError, match="no audio files"):
        _small().fit(tmp_path)
    with pytest.raises(ValueError, match="fewer than one STFT frame"):
        _small().fit(np.ones(1000, dtype=np.float32))
    with pytest.raises(ValueError, match="all zeros"):
        _small().fit(np.zeros((10, 5)))


# --------------------------------------------------------------------------- denoise


def test_denoise_shape_dtype_finite(small_semi, real_mixture):
    y = small_semi.denoise(real_mixture.mixture)
    assert y.shape == real_mixture.mixture.shape
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y))


def test_separate_parts_sum_to_mixture(small_semi, real_mixture):
    x = real_mixture.mixture
    s, n = small_semi.separate(x)
    assert s.shape == n.shape == x.shape
    np.testing.assert_allclose(s + n, x, atol=1e-4 * np.max(np.abs(x)))


def test_denoise_deterministic(small_semi, real_mixture):
    x = real_mixture.mixture[: 3 * SR]
    np.testing.assert_array_equal(small_semi.denoise(x), small_semi.denoise(x))


@pytest.mark.parametrize("factor", [10.0, 0.1])
def test_denoise_gain_invariance(small_semi, real_mixture, factor):
    x = real_mixture.mixture[: 3 * SR]
    y = small_semi.denoise(x)
    y_scaled = small_semi.denoise(x * factor)
    np.testing.assert_allclose(y_scaled, y * factor, rtol=0, atol=1e-4 * factor * np.max(np.abs(y)))


def test_denoise_improves_si_sdr_small_model(small_semi, real_mixture):
    y = small_semi.denoise(real_mixture.mixture)
    assert si_sdr(y, real_mixture.speech) > si_sdr(real_mixture.mixture, real_mixture.speech) + 2.0


def test_denoise_other_rate(small_semi, real_mixture):
    x8 = resample(real_mixture.mixture[: 3 * SR], SR, 8000)
    y8 = small_semi.denoise(x8, sr=8000)
    assert y8.shape == x8.shape and y8.dtype == np.float32
    assert np.all(np.isfinite(y8))


def test_known_noise_mirrored_case(example):
    """Noise dictionary from one clip; speech learned on the mixture with another clip of the same noise."""
    speech = example.speech[sorted(example.speech)[2]][0]
    clips = example.noise["running_tap"]
    mixture, _ = mix_at_snr(speech, clips[1], 0, random_state=0)
    model = SemiSupervisedNMF(n_components=16, n_noise_components=16, known="noise", max_iter=50,
                              test_max_iter=50, tol=0, random_state=0).fit(clips[0])
    assert model.components_.shape == (16, N_BINS)
    y = model.denoise(mixture)
    assert y.shape == mixture.shape
    assert si_sdr(y, speech) > si_sdr(mixture, speech) + 2.0
    # the roles are really mirrored: the same model as a speech model does worse than as a noise model
    wrong = clone(model).set_params(known="speech")
    wrong.components_, wrong.n_features_in_ = model.components_, model.n_features_in_
    wrong.n_iter_, wrong.reconstruction_err_ = model.n_iter_, model.reconstruction_err_
    assert si_sdr(wrong.denoise(mixture), speech) < si_sdr(y, speech)


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_denoise_non_finite(small_semi, bad):
    x = np.zeros(SR, dtype=np.float32)
    x[100] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        small_semi.denoise(x)


def test_denoise_empty(small_semi):
    with pytest.raises(ValueError, match="empty"):
        small_semi.denoise(np.zeros(0, dtype=np.float32))


def test_denoise_shorter_than_one_frame(small_semi):
    with pytest.raises(ValueError, match="fewer than one STFT frame"):
        small_semi.denoise(np.ones(1023, dtype=np.float32))
    # exactly one frame is enough
    assert small_semi.denoise(np.random.default_rng(0).uniform(-0.1, 0.1, 1024)).shape == (1024,)


def test_denoise_silence(small_semi):
    y = small_semi.denoise(np.zeros(2 * SR, dtype=np.float32))
    assert y.shape == (2 * SR,) and y.dtype == np.float32
    assert not np.any(y)


def test_denoise_int16_equals_scaled_float(small_semi, real_mixture):
    x = real_mixture.mixture[: 2 * SR]
    pcm = np.round(np.clip(x, -1, 1 - 2**-15) * 32768).astype(np.int16)
    np.testing.assert_array_equal(small_semi.denoise(pcm), small_semi.denoise(pcm.astype(np.float64) / 32768))


@pytest.mark.parametrize("layout", ["samples_channels", "channels_samples"])
def test_denoise_stereo(small_semi, real_mixture, layout):
    x = real_mixture.mixture[: 2 * SR]
    stereo = np.stack([x, 0.5 * x], axis=1 if layout == "samples_channels" else 0)
    with pytest.raises(ValueError, match="downmix"):
        small_semi.denoise(stereo)
    y = small_semi.denoise(stereo, downmix=True)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, small_semi.denoise(0.75 * x), atol=1e-6)


def test_denoise_before_fit():
    with pytest.raises(NotFittedError):
        SemiSupervisedNMF().denoise(np.zeros(SR, dtype=np.float32))


def test_denoise_with_frame_model_of_wrong_size():
    model = _small().fit(np.random.default_rng(1).random((40, 20)))
    with pytest.raises(ValueError, match="fitted on frames of 20 bins"):
        model.denoise(np.random.default_rng(2).uniform(-0.1, 0.1, SR))


def test_transform_wrong_width(small_semi):
    with pytest.raises(ValueError, match="features"):
        small_semi.transform(np.ones((5, 20)))


def test_invalid_parameters():
    with pytest.raises(ValueError, match="known"):
        SemiSupervisedNMF(known="music").fit(np.ones((5, 4)))
    with pytest.raises(ValueError, match="hop_length"):
        SemiSupervisedNMF(n_fft=256, hop_length=512).fit(np.ones(4096, dtype=np.float32))


# --------------------------------------------------------------------------- integration on real mixtures


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_si_sdr_improvement_on_real_mixtures(audio_root):
    """One speaker, ~30 s of enrollment, 0 dB mixtures with real noises: > 3 dB SI-SDR gain on average."""
    speakers = sorted(p.name for p in (audio_root / "speech").iterdir() if p.is_dir())
    task = make_personalization_task(audio_root / "speech", audio_root / "noise", speakers[0], enroll_seconds=30,
                                     snrs=(0,), n_test=4, random_state=0)
    assert task.enrollment_seconds >= 30
    model = SemiSupervisedNMF(random_state=0).fit(task.enrollment)
    gains = [si_sdr(model.denoise(t.mixture), t.speech) - si_sdr(t.mixture, t.speech) for t in task.test]
    assert np.mean(gains) > 3.0, gains


# --------------------------------------------------------------------------- issue 19: multichannel recordings

@pytest.mark.parametrize("layout", ["list", "one_array", "one_array_channels_first"])
def test_fit_on_stereo_arrays_with_downmix_equals_fit_on_the_mono_mix(speech, layout):
    """Stereo arrays with downmix=True were taken as frames ("Negative values") or failed to
    stack ("inhomogeneous shape").
    """
    stereo = [np.stack([u, 0.5 * u], axis=1) for u in speech]
    X = {"list": stereo, "one_array": stereo[0], "one_array_channels_first": stereo[0].T}[layout]
    mono = [u.mean(axis=1) for u in stereo] if layout == "list" else stereo[0].mean(axis=1)
    got = _small().fit(X, downmix=True).components_
    np.testing.assert_array_equal(got, _small().fit(mono).components_)


def test_fit_on_a_list_of_stereo_arrays_without_downmix_says_so(speech):
    with pytest.raises(ValueError, match=r"recordings\[0\] is 2-channel audio.*downmix=True"):
        _small().fit([np.stack([u, u], axis=1) for u in speech])


# --------------------------------------------------------------------------- issue 19: too little enrollment speech

def test_fit_refuses_too_little_speech(example):
    """0.5 s of speech gave a model worse than the noisy input (SI-SDR -2 to -5 dB), with only a
    ConvergenceWarning; the CLI wrote it and reported success.
    """
    utterance = example.speech[sorted(example.speech)[0]][0]
    with pytest.raises(ValueError, match=r"0\.5 s of speech recordings.*at least 3\.0 s.*min_seconds=0"):
        SemiSupervisedNMF(random_state=0).fit(utterance[: SR // 2])


def test_fit_warns_in_the_grey_zone_and_min_seconds_opts_out(example):
    utterance = example.speech[sorted(example.speech)[0]][0]
    with pytest.warns(UserWarning, match=r"only 1\.0 s of speech.*10 s"):
        _small(min_seconds=0).fit(utterance[:SR])
    assert utterance.size >= 4 * SR
    with pytest.warns(UserWarning, match="only 4.0 s"):
        _small().fit(utterance[: 4 * SR])


def test_fit_on_frames_has_no_duration_minimum():
    frames = np.random.default_rng(0).random((5, N_BINS))
    _small().fit(frames)  # scikit-learn use: frames carry no duration, nothing is refused


# --------------------------------------------------------------------------- issue 19, item 8: long inputs
# The piece lengths are private module constants (pse_nmf.audio._mixin); the tests shrink them so that a
# 30 s real recording counts as long, instead of enhancing 10 minutes.

@pytest.fixture
def short_pieces(monkeypatch):
    import pse_nmf.audio._mixin as spectral

    monkeypatch.setattr(spectral, "_LONG_SECONDS", 8.0)
    monkeypatch.setattr(spectral, "_CHUNK_SECONDS", 6.0)
    monkeypatch.setattr(spectral, "_OVERLAP_SECONDS", 1.0)


@pytest.fixture(scope="module")
def long_mixture(example):
    speaker = sorted(example.speech)[0]
    speech = np.concatenate(example.speech[speaker][1:5])  # ~27 s
    noise = np.resize(example.noise["running_tap"][0], speech.size)
    return mix_at_snr(speech, noise, 0.0, random_state=0)[0], speech


def test_long_input_in_pieces_matches_the_whole_signal(small_semi, long_mixture, monkeypatch):
    import pse_nmf.audio._mixin as spectral

    mixture, speech = long_mixture
    whole = small_semi.denoise(mixture)  # ~27 s: enhanced whole
    monkeypatch.setattr(spectral, "_LONG_SECONDS", 8.0)
    monkeypatch.setattr(spectral, "_CHUNK_SECONDS", 6.0)
    monkeypatch.setattr(spectral, "_OVERLAP_SECONDS", 1.0)
    pieced = small_semi.denoise(mixture)  # now in 5 pieces
    assert pieced.shape == mixture.shape and pieced.dtype == np.float32
    # pieces learn their own noise atoms, so samples differ; the enhancement is the same within 0.5 dB
    assert abs(si_sdr(pieced, speech) - si_sdr(whole, speech)) < 0.5
    assert si_sdr(pieced, whole) > 15.0
    speech_part, noise_part = small_semi.separate(mixture)
    np.testing.assert_array_equal(speech_part, pieced)
    np.testing.assert_allclose(speech_part + noise_part, mixture, atol=1e-4)


def test_long_input_memory_does_not_grow_with_the_length(small_semi, long_mixture, short_pieces):
    """The whole-signal working set was ~1.8 MB per second (1.3 GB for 10 minutes)."""
    import tracemalloc

    mixture = long_mixture[0]

    def peak(x):
        tracemalloc.start()
        try:
            small_semi.denoise(x)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    x_short, x_long = mixture[: 12 * SR], np.tile(mixture, 2)  # 12 s (2 pieces) and ~54 s (9 pieces)
    short, long = peak(x_short), peak(x_long)
    # what grows with the length are a few float32 copies of the input and output (4 bytes a sample
    # each; 16 bytes allowed); the working set of a piece must not grow
    assert long - short < 0.25 * short + 16 * (x_long.size - x_short.size)
