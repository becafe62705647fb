"""RNNoiseEnhancer: lengths at any rate, the delay removed, a real gain, clear errors, lazy import."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pyrnnoise")

from pse_nmf import RNNoiseEnhancer, load  # noqa: E402
from pse_nmf.audio import resample  # noqa: E402
from pse_nmf.datasets import mix_at_snr  # noqa: E402
from pse_nmf.metrics import si_sdr  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def clean(example):
    """About 6 s of one example speaker's clean speech at 16 kHz."""
    speaker = sorted(example.speech)[0]
    return np.concatenate(example.speech[speaker][:2])


def _best_lag(output, reference, max_lag):
    """Lag (samples, output late when positive) maximising the cross-correlation, within +-max_lag."""
    n = reference.size

    def corr(lag):
        if lag >= 0:
            return float(np.dot(output[lag:], reference[: n - lag]))
        return float(np.dot(output[: n + lag], reference[-lag:]))

    return max(range(-max_lag, max_lag + 1), key=corr)


@pytest.mark.parametrize("sr", [8000, 16000, 48000])
def test_output_has_the_input_length(clean, sr):
    x = resample(clean, SR, sr)[: sr * 2 + 123]  # not a whole number of RNNoise frames
    out = RNNoiseEnhancer().denoise(x, sr=sr)
    assert out.shape == x.shape
    assert out.dtype == np.float32
    speech, noise = RNNoiseEnhancer(sr=sr).separate(x)
    assert speech.shape == noise.shape == x.shape
    np.testing.assert_allclose(speech + noise, x, atol=1e-6)


@pytest.mark.parametrize("sr", [16000, 48000])
def test_delay_is_removed(clean, sr):
    # RNNoise delays its output by 20 ms; on clean speech the output must line up with the input
    x = resample(clean, SR, sr)
    out = RNNoiseEnhancer().denoise(x, sr=sr)
    max_lag = sr // 25  # 40 ms: twice the delay, either side
    assert _best_lag(out, x, max_lag) == 0
    assert si_sdr(out, x) > 15.0  # clean speech passes nearly untouched once aligned


def test_denoising_a_real_mixture_improves_si_sdr(example):
    speaker = sorted(example.speech)[1]
    gains = []
    for noise_type in sorted(example.noise):
        speech = example.speech[speaker][0]
        noisy, _ = mix_at_snr(speech, example.noise[noise_type][0], 0.0, random_state=0)
        gains.append(si_sdr(RNNoiseEnhancer().denoise(noisy), speech) - si_sdr(noisy, speech))
    assert np.mean(gains) > 3.0, gains
    assert min(gains) > 0.0, gains


def test_speech_probability_follows_speech(clean):
    silence = np.zeros(SR, dtype=np.float32)
    x = np.concatenate([silence, clean[: 3 * SR]])
    prob = RNNoiseEnhancer().speech_probability(x)
    assert prob.shape == (-(-x.size * 3 // 480),)  # one value per started 10 ms frame at 48 kHz
    assert np.all((prob >= 0) & (prob <= 1))
    assert prob[:90].max() < 0.1 < prob[110:].mean()


def test_silence_and_tiny_inputs():
    model = RNNoiseEnhancer()
    np.testing.assert_array_equal(model.denoise(np.zeros(SR, dtype=np.float32)), 0)
    assert model.denoise(np.full(1, 0.1, dtype=np.float32)).shape == (1,)


def test_integer_pcm_and_full_scale_input(clean):
    # int16 PCM is scaled like the other estimators'; float input beyond full scale is not refused
    pcm = (clean * 20000).astype(np.int16)
    out = RNNoiseEnhancer().denoise(pcm)
    assert out.shape == pcm.shape and np.all(np.isfinite(out))
    loud = RNNoiseEnhancer().denoise(clean / np.abs(clean).max() * 1.5)
    assert np.all(np.isfinite(loud)) and np.abs(loud).max() > 1.0  # not clipped, not wrapped around


@pytest.mark.parametrize(
    "x, match",
    [
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN or infinite"),
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.zeros((SR, 2), dtype=np.float32), "2-channel audio.*downmix=True"),
    ],
)
def test_bad_inputs_get_the_library_errors(x, match):
    with pytest.raises(ValueError, match=match):
        RNNoiseEnhancer().denoise(x)


def test_stereo_with_downmix(clean):
    stereo = np.stack([clean, clean], axis=1)
    out = RNNoiseEnhancer().denoise(stereo, downmix=True)
    np.testing.assert_allclose(out, RNNoiseEnhancer().denoise(clean), atol=1e-6)


def test_bad_parameter():
    with pytest.raises(ValueError, match="'sr' parameter"):
        RNNoiseEnhancer(sr=0).denoise(np.zeros(100, dtype=np.float32))


def test_fit_is_a_no_op_and_the_estimator_is_fitted():
    from sklearn.base import clone
    from sklearn.utils.validation import check_is_fitted

    model = RNNoiseEnhancer(sr=8000)
    check_is_fitted(model)  # usable as a teacher without fit
    assert model.fit() is model
    assert model.fit(np.zeros(10), None) is model
    assert clone(model).get_params() == {"sr": 8000}


def test_save_and_load_round_trip(tmp_path, clean):
    path = RNNoiseEnhancer(sr=8000).save(tmp_path / "rnnoise.npz")
    loaded = load(path)
    assert isinstance(loaded, RNNoiseEnhancer)
    assert loaded.get_params() == {"sr": 8000}
    x = resample(clean, SR, 8000)
    np.testing.assert_array_equal(loaded.denoise(x), RNNoiseEnhancer(sr=8000).denoise(x))


def test_import_pse_nmf_does_not_import_pyrnnoise():
    code = (
        "import sys, pse_nmf; "
        "assert 'pyrnnoise' not in sys.modules, 'pyrnnoise imported'; "
        "pse_nmf.RNNoiseEnhancer(); "
        "assert 'pyrnnoise' not in sys.modules, 'pyrnnoise imported by the constructor'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_pyrnnoise_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrnnoise", None)  # makes `from pyrnnoise import ...` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "pse_nmf\[peers\]"'):
        RNNoiseEnhancer().denoise(np.zeros(100, dtype=np.float32))
