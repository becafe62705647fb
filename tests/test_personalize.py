"""Personalization (issue 16): PseudoSE, purification, ContrastiveMixtures, SNRPredictor, distillation from the base.

Short audio (2 s recordings) and the shipped generalist as student; tiny SNR predictors.
"""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import pse_nmf  # noqa: E402
from pse_nmf.datasets import mix_at_snr  # noqa: E402
from pse_nmf.neural import (  # noqa: E402
    CompactEnhancer,
    ContrastiveMixtures,
    DistilledStudent,
    PseudoSE,
    SNRPredictor,
    pretrained,
)
from pse_nmf.neural._personal import (  # noqa: E402
    _PremixtureMixer,
    _sample_weights,
    purification_weights,
    weighted_segmental_si_sdr,
)

SR = 16000
FAST = dict(max_epochs=1, epoch_seconds=8, batch_size=2, random_state=0)


@pytest.fixture(scope="module")
def user(example):
    """(noisy recordings, 3 s of clean speech, noise) of one example speaker."""
    speech = example.speech[sorted(example.speech)[0]]
    noise = example.noise[sorted(example.noise)[0]]
    noisy = [mix_at_snr(s[:32000], noise[0], 5.0, random_state=i)[0] for i, s in enumerate(speech[:3])]
    return noisy, speech[3][:48000], noise


def _corr(a, b):
    return float(np.dot(a, b) ** 2 / (np.dot(a, a) * np.dot(b, b)))


def _mixer(snr):
    rng = np.random.RandomState(0)
    premix = [rng.standard_normal(8000).astype(np.float32) for _ in range(4)]
    noise = [rng.standard_normal(40000).astype(np.float32)]
    m = _PremixtureMixer(premix, [np.ones(8000, np.float32)] * 4, noise, 4000, (snr, snr), 0, 0.0, 1)
    m.colored_noise = 0.0
    return m


def test_contrastive_positives_share_the_utterance():
    # the added noise 60 dB below the premixture: what is left is the utterance
    x1, x2, x3, p, q, _ = next(_mixer(60.0).contrastive_batches(1, 4))
    for i in range(4):
        assert _corr(x1[i].numpy(), x2[i].numpy()) > 0.99  # positive: the same premixture segment
        assert _corr(x1[i].numpy(), x3[i].numpy()) < 0.05  # negative: another one
        assert _corr(x3[i].numpy(), q[i].numpy()) > 0.99


def test_contrastive_negatives_share_the_noise():
    # the added noise 60 dB above the premixture: what is left is the noise excerpt
    x1, x2, x3, _, _, _ = next(_mixer(-60.0).contrastive_batches(1, 4))
    for i in range(4):
        assert _corr(x1[i].numpy(), x3[i].numpy()) > 0.99  # negative: the same noise excerpt
        assert _corr(x1[i].numpy(), x2[i].numpy()) < 0.05  # positive: another excerpt


def test_purification_weights_follow_the_predicted_snr():
    snr = np.array([-30.0, -10.0, 0.0, 10.0, 30.0])
    w = purification_weights(snr)
    assert np.all(np.diff(w) > 0) and np.all((w > 0) & (w < 1))
    assert w[2] == pytest.approx(0.5)


