"""SpeakerExtractor (issue 16, item 5): target speaker extraction as personalized enhancement.

Tiny extractors on the example data for the mechanics; the shipped ``pretrained("extractor")`` on real
developer-set mixtures (target + another speaker + noise) for its behaviour.
"""

import json
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pse_nmf  # noqa: E402
from pse_nmf import ModelFileError  # noqa: E402
from pse_nmf.neural import CompactEnhancer, SpeakerExtractor, complexity, pretrained, pretrained_models  # noqa: E402
from pse_nmf.neural._extraction import ExtractionMixer  # noqa: E402  (the mixer is internal)

SR = 16000
TINY = dict(conv_channels=8, hidden_size=16, hidden_size2=8, embed_dim=8, branch_hidden=4, max_epochs=1, batch_size=4,
            segment_seconds=1.0, enroll_seconds=1.0, random_state=0)


@pytest.fixture(scope="module")
def tiny(example):
    model = SpeakerExtractor(**TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch: a ConvergenceWarning
        model.fit(example.speech, example.noise)
    return model


@pytest.fixture(scope="module")
def speaker(example):
    return example.speech[sorted(example.speech)[0]]


def _unfitted_from(base, branch_hidden=0):
    model = SpeakerExtractor(branch_hidden=branch_hidden, random_state=0)
    model.module_ = model._new_module(base.n_features_in_, 0)
    model.n_features_in_ = base.n_features_in_
    model._init_from(base)
    return model


# -- the network --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("branch_hidden", [0, 16])
def test_untrained_film_from_a_generalist_is_that_generalist(speaker, branch_hidden):
    """FiLM layers (and the branch's output layer) start at zero: before training, an extractor started from
    the generalist gives its output, whatever the enrollment."""
    generalist = pretrained("generalist")
    model = _unfitted_from(generalist, branch_hidden).enroll(speaker[1])
    x = speaker[0]
    np.testing.assert_array_equal(model.denoise(x), generalist.denoise(x))


def test_init_refuses_another_layout(tiny):
    model = SpeakerExtractor(hidden_size=32)
    model.module_ = model._new_module(257, 0)
    with pytest.raises(ValueError, match="hidden_size=96 here 32"):
        model._init_from(pretrained("generalist"))
    with pytest.raises(TypeError, match="fitted CompactEnhancer"):
        model._init_from(tiny)


def test_streaming_equals_the_whole_sequence(tiny, speaker):
    V = np.abs(pse_nmf.audio.stft(speaker[0][:16000], n_fft=512, hop_length=128)).astype(np.float32)
    tiny.enroll(speaker[1])
    whole = tiny.predict_mask(V)
    streamed = np.stack(list(tiny.stream_masks(V)))
    np.testing.assert_allclose(streamed, whole, atol=1e-5)


def test_the_enrollment_changes_the_output(tiny, example):
    a, b = (example.speech[k] for k in sorted(example.speech)[:2])
    x = a[0]
    ya = tiny.enroll(a[1]).denoise(x)
    yb = tiny.enroll(b[1]).denoise(x)
    assert not np.allclose(ya, yb)


def test_the_mask_costs_the_generalists_macs(tiny):
    generalist = pretrained("generalist")
    model = _unfitted_from(generalist)
    assert complexity(model)["macs_per_second"] == complexity(generalist)["macs_per_second"]
    assert complexity(model)["parameters"] > complexity(generalist)["parameters"]  # the encoder and FiLM layers


def test_enrollment_embedding_is_unit_and_length_weighted(tiny, speaker):
    e1 = tiny.enroll(speaker[1]).enrollment_.copy()
    e2 = tiny.enroll(speaker[2]).enrollment_.copy()
    both = tiny.enroll([speaker[1], speaker[2]])
    assert np.linalg.norm(both.enrollment_) == pytest.approx(1.0, abs=1e-5)
    n1, n2 = speaker[1].size, speaker[2].size
    expected = n1 * e1.astype(np.float64) + n2 * e2
    np.testing.assert_allclose(both.enrollment_, expected / np.linalg.norm(expected), atol=1e-5)
    assert both.enrollment_seconds_ == pytest.approx((n1 + n2) / SR)


# -- the mixtures -------------------------------------------------------------------------------------------
def _tone_speakers():
    """Two speakers of two utterances each; every utterance a tone of its own frequency (bin-centred)."""
    t = np.arange(24000) / SR
    freqs = {"a": [500.0, 1000.0], "b": [2000.0, 3000.0]}
    speakers = {g: [np.sin(2 * np.pi * f * t).astype(np.float32) for f in fs] for g, fs in freqs.items()}
    return speakers, freqs


def _peak_hz(y):
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return np.fft.rfftfreq(y.size, 1 / SR)[int(np.argmax(spec))]


def test_mixer_enrolls_another_utterance_of_the_target_and_adds_another_speaker():
    speakers, freqs = _tone_speakers()
    noise = [np.random.RandomState(0).standard_normal(48000).astype(np.float32)]
    mixer = ExtractionMixer(speakers, noise, 8000, 8000, (0.0, 0.0), seed=0, talker_share=1.0, sir_range=(0.0, 0.0),
                            snr_with_talker=(20.0, 20.0))
    mixer.colored_noise = 0.0
    owner_of = {f: g for g, fs in freqs.items() for f in fs}
    rng = np.random.RandomState(1)
    for j in range(len(mixer.speech)):
        for _ in range(3):
            x, s, e = mixer.extraction_example(j, rng)
            target_f = _peak_hz(s)
            enroll_f = _peak_hz(e)
            talker_f = _peak_hz(x - s)
            assert owner_of[round(enroll_f, -2)] == owner_of[round(target_f, -2)]  # the same speaker...
            assert round(enroll_f, -2) != round(target_f, -2)  # ...another utterance
            assert owner_of[round(talker_f, -2)] != owner_of[round(target_f, -2)]  # the talker: another speaker


def test_mixer_needs_two_speakers():
    speakers, _ = _tone_speakers()
    with pytest.raises(ValueError, match="at least 2 speakers"):
        ExtractionMixer({"a": speakers["a"]}, [np.ones(100, np.float32)], 8000, 8000, (0.0, 0.0), seed=0)


# -- errors ---------------------------------------------------------------------------------------------------
def test_denoise_without_enrollment_is_refused(example, speaker):
    model = SpeakerExtractor(**TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(example.speech, example.noise)
    with pytest.raises(ValueError, match="no enrolled speaker: call enroll"):
        model.denoise(speaker[0])


def test_fit_needs_two_speakers(example, speaker):
    with pytest.raises(ValueError, match="at least 2 speakers"):
        SpeakerExtractor(**{**TINY, "validation_fraction": 0.0}).fit({"only": speaker}, example.noise)


def test_silent_enrollment_is_refused(tiny):
    with pytest.raises(ValueError, match="empty or silent"):
        tiny.enroll(np.zeros(SR, np.float32))


# -- persistence ----------------------------------------------------------------------------------------------
def test_save_load_keeps_the_enrollment(tiny, speaker, tmp_path):
    tiny.enroll(speaker[1])
    tiny.save(tmp_path / "me.npz")
    loaded = pse_nmf.load(tmp_path / "me.npz")
    assert type(loaded) is SpeakerExtractor
    np.testing.assert_array_equal(loaded.enrollment_, tiny.enrollment_)
    assert loaded.enrollment_seconds_ == pytest.approx(tiny.enrollment_seconds_)
    np.testing.assert_array_equal(loaded.denoise(speaker[0]), tiny.denoise(speaker[0]))


def test_damaged_enrollment_is_refused_on_load(tiny, speaker, tmp_path):
    tiny.enroll(speaker[1])
    tiny.save(tmp_path / "me.npz")
    with np.load(tmp_path / "me.npz") as f:
        arrays = dict(f)
    for bad, match in ((np.zeros(3, np.float32), "expected"), (np.full(8, 7.0, np.float32), "not a unit"),
                       (np.full(8, np.nan, np.float32), "finite")):
        np.savez(tmp_path / "bad.npz", **{**arrays, "enrollment:embedding": bad})
        with pytest.raises(ModelFileError, match=match):
            pse_nmf.load(tmp_path / "bad.npz")


# -- the shipped extractor on real mixtures ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def talker_mixture(dev_data):
    """Two developer-set speakers of opposite gender (held out from training), at 0 dB, plus noise at 5 dB."""
    from pse_nmf.audio import read_audio
    from pse_nmf.datasets import list_recordings, mix_at_snr

    speech = list_recordings(dev_data / "speech")
    noise = list_recordings(dev_data / "noise")
    a, b = "so762_2897", "so762_2538"  # two of the benchmark's held-out targets
    s = read_audio(speech[a][-1])[0]
    t = read_audio(speech[b][-1])[0]
    t = np.resize(t, s.size) * np.float32(np.sqrt(np.mean(s**2) / np.mean(np.resize(t, s.size) ** 2)))
    n = read_audio(noise["rain"][1])[0]
    x, _ = mix_at_snr(s + t, n, 5.0 + 3.0, random_state=0)  # noise ~5 dB below the target alone
    enroll_a = np.concatenate([read_audio(p)[0] for p in speech[a][:3]])
    enroll_b = np.concatenate([read_audio(p)[0] for p in speech[b][:3]])
    return x, s, t, enroll_a, enroll_b


def test_shipped_extractor_follows_the_enrolled_voice(talker_mixture):
    x, s, t, enroll_a, enroll_b = talker_mixture
    si = pse_nmf.metrics.si_sdr
    model = pretrained("extractor")
    ya = model.enroll(enroll_a).denoise(x)
    yb = model.enroll(enroll_b).denoise(x)
    generalist = pretrained("generalist").denoise(x)
    # enrolled with the target, it is closer to the target than the generalist (which keeps both voices) ...
    assert si(ya, s) > si(generalist, s) + 1.0
    # ... and the enrollment picks the voice: enrolled with the other speaker, it keeps that one instead
    assert si(ya, s) > si(yb, s) + 3.0
    assert si(yb, t) > si(ya, t) + 3.0


def test_shipped_extractor_card_matches_the_file():
    from pse_nmf.neural._pretrained import _sha256, pretrained_path

    card = pretrained_models()["extractor"]
    assert _sha256(pretrained_path("extractor")) == card["sha256"]
    model = pretrained("extractor")
    assert type(model).__name__ == card["estimator"] == "SpeakerExtractor"
    assert model.enrollment_ is None  # shipped without a speaker
    c = complexity(model)
    assert c["parameters"] == card["parameters"]
    assert c["macs_per_second"] == pytest.approx(card["macs_per_second"])
    assert json.loads(json.dumps(model.get_params(), default=list)) == {**card["params"], "warm_start": True}
    assert "benchmarks/train_extractor.py" in card["training_command"]


def test_generalist_is_a_compact_enhancer_and_not_an_extractor():
    # the CLI tells extractors by their enroll method: the generalist must not have one
    assert not hasattr(CompactEnhancer(), "enroll")


# -- command line ---------------------------------------------------------------------------------------------
def test_cli_extract_then_denoise(talker_mixture, tmp_path, capsys):
    from pse_nmf._cli import main

    x, s, _, enroll_a, _ = talker_mixture
    pse_nmf.audio.write_audio(tmp_path / "me.wav", enroll_a, SR)
    pse_nmf.audio.write_audio(tmp_path / "call.wav", x, SR)
    model = tmp_path / "me.npz"
    assert main(["personalize", "--method", "extract", "--speech", str(tmp_path / "me.wav"), "-o", str(model)]) == 0
    loaded = pse_nmf.load(model)
    assert isinstance(loaded, SpeakerExtractor) and loaded.enrollment_ is not None
    assert main(["denoise", "-m", str(model), str(tmp_path / "call.wav"), "-o", str(tmp_path / "a.wav")]) == 0
    # the pretrained extractor enrolled on the fly gives the same output as the enrolled model file
    assert main(["denoise", "-m", "extractor", "--enroll", str(tmp_path / "me.wav"), str(tmp_path / "call.wav"),
                 "-o", str(tmp_path / "b.wav")]) == 0
    a = pse_nmf.audio.read_audio(tmp_path / "a.wav", sr=SR)[0]
    b = pse_nmf.audio.read_audio(tmp_path / "b.wav", sr=SR)[0]
    np.testing.assert_array_equal(a, b)
    assert pse_nmf.metrics.si_sdr(a, s) > pse_nmf.metrics.si_sdr(x, s)


@pytest.mark.parametrize("argv, message", [
    (["denoise", "-m", "extractor", "CALL"], "no enrolled speaker: pass --enroll"),
    (["denoise", "-m", "generalist", "--enroll", "ME", "CALL"], "--enroll is for a speaker extractor"),
    (["personalize", "--method", "extract", "-o", "OUT"], "--method extract needs --speech"),
    (["personalize", "--method", "extract", "--speech", "ME", "--noisy", "CALL", "-o", "OUT"], "--noisy is not used"),
    (["personalize", "--method", "pseudo-se", "-o", "OUT"], "--method pseudo-se needs --noisy"),
])
def test_cli_extraction_usage_errors(argv, message, tmp_path, capsys, example):
    from pse_nmf._cli import main

    speech = example.speech[sorted(example.speech)[0]]
    pse_nmf.audio.write_audio(tmp_path / "me.wav", speech[1], SR)
    pse_nmf.audio.write_audio(tmp_path / "call.wav", speech[0], SR)
    paths = {"ME": str(tmp_path / "me.wav"), "CALL": str(tmp_path / "call.wav"), "OUT": str(tmp_path / "out.npz")}
    assert main([paths.get(a, a) for a in argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.npz").exists() and not (tmp_path / "call_enhanced.wav").exists()
