"""Test-time model selection (issue 15): SparseMixtureOfExperts, AutoencoderSelector."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pse_nmf  # noqa: E402
from pse_nmf.datasets import load_example  # noqa: E402
from pse_nmf.neural import AutoencoderSelector, CompactEnhancer, SparseMixtureOfExperts, complexity  # noqa: E402
from pse_nmf.neural._experts import run_expert  # noqa: E402

TINY = dict(hidden_size=8, hidden_size2=8, conv_channels=8)


def _untrained(seed, **kw):
    """A CompactEnhancer with fresh (untrained) weights, set up as fitted: enough for the routing tests."""
    est = CompactEnhancer(random_state=seed, **{**TINY, **kw})
    n_bins = est._n_bins()
    est.module_ = est._new_module(n_bins, seed)
    est.n_features_in_ = n_bins
    est.n_epochs_, est.best_epoch_, est.best_loss_, est.history_ = 0, 0, float("nan"), []
    return est


@pytest.fixture(scope="module")
def data():
    return load_example()


@pytest.fixture(scope="module")
def noisy(data):
    spk = sorted(data.speech)[0]
    noise = data.noise[sorted(data.noise)[0]][0]
    x, _ = pse_nmf.datasets.mix_at_snr(data.speech[spk][-1], noise, 0.0, random_state=0)
    return x.astype(np.float32)


def _moe(**kw):
    experts = [(f"e{k}", _untrained(k, snr_range=r)) for k, r in enumerate([(-5.0, 5.0), (5.0, 15.0)])]
    return SparseMixtureOfExperts(experts, gate_epochs=0, joint_epochs=0, random_state=0, **kw)


@pytest.fixture(scope="module")
def routed(data):
    return _moe(segment_seconds=0.5).fit(data.speech, data.noise)


def _force(moe, k):
    """Make the gate prefer expert ``k`` everywhere (a huge bias on its logit)."""
    with torch.no_grad():
        moe.module_.gate.out.bias.zero_()
        moe.module_.gate.out.bias[k] = 1e3


def test_hard_choice_is_the_chosen_specialist_alone(routed, noisy):
    for k in (0, 1):
        _force(routed, k)
        assert set(routed.choose(noisy)) == {f"e{k}"}
        alone = routed.experts[k][1].denoise(noisy)
        np.testing.assert_allclose(routed.denoise(noisy), alone, atol=1e-6)


def test_one_segment_is_the_gate_choice_alone(data, noisy):
    moe = _moe(segment_seconds=None).fit(data.speech, data.noise)
    (name,) = moe.choose(noisy)
    np.testing.assert_allclose(moe.denoise(noisy), dict(moe.experts)[name].denoise(noisy), atol=1e-6)


def test_switching_specialists_hands_the_state_over(routed, noisy):
    """Choices (0, 1, 0, ...): the first segment is expert 0's own output; the second is expert 1 continuing
    from expert 0's GRU states, not from zeros."""
    module = routed.module_
    mag = torch.abs(torch.stft(torch.from_numpy(noisy)[None], 512, 128, window=torch.hann_window(512),
                               center=True, pad_mode="constant", return_complex=True)).transpose(1, 2)
    f = module.features(mag)
    seg = module.seg_frames
    n_seg = int(np.ceil(f.shape[1] / seg))
    choice = torch.tensor([[k % 2 for k in range(n_seg)]])
    with torch.no_grad():
        hard = module.hard_masks(f, choice, seg)
        m0, state = run_expert(module.experts[0], f, 0, seg)
        m1, _ = run_expert(module.experts[1], f, seg, 2 * seg, state)
        cold, _ = run_expert(module.experts[1], f, seg, 2 * seg)
    np.testing.assert_allclose(hard[:, :seg].numpy(), m0.numpy(), atol=1e-6)
    np.testing.assert_allclose(hard[:, seg : 2 * seg].numpy(), m1.numpy(), atol=1e-6)
    assert not np.allclose(hard[:, seg : 2 * seg].numpy(), cold.numpy(), atol=1e-4)