class _RampSNR:
    """A stand-in predictor whose frame SNR rises from -20 to 30 dB over each recording."""

    sr, hop_length = SR, 128

    def predict_snr(self, x, sr=None):
        return np.linspace(-20.0, 30.0, x.size // 128 + 1)


def test_pseudo_se_uses_the_predictors_snr_as_weights(user):
    noisy, _, noise = user
    model = PseudoSE(purify=True, snr_predictor=_RampSNR(), max_epochs=0).fit(noisy, noise=noise)
    for y, w in zip(noisy, model.weights_):
        expected = _sample_weights(purification_weights(_RampSNR().predict_snr(y)), y.size, 128)
        np.testing.assert_allclose(w, expected)
        assert w[-1] > 0.99 > 0.01 > w[0]
    plain = PseudoSE(max_epochs=0).fit(noisy, noise=noise)
    assert all(np.all(w == 1) for w in plain.weights_)


def test_a_zero_weight_segment_does_not_count():
    rng = np.random.RandomState(0)
    ref = torch.from_numpy(rng.standard_normal((1, 4000)).astype(np.float32))
    est = ref + 0.1 * torch.from_numpy(rng.standard_normal((1, 4000)).astype(np.float32))
    w = torch.ones(1, 4000)
    w[:, :2000] = 0.0
    other = est.clone()
    other[:, :2000] = torch.from_numpy(rng.standard_normal((1, 2000)).astype(np.float32))
    a = weighted_segmental_si_sdr(est, ref, w, 1000)
    assert float(a) == pytest.approx(float(weighted_segmental_si_sdr(other, ref, w, 1000)), abs=1e-4)
    assert float(a) != pytest.approx(float(weighted_segmental_si_sdr(other, ref, torch.ones(1, 4000), 1000)))


def test_zero_steps_give_the_base(user):
    noisy, clean, noise = user
    base = pretrained()
    x = noisy[0]
    for model in (PseudoSE(max_epochs=0).fit(noisy, noise=noise),
                  ContrastiveMixtures(pretrain_epochs=0, max_epochs=0).fit(noisy, speech=clean, noise=noise)):
        for k, v in base.module_.state_dict().items():
            assert torch.equal(v, model.student_.module_.state_dict()[k])
        np.testing.assert_array_equal(model.denoise(x), base.denoise(x))


def test_pseudo_se_trains_saves_and_loads(user, tmp_path):
    noisy, _, noise = user
    model = PseudoSE(purify=True, snr_predictor=_RampSNR(), **FAST).fit(noisy, noise=noise)
    assert len(model.history_) == 1 and np.isfinite(model.history_[0]["score"])
    base = pretrained()
    assert any(not torch.equal(v, model.student_.module_.state_dict()[k]) for k, v in base.module_.state_dict().items())
    path = model.save(tmp_path / "me.npz")
    loaded = pse_nmf.load(path)
    assert isinstance(loaded, CompactEnhancer)
    np.testing.assert_allclose(loaded.denoise(noisy[0]), model.denoise(noisy[0]), atol=1e-6)


def test_contrastive_mixtures_runs_both_stages(user):
    noisy, clean, noise = user
    model = ContrastiveMixtures(pretrain_epochs=1, **FAST).fit(noisy, speech=clean, noise=noise)
    assert [h["stage"] for h in model.history_] == [1, 2]
    assert model.denoise(noisy[0]).shape == noisy[0].shape


def test_bad_inputs_get_clear_errors(user):
    noisy, clean, noise = user
    with pytest.raises(ValueError, match="no noisy recordings"):
        PseudoSE(max_epochs=0).fit([], noise=noise)
    with pytest.raises(ValueError, match="silent"):
        PseudoSE(max_epochs=0).fit([np.zeros(16000, np.float32)], noise=noise)
    with pytest.raises(ValueError, match="noise"):
        PseudoSE(max_epochs=0).fit(noisy)
    with pytest.raises(ValueError, match="shorter than one segment"):
        ContrastiveMixtures(max_epochs=0, speech_segment_seconds=1.0).fit(noisy, speech=clean[:8000], noise=noise)
    with pytest.raises(TypeError, match="CompactEnhancer"):
        PseudoSE(student=SNRPredictor(), max_epochs=0).fit(noisy, noise=noise)


def test_snr_predictor_learns_saves_and_loads(example, tmp_path):
    small = dict(conv_channels=8, hidden_size=8, hidden_size2=8, batch_size=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = SNRPredictor(max_epochs=3, learning_rate=1e-2, **small).fit(example.speech, example.noise)
    scores = [h["valid_loss"] for h in model.history_]
    assert scores[-1] > scores[0]  # minus the RMS error: it fell
    x = example.speech[sorted(example.speech)[0]][0]
    snr = model.predict_snr(x)
    assert snr.shape == (x.size // 128 + 1,)
    loaded = pse_nmf.load(model.save(tmp_path / "snr.npz"))
    assert isinstance(loaded, SNRPredictor)
    np.testing.assert_allclose(loaded.predict_snr(x), snr, atol=1e-5)
    with pytest.raises(TypeError, match="does not denoise"):
        loaded.denoise(x)


def test_snr_predictor_orders_clean_above_noisy(example):
    model = pretrained("snr")
    speech = example.speech[sorted(example.speech)[0]][0][:48000]
    noise = example.noise[sorted(example.noise)[0]][0]
    loud = np.median(model.predict_snr(mix_at_snr(speech, noise, 15.0, random_state=0)[0]))
    quiet = np.median(model.predict_snr(mix_at_snr(speech, noise, -5.0, random_state=0)[0]))
    assert loud > quiet + 5


def test_distillation_from_the_base_and_a_smaller_student(user):
    noisy, _, noise = user
    teacher = pretrained()
    kw = dict(max_epochs=1, batch_size=2, segment_seconds=1.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        self_distilled = DistilledStudent(None, teacher, **kw).fit(noisy, noise=noise)
        small = DistilledStudent(CompactEnhancer(conv_channels=16, hidden_size=24, hidden_size2=16), teacher,
                                 **kw).fit(noisy, noise=noise)
    assert isinstance(self_distilled.student_, CompactEnhancer)
    n_small = sum(p.numel() for p in small.student_.module_.parameters())
    assert n_small < sum(p.numel() for p in teacher.module_.parameters()) / 3
    assert small.denoise(noisy[0]).shape == noisy[0].shape


@pytest.mark.slow
def test_cli_personalize_then_denoise(user, tmp_path):
    from pse_nmf._cli import main

    noisy, _, _ = user
    folder = tmp_path / "calls"
    folder.mkdir()
    for i, y in enumerate(noisy):
        pse_nmf.audio.write_audio(folder / f"call{i}.wav", y, SR)
    model = tmp_path / "me.npz"
    assert main(["personalize", "--noisy", str(folder), "--method", "pseudo-se", "--no-purify", "--max-epochs", "1",
                 "-o", str(model), "--quiet"]) == 0
    assert isinstance(pse_nmf.load(model), CompactEnhancer)
    out = tmp_path / "clean.wav"
    assert main(["denoise", "-m", str(model), str(folder / "call0.wav"), "-o", str(out)]) == 0
    assert pse_nmf.audio.read_audio(out, sr=SR)[0].shape == noisy[0].shape
    assert main(["personalize", "--noisy", str(folder), "--speech", str(folder / "call0.wav"), "-o",
                 str(tmp_path / "x.npz")]) == 2  # --speech belongs to contrastive


@pytest.mark.slow
def test_cli_personalize_distill_teachers(user, tmp_path):
    from pse_nmf._cli import main

    pytest.importorskip("pyrnnoise")
    noisy, _, _ = user
    call = tmp_path / "calls"
    call.mkdir()
    for i, y in enumerate(noisy):
        pse_nmf.audio.write_audio(call / f"call{i}.wav", y, SR)
    weights = {}
    for teacher in ("generalist", "rnnoise"):
        model = tmp_path / f"{teacher}.npz"
        assert main(["personalize", "--noisy", str(call), "--method", "distill", "--teacher", teacher,
                     "--max-epochs", "1", "-o", str(model), "--quiet"]) == 0
        student = pse_nmf.load(model)
        assert isinstance(student, CompactEnhancer)
        weights[teacher] = np.concatenate([p.detach().numpy().ravel() for p in student.module_.parameters()])
    assert not np.allclose(weights["generalist"], weights["rnnoise"])  # the teacher is the one asked for
    # a model file as teacher: the RNNoise-distilled student teaches the next one
    assert main(["personalize", "--noisy", str(call), "--method", "distill", "--teacher",
                 str(tmp_path / "rnnoise.npz"), "--max-epochs", "1", "-o", str(tmp_path / "t.npz"), "--quiet"]) == 0
    assert main(["personalize", "--noisy", str(call), "--method", "distill", "--teacher", "nobody",
                 "-o", str(tmp_path / "y.npz")]) == 2
    assert main(["personalize", "--noisy", str(call), "--teacher", "rnnoise", "-o", str(tmp_path / "z.npz")]) == 2
    assert not (tmp_path / "y.npz").exists() and not (tmp_path / "z.npz").exists()
