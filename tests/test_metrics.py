"""Quality metrics: SI-SDR against a closed form, SDR, PESQ, STOI/eSTOI, evaluate."""

import warnings

import numpy as np
import pytest
from scipy.signal import lfilter

from pse_nmf.datasets import mix_at_snr
from pse_nmf.metrics import estoi, evaluate, pesq, sdr, si_sdr, stoi

SR = 16000


def si_sdr_from_correlation(estimate, reference):
    """SI-SDR written another way: with rho the correlation coefficient of the
    mean-removed signals, the projection's energy share is rho**2, so
    SI-SDR = 10 log10(rho**2 / (1 - rho**2)).
    """
    rho = np.corrcoef(np.asarray(estimate, np.float64), np.asarray(reference, np.float64))[0, 1]
    return 10 * np.log10(rho**2 / (1 - rho**2))


@pytest.fixture(scope="module")
def utterance(example):
    """Three seconds of a real utterance (float32)."""
    speech = example.speech[sorted(example.speech)[0]][0]
    return speech[: 3 * SR]


@pytest.fixture(scope="module")
def noise(example):
    return example.noise["street_tram_bus"][0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_si_sdr_matches_closed_form(seed):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal(4000) + 0.3
    est = 0.7 * ref + rng.uniform(0.1, 1.0) * rng.standard_normal(4000) + 0.1
    assert si_sdr(est, ref) == pytest.approx(si_sdr_from_correlation(est, ref), abs=1e-9)


def test_si_sdr_scale_invariance():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(3000)
    est = ref + 0.5 * rng.standard_normal(3000)
    base = si_sdr(est, ref)
    for c in [1e-3, 0.5, 7.0, -2.0]:
        assert si_sdr(c * est, ref) == pytest.approx(base, abs=1e-9)
        assert si_sdr(est, c * ref) == pytest.approx(base, abs=1e-9)


def test_si_sdr_extremes():
    rng = np.random.default_rng(4)
    ref = rng.standard_normal(2000)
    assert si_sdr(ref, ref) > 100
    assert si_sdr(ref + 10 * rng.standard_normal(2000), ref) < 0


def test_sdr_of_filtered_copy_is_high(utterance):
    """bss_eval allows a short filter: a filtered copy scores high SDR, lower SI-SDR."""
    ref = utterance[: 2 * SR]
    est = lfilter([1.0, 0.5, 0.2], [1.0], ref)
    assert sdr(est, ref) > 30
    assert si_sdr(est, ref) < sdr(est, ref) - 10
    noisy = ref + 0.3 * np.std(ref) * np.random.default_rng(5).standard_normal(ref.size)
    assert sdr(noisy, ref) < 15


def test_pesq_identical_and_noisy(utterance, noise):
    assert pesq(utterance, utterance) > 4.0
    mixture, _ = mix_at_snr(utterance, noise, 0, random_state=0)
    degraded = pesq(mixture, utterance)
    assert 1.0 <= degraded < 3.0
    assert pesq(mixture, utterance, sr=SR, mode="nb") != degraded  # narrow band is another scale


def test_pesq_no_utterance_is_nan_with_warning(utterance):
    # A reference far below PESQ's voice-activity threshold (but not all zeros, which is refused earlier)
    ref = np.full(2 * SR, 1e-30)
    with pytest.warns(RuntimeWarning, match="no utterance"):
        value = pesq(utterance[: 2 * SR], ref)
    assert np.isnan(value)


def test_pesq_other_rates(utterance):
    import librosa

    ref8 = librosa.resample(utterance.astype(np.float64), orig_sr=SR, target_sr=8000)
    assert pesq(ref8, ref8, sr=8000) > 4.0  # narrow band by default below 16 kHz
    with pytest.raises(ValueError, match="wide-band PESQ needs 16 kHz"):
        pesq(ref8, ref8, sr=8000, mode="wb")
    with pytest.raises(ValueError, match="mode must be"):
        pesq(utterance, utterance, mode="xx")


@pytest.mark.parametrize("metric", [stoi, estoi])
def test_stoi_bounds_and_monotone_in_snr(metric, utterance, noise):
    values = []
    for snr in [-10, -5, 0, 5, 10]:
        mixture, _ = mix_at_snr(utterance, noise, snr, random_state=0)  # same excerpt, other level
        values.append(metric(mixture, utterance))
    assert all(0.0 <= v <= 1.0 for v in values)
    assert np.all(np.diff(values) > 0), values
    assert metric(utterance, utterance) == pytest.approx(1.0, abs=1e-6)


def test_evaluate_keys_and_consistency(utterance, noise):
    mixture, scaled = mix_at_snr(utterance, noise, 5, random_state=0)
    estimate = utterance + 0.3 * scaled  # a better estimate than the mixture
    metrics = ("si_sdr", "stoi", "estoi", "pesq")
    record = evaluate(estimate, utterance, mixture, metrics=metrics)
    expected_keys = set(metrics) | {f"{m}_mixture" for m in metrics} | {f"{m}_i" for m in metrics}
    assert set(record) == expected_keys
    for m in metrics:
        assert record[f"{m}_i"] == pytest.approx(record[m] - record[f"{m}_mixture"])
        assert record[f"{m}_i"] > 0
    assert record["si_sdr"] == pytest.approx(si_sdr(estimate, utterance))
    assert record["si_sdr_mixture"] == pytest.approx(si_sdr(mixture, utterance))
    assert record["stoi"] == pytest.approx(stoi(estimate, utterance))
    no_mix = evaluate(estimate, utterance, metrics=("si_sdr",))
    assert set(no_mix) == {"si_sdr"}


def test_evaluate_default_metrics(utterance):
    ref = utterance[:SR]
    est = ref + 0.01 * np.random.default_rng(6).standard_normal(ref.size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no library warning leaks out of a normal evaluation
        record = evaluate(est, ref)
    assert set(record) == {"si_sdr", "sdr", "pesq", "stoi", "estoi"}
    assert all(np.isfinite(v) for v in record.values())


def test_evaluate_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(np.ones(100), np.ones(100), metrics=("si_sdr", "mos"))


@pytest.mark.parametrize("func", [si_sdr, sdr, pesq, stoi, estoi])
def test_length_mismatch_and_silent_reference(func):
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError, match="differ in length"):
        func(rng.standard_normal(16000), rng.standard_normal(16001))
    with pytest.raises(ValueError, match="silent"):
        func(rng.standard_normal(16000), np.zeros(16000))


def test_metrics_reject_bad_waveforms():
    with pytest.raises(ValueError, match="NaN"):
        si_sdr(np.full(100, np.nan), np.ones(100))
    with pytest.raises(ValueError, match="downmix"):
        si_sdr(np.ones((100, 2)), np.ones((100, 2)))


# --------------------------------------------------------------------------- issue 19: no silent wrong scores

@pytest.mark.parametrize("func", [si_sdr, sdr])
def test_silent_estimate_scores_minus_infinity_not_zero(func, utterance):
    """A silent output holds none of the target: it must rank below any real estimate,
    not tie with an untouched 0 dB mixture (0.0 dB, as si_sdr returned before).
    """
    rng = np.random.default_rng(8)
    assert func(np.zeros(utterance.size), utterance) == -np.inf
    if func is si_sdr:  # signals are mean-removed first: a constant estimate is silent too
        assert si_sdr(np.full(utterance.size, 0.25), utterance) == -np.inf
    poor = utterance + 30 * np.std(utterance) * rng.standard_normal(utterance.size)
    assert np.isfinite(func(poor, utterance)) and func(poor, utterance) > -np.inf


@pytest.mark.parametrize("func", [stoi, estoi])
@pytest.mark.parametrize("n", [1, 1600])
def test_stoi_too_short_is_an_error_not_1e_05(func, n, utterance):
    with pytest.raises(ValueError, match="too short for STOI"):
        func(utterance[:n], utterance[:n])


def test_stoi_silent_frames_removed_leaves_too_little(utterance):
    x = np.zeros(SR)  # one second, but all but 0.1 s of it is digital silence
    x[: SR // 10] = utterance[SR : SR + SR // 10]
    with pytest.raises(ValueError, match="too short for STOI"):
        stoi(x, x)


@pytest.mark.parametrize("n", [1, 2000])
def test_pesq_too_short_is_a_clear_error(n, utterance):
    with pytest.raises(ValueError, match=r"too short for PESQ \(at least 0.25 s\)"):
        pesq(utterance[:n], utterance[:n])


def test_si_sdr_of_one_sample_is_an_error_not_nan():
    with pytest.raises(ValueError, match="constant"):
        si_sdr([0.5], [0.3])


def test_sdr_too_short_is_an_error():
    with pytest.raises(ValueError, match="too short for SDR"):
        sdr(np.ones(1), np.ones(1))


def test_evaluate_metrics_as_one_string(utterance, noise):
    mixture, _ = mix_at_snr(utterance, noise, 0.0, random_state=0)
    assert evaluate(mixture, utterance, metrics="si_sdr") == {"si_sdr": si_sdr(mixture, utterance)}
    assert list(evaluate(mixture, utterance, metrics="si_sdr,stoi")) == ["si_sdr", "stoi"]


def test_sdr_without_mir_eval_names_the_extra(utterance, monkeypatch):
    """mir_eval is the optional extra 'sdr' (issue 18 item 7): without it, sdr says how to get it."""
    import sys

    monkeypatch.setitem(sys.modules, "mir_eval", None)  # import mir_eval -> ImportError
    monkeypatch.setitem(sys.modules, "mir_eval.separation", None)
    with pytest.raises(ImportError, match=r'pip install "pse_nmf\[sdr\]"'):
        sdr(utterance[: 2 * SR], utterance[: 2 * SR])
    assert si_sdr(utterance[: 2 * SR], utterance[: 2 * SR]) > 100  # the core metrics do not need it