def test_cost_is_one_specialist_plus_the_gate():
    experts = [(f"e{k}", _untrained(k, hidden_size=96, hidden_size2=64, conv_channels=64)) for k in range(3)]
    moe = SparseMixtureOfExperts(experts, gate_epochs=0, joint_epochs=0)
    moe.n_features_in_, moe.n_experts_ = experts[0][1].n_features_in_, 3
    moe.module_ = moe._build(moe._members())
    one = complexity(experts[0][1])
    c = complexity(moe)
    gate = complexity(moe.module_.gate, sr=16000, hop_length=128)
    assert c["macs_per_frame"] == one["macs_per_frame"] + gate["macs_per_frame"]
    assert c["parameters"] == 3 * one["parameters"] + gate["parameters"]
    assert c["macs_per_second"] <= 1.2 * one["macs_per_second"]


@pytest.mark.slow
def test_stages_train_and_annealing_reaches_a_one_hot_gate(data, noisy, tmp_path):
    experts = [(f"e{k}", _untrained(k, snr_range=r)) for k, r in enumerate([(-5.0, 5.0), (5.0, 15.0)])]
    moe = SparseMixtureOfExperts(experts, gate_epochs=1, joint_epochs=3, batch_size=8, temperature_start=1.0,
                                 temperature_end=1e-3, segment_seconds=0.5, random_state=0)
    before = {k: v.clone() for k, v in moe.experts[0][1].module_.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moe.fit(data.speech, data.noise, checkpoint=tmp_path / "moe.npz")
    assert [h["stage"] for h in moe.history_] == ["gate"] + ["joint"] * 3
    temps = [moe._temperature(e) for e in (1, 2, 3)]
    assert temps[0] == pytest.approx(1.0) and temps[-1] == pytest.approx(1e-3) and temps[0] > temps[1] > temps[2]
    assert moe.module_.temperature == pytest.approx(1e-3)
    mag = torch.abs(torch.stft(torch.from_numpy(noisy)[None], 512, 128, window=torch.hann_window(512), center=True,
                               pad_mode="constant", return_complex=True)).transpose(1, 2)
    with torch.no_grad():
        f = moe.module_.features(mag)
        w = moe.module_.weights(moe.module_.gate.segment_logits(f, moe.module_.seg_frames))
    top = w.max(dim=-1).values.ravel().numpy()
    # (nearly) one-hot: a segment whose two logits nearly tie keeps some weight on both
    assert np.median(top) > 0.999 and top.mean() > 0.98
    after = moe.experts[0][1].module_.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the joint stage trained the specialists
    assert (tmp_path / "moe.gate.npz").exists() and (tmp_path / "moe.joint.npz").exists()


def test_gate_labels_are_the_snr_bands(routed):
    members = routed._members()
    rng = np.random.RandomState(0)
    s = torch.from_numpy(rng.standard_normal((3, 4000)).astype(np.float32))
    n = torch.from_numpy(rng.standard_normal((3, 4000)).astype(np.float32))
    snrs = torch.tensor([-3.0, 4.9, 12.0])
    x = s + n * (10 ** (-snrs / 20))[:, None] * torch.sqrt((s ** 2).mean(-1) / (n ** 2).mean(-1))[:, None]
    labels = routed._labels(routed.module_, x, s, None, members, members[0][1])
    assert labels.tolist() == [0, 0, 1]


def test_save_load_round_trip(routed, noisy, tmp_path):
    _force(routed, 1)
    path = routed.save(tmp_path / "moe.npz")
    loaded = pse_nmf.load(path)
    assert isinstance(loaded, SparseMixtureOfExperts)
    assert loaded.choose(noisy) == routed.choose(noisy)
    np.testing.assert_array_equal(loaded.denoise(noisy), routed.denoise(noisy))


def test_bad_experts_get_clear_errors(data):
    with pytest.raises(ValueError, match="non-empty list"):
        SparseMixtureOfExperts([]).fit(data.speech, data.noise)
    other_rate = [("a", _untrained(0)), ("b", _untrained(1, sr=8000))]
    with pytest.raises(ValueError, match="differs from 'a' in sr"):
        SparseMixtureOfExperts(other_rate).fit(data.speech, data.noise)
    with pytest.raises(TypeError, match="must be CompactEnhancer"):
        SparseMixtureOfExperts([("a", _untrained(0)), ("b", pse_nmf.SemiSupervisedNMF())]).fit(data.speech, data.noise)
    with pytest.raises(ValueError, match="not fitted"):
        SparseMixtureOfExperts([("a", CompactEnhancer(**TINY))], partition="gender").fit(data.speech, data.noise)
    with pytest.raises(ValueError, match="needs embedding"):
        SparseMixtureOfExperts([("a", _untrained(0))], partition="speaker").fit(data.speech, data.noise)


def test_init_stores_params_only():
    experts = [("a", CompactEnhancer())]
    moe = SparseMixtureOfExperts(experts, segment_seconds=2.0)
    assert moe.experts is experts and moe.get_params(deep=False)["segment_seconds"] == 2.0
    assert not hasattr(moe, "module_")


# -- AutoencoderSelector -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def personal(data):
    spk = sorted(data.speech)[0]
    return pse_nmf.SemiSupervisedNMF(random_state=0).fit(data.speech[spk][:-1])


class _Passthrough:
    """A candidate that returns the input unchanged (the noisiest possible output)."""

    def denoise(self, x, sr=None):
        return np.asarray(x, dtype=np.float32)


def test_selector_prefers_clean_speech_to_noise(data, personal):
    spk = sorted(data.speech)[0]
    clean = data.speech[spk][-1]
    noise = data.noise[sorted(data.noise)[0]][0]
    x, _ = pse_nmf.datasets.mix_at_snr(clean, noise, -5.0, random_state=0)
    sel = AutoencoderSelector([("noisy", _Passthrough())], scorer=personal).fit()
    scores = sel.score_outputs({"clean": clean, "noisy": x, "noise": noise[: clean.size]}, 16000)
    assert scores["clean"] < scores["noisy"] < scores["noise"]


def test_selector_returns_the_best_scored_candidate(personal, noisy, tmp_path):
    sel = AutoencoderSelector([("ssnmf", personal), ("noisy", pse_nmf.EnsembleEnhancer([("a", personal)]).fit())],
                              scorer=personal).fit()
    y = sel.denoise(noisy)
    best = min(sel.last_scores_, key=sel.last_scores_.get)
    np.testing.assert_array_equal(y, dict(sel.candidates)[best].denoise(noisy))
    loaded = pse_nmf.load(sel.save(tmp_path / "sel.npz"))
    np.testing.assert_array_equal(loaded.denoise(noisy), y)


def test_selector_bad_inputs(personal):
    with pytest.raises(ValueError, match="non-empty list"):
        AutoencoderSelector([], scorer=personal).fit()
    with pytest.raises(ValueError, match="scorer must be a fitted speech model"):
        AutoencoderSelector([("a", personal)], scorer=None).fit()
    with pytest.raises(ValueError, match="unique"):
        AutoencoderSelector([("a", personal), ("a", personal)], scorer=personal).fit()


# -- SpeakerEmbedding --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_siamese_embedding_separates_speakers_on_noisy_pairs(data, tmp_path):
    """Trained on noisy pairs of the example speakers' other utterances, the embedding ranks same-speaker pairs
    of held-out noisy utterances above different-speaker pairs. Measured with these settings (seeds 0, 1, 2):
    pair AUC 0.90, 0.85, 0.78; the untrained network 0.53, 0.46, 0.52 (chance is 0.5). Threshold 0.7."""
    from pse_nmf.neural import SpeakerEmbedding
    from pse_nmf.neural._speaker import pair_auc

    train = {s: u[:-2] for s, u in data.speech.items()}
    noise = [c for k in sorted(data.noise) for c in data.noise[k]]
    rng = np.random.RandomState(0)
    test, labels = [], []
    for i, s in enumerate(sorted(data.speech)):
        for u in data.speech[s][-2:]:
            for snr in (0.0, 5.0):
                x, _ = pse_nmf.datasets.mix_at_snr(u, noise[rng.randint(len(noise))], snr, random_state=rng)
                test.append(x)
                labels.append(i)
    emb = SpeakerEmbedding(channels=32, hidden_size=32, dim=16, speakers_per_batch=4, batches_per_epoch=10,
                           learning_rate=1e-2, max_epochs=8, validation_fraction=0, random_state=0).fit(train, noise)
    assert pair_auc(emb.transform(test), labels) > 0.7
    groups = emb.cluster_speakers(train, 2)
    assert sorted(set(groups.values())) == [0, 1] and set(groups) == set(train)
    loaded = pse_nmf.load(emb.save(tmp_path / "emb.npz"))
    np.testing.assert_array_equal(loaded.transform(test[:2]), emb.transform(test[:2]))
    np.testing.assert_array_equal(loaded.predict_group(test), emb.predict_group(test))
    # the speaker partition: the gate is the nearest centroid, and the choice is that group's specialist
    experts = [(f"g{k}", _untrained(k)) for k in range(2)]
    moe = SparseMixtureOfExperts(experts, partition="speaker", embedding=emb, segment_seconds=None)
    moe.fit(data.speech, data.noise)
    for x in test[:4]:
        (name,) = moe.choose(x)
        assert name == f"g{int(emb.predict_group([x])[0])}"
    with pytest.raises(ValueError, match="2 speaker groups, but there are 3 experts"):
        SparseMixtureOfExperts(experts + [("g2", _untrained(2))], partition="speaker", embedding=emb).fit(
            data.speech, data.noise)


def test_embedding_bad_inputs(data):
    from pse_nmf.neural import SpeakerEmbedding

    one = {sorted(data.speech)[0]: data.speech[sorted(data.speech)[0]]}
    with pytest.raises(ValueError, match="at least 2 speakers"):
        SpeakerEmbedding(max_epochs=1).fit(one, data.noise)
    emb = SpeakerEmbedding()
    with pytest.raises(Exception, match="not fitted|NotFitted"):
        emb.transform(np.zeros(1000, np.float32))


# -- the shipped mixture of experts ------------------------------------------------------------------------
def test_pretrained_experts_card_matches_the_shipped_file(noisy):
    from pse_nmf.neural import pretrained, pretrained_models
    from pse_nmf.neural._pretrained import _sha256, pretrained_path

    card = pretrained_models()["experts"]
    assert _sha256(pretrained_path("experts")) == card["sha256"]
    model = pretrained("experts")
    assert type(model).__name__ == card["estimator"] == "SparseMixtureOfExperts"
    c = complexity(model)
    assert c["parameters"] == card["parameters"]
    assert c["macs_per_second"] == pytest.approx(card["macs_per_second"])
    generalist = pretrained("generalist")
    # the budget: at most 1.2 x the MACs of the generalist of the same per-frame cost
    assert c["macs_per_second"] <= 1.2 * complexity(generalist)["macs_per_second"]
    for name, expert in model._members():
        assert complexity(expert)["parameters"] == complexity(generalist)["parameters"]
        assert name in card["specialists"]
    assert "benchmarks/train_experts.py" in card["training_command"]
    assert model.denoise(noisy).shape == noisy.shape


def test_validation_snrs_set_the_validation_mixtures(data):
    """A specialist validates inside its band: the validation SI-SDR of the same network is far higher on
    mixtures at 30 dB than at -5 dB."""
    scores = {}
    for snr in (-5.0, 30.0):
        est = CompactEnhancer(max_epochs=1, batch_size=8, random_state=0, **TINY)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(data.speech, data.noise, validation_snrs=(snr,))
        scores[snr] = est.best_loss_
    assert scores[30.0] > scores[-5.0] + 10
    with pytest.raises(ValueError, match="validation_snrs"):
        CompactEnhancer(max_epochs=1, **TINY).fit(data.speech, data.noise, validation_snrs=())
