"""The training engine, CompactEnhancer, and the shipped pretrained generalist.

Skipped without torch. Networks are tiny (a few thousand weights) and train
for a few epochs on the embedded example data, so the file runs in seconds.
"""

import json
import shutil
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import pse_nmf  # noqa: E402
from pse_nmf import ModelFileError  # noqa: E402
from pse_nmf.datasets import mix_at_snr  # noqa: E402
from pse_nmf.neural import CompactEnhancer, complexity, pretrained, pretrained_models  # noqa: E402
from pse_nmf.neural._compact import CompactMaskNet, band_matrix  # noqa: E402  (internals: the network)
from pse_nmf.neural._engine import (  # noqa: E402  (internals: the engine's parts)
    CheckpointError,
    DynamicMixer,
    compressed_spectral_loss,
    cosine_schedule,
    si_sdr,
)

TINY = dict(conv_channels=8, hidden_size=12, hidden_size2=8, batch_size=4, segment_seconds=1.0)


def _fit(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # few epochs on purpose
        return model.fit(*args, **kwargs)


def _weights(model):
    return {k: v.detach().cpu().numpy().copy() for k, v in model.module_.state_dict().items()}


@pytest.fixture(scope="module")
def tiny(example):
    """A tiny CompactEnhancer trained 3 epochs on the example data (shared: do not modify)."""
    return _fit(CompactEnhancer(max_epochs=3, random_state=0, **TINY), example.speech, example.noise)


@pytest.fixture(scope="module")
def mixture(example):
    """A 0 dB mixture of an example utterance and noise, and its clean speech."""
    s = example.speech[sorted(example.speech)[0]][3]
    x, _ = mix_at_snr(s, example.noise[sorted(example.noise)[0]][1], 0.0, random_state=1)
    return x, s


# -- the network ------------------------------------------------------------------------------------
def test_band_matrix_rows_are_normalised_and_cover_every_bin():
    W = band_matrix(257, 16000, 64, 32)
    assert W.shape == (96, 257)
    assert np.all(W >= 0)
    np.testing.assert_allclose(W.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(W.sum(axis=0) > 0)
    np.testing.assert_array_equal(W[:64, :64], np.eye(64))
    # the ERB bands widen with frequency: their supports grow (in bins)
    widths = (W[64:] > 0).sum(axis=1)
    assert widths[-1] > widths[0]
    with pytest.raises(ValueError, match="n_linear"):
        band_matrix(257, 16000, 257, 8)


def test_streaming_equals_the_whole_utterance(tiny, mixture):
    V = np.abs(pse_nmf.audio.stft(mixture[0], n_fft=tiny.n_fft, hop_length=tiny.hop_length)).astype(np.float32)
    whole = tiny.predict_mask(V)
    streamed = np.stack(list(tiny.stream_masks(V)))
    np.testing.assert_allclose(streamed, whole, atol=2e-5)


def test_denoise_equals_the_library_stft_path(tiny, mixture):
    # denoise runs the torch STFT of training; the frame interface (pse_nmf.audio.stft, librosa) gives the same
    x = mixture[0]
    S = pse_nmf.audio.stft(x, n_fft=tiny.n_fft, hop_length=tiny.hop_length)
    M = tiny.predict_mask(np.abs(S).astype(np.float32))
    expected = pse_nmf.audio.istft(S * M, n_fft=tiny.n_fft, hop_length=tiny.hop_length, length=x.size)
    np.testing.assert_allclose(tiny.denoise(x), expected, atol=1e-4)
    speech, noise = tiny.separate(x)
    np.testing.assert_array_equal(speech, tiny.denoise(x))
    np.testing.assert_allclose(speech + noise, x, atol=1e-6)


def test_denoise_keeps_rate_and_length_and_silence(tiny, mixture):
    x = mixture[0][:20000]
    y = tiny.denoise(x, sr=8000)
    assert y.shape == x.shape and y.dtype == np.float32
    assert not np.any(tiny.denoise(np.zeros(4000, np.float32)))
    with pytest.raises(ValueError, match="fewer than one STFT frame"):
        tiny.denoise(np.ones(100, np.float32))
    with pytest.raises(ValueError, match="NaN|finite"):
        tiny.denoise(np.full(4000, np.nan, np.float32))


def test_network_is_causal():
    torch.manual_seed(0)  # the module's own init (a local generator is not available for nn layers)
    net = CompactMaskNet(257, 16000, 128, conv_channels=8, hidden_size=12, hidden_size2=8).eval()
    x = torch.rand(1, 40, 257)
    y = x.clone()
    y[:, 25:] = torch.rand(1, 15, 257) * 10  # change the future only
    with torch.no_grad():
        np.testing.assert_allclose(net(x)[:, :25].numpy(), net(y)[:, :25].numpy(), atol=1e-6)
        assert not np.allclose(net(x)[:, 25:].numpy(), net(y)[:, 25:].numpy())


def test_mask_does_not_depend_on_the_input_gain(tiny, mixture):
    x = mixture[0]
    np.testing.assert_allclose(tiny.denoise(30 * x) / 30, tiny.denoise(x), atol=1e-4)


def test_complexity_counts_every_product_exactly():
    net = CompactMaskNet(257, 16000, 128)
    c = complexity(net, hop_length=128)
    nb = 96
    expected = (64 * nb * 2                      # conv over two frames
                + 3 * (64 * 96 + 96 * 96)        # GRU 1
                + 3 * (96 * 64 + 64 * 64)        # GRU 2
                + 64 * nb                        # output layer
                + int(np.count_nonzero(band_matrix(257, 16000, 64, 32))) * 2)  # compression + expansion
    assert c["macs_per_frame"] == expected
    assert c["frames_per_second"] == 16000 / 128
    assert c["parameters"] == sum(p.numel() for p in net.parameters()) <= 100_000


# -- the engine's parts -----------------------------------------------------------------------------
def test_si_sdr_matches_the_metric():
    rng = np.random.RandomState(0)
    s = rng.standard_normal(4000)
    e = 0.5 * s + 0.3 * rng.standard_normal(4000)
    s, e = s - s.mean(), e - e.mean()  # the metric removes the means; the loss leaves them (zero-mean audio)
    got = float(si_sdr(torch.tensor(e)[None], torch.tensor(s)[None])[0])
    assert got == pytest.approx(pse_nmf.metrics.si_sdr(e, s), abs=1e-6)


def test_compressed_loss_is_zero_only_at_the_reference():
    rng = np.random.RandomState(0)
    s = torch.tensor(rng.standard_normal((2, 4000)), dtype=torch.float32)
    S = torch.stft(s, 256, 64, window=torch.hann_window(256), return_complex=True)
    assert float(compressed_spectral_loss(s, s, S, S)) == pytest.approx(0.0, abs=1e-10)
    assert float(compressed_spectral_loss(s, s, 0.5 * S, S)) > 1e-3
    # level-free: scaling both signals leaves the loss unchanged
    a = float(compressed_spectral_loss(s, s, 0.5 * S, S))
    assert float(compressed_spectral_loss(10 * s, 10 * s, 5 * S, 10 * S)) == pytest.approx(a, rel=1e-4)


def test_cosine_schedule_warms_up_then_decays():
    f = [cosine_schedule(e, 20) for e in range(20)]
    assert f[0] < f[1] < f[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[2:], f[3:]))
    assert f[-1] >= 0.05


def test_dynamic_mixer_makes_new_mixtures_each_epoch_at_the_asked_snr(example):
    speech = [y for ys in example.speech.values() for y in ys][:6]
    noise = [y for ys in example.noise.values() for y in ys]
    mixer = DynamicMixer(speech, noise, 8000, (3.0, 3.0), seed=5, colored_noise=0.0)
    (x1, s1), = list(mixer.batches(1, 6))
    (x1b, s1b), = list(mixer.batches(1, 6))
    (x2, _), = list(mixer.batches(2, 6))
    np.testing.assert_array_equal(x1.numpy(), x1b.numpy())  # an epoch's data depend on the epoch only
    assert not np.allclose(x1.numpy(), x2.numpy())
    for x, s in zip(x1.numpy(), s1.numpy()):
        n = x - s
        active = s != 0
        snr = 10 * np.log10(np.mean(s[active] ** 2) / np.mean(n ** 2))
        assert snr == pytest.approx(3.0, abs=1e-3)
    with pytest.raises(ValueError, match="noise"):
        DynamicMixer(speech, [np.zeros(100, np.float32)], 8000, (0, 5), seed=0)


def test_noise_augmentation_makes_new_finite_noise_and_is_seeded(example):
    speech = [y for ys in example.speech.values() for y in ys][:4]
    noise = [y for ys in example.noise.values() for y in ys]
    plain = DynamicMixer(speech, noise, 8000, (0.0, 0.0), seed=2, colored_noise=0.0)
    aug = DynamicMixer(speech, noise, 8000, (0.0, 0.0), seed=2, colored_noise=0.0, augment=1.0)
    rng_a, rng_b = np.random.RandomState(0), np.random.RandomState(0)
    a, b = aug._noise(8000, rng_a), aug._noise(8000, rng_b)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (8000,) and a.dtype == np.float32 and np.all(np.isfinite(a)) and np.any(a)
    # an augmented excerpt is not a plain excerpt of any clip: its best normalised match stays well below
    # the 1.0 that a plain excerpt reaches (checked on one, as a control)

    def best_match(z):
        best = 0.0
        for clip in noise:
            c = np.tile(clip, 2)[: clip.size + z.size - 1].astype(np.float64)
            dots = np.correlate(c, z, mode="valid")
            norms = np.sqrt(np.convolve(c * c, np.ones(z.size), mode="valid")) * np.linalg.norm(z)
            best = max(best, float(np.max(np.abs(dots) / (norms + 1e-12))))
        return best

    assert best_match(plain._noise(8000, np.random.RandomState(1))) > 0.999
    assert best_match(a) < 0.9
    # augment=0 draws nothing extra: the same data as a mixer without augmentation
    (x0, _), = list(plain.batches(1, 4))
    (x1, _), = list(DynamicMixer(speech, noise, 8000, (0.0, 0.0), seed=2, colored_noise=0.0, augment=0.0)
                    .batches(1, 4))
    np.testing.assert_array_equal(x0.numpy(), x1.numpy())


# -- training -----------------------------------------------------------------------------------------
def test_training_lowers_the_loss_and_keeps_the_best_epoch(example):
    model = _fit(CompactEnhancer(max_epochs=6, random_state=0, **TINY), example.speech, example.noise)
    losses = [h["train_loss"] for h in model.history_]
    assert losses[-1] < losses[0]
    scores = [h["valid_loss"] for h in model.history_]
    assert model.best_loss_ == max(scores)
    assert model.best_epoch_ == 1 + int(np.argmax(scores))


def test_resume_continues_where_it_stopped_and_matches_an_uninterrupted_run(example, tmp_path, monkeypatch):
    params = dict(max_epochs=4, random_state=3, **TINY)
    full = _fit(CompactEnhancer(**params), example.speech, example.noise)

    ckpt = tmp_path / "ckpt.npz"
    real = DynamicMixer.batches

    def interrupted(self, epoch, batch_size):
        if epoch == 3:
            raise KeyboardInterrupt  # the user presses Ctrl-C during epoch 3
        return real(self, epoch, batch_size)

    monkeypatch.setattr(DynamicMixer, "batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _fit(CompactEnhancer(**params), example.speech, example.noise, checkpoint=ckpt)
    assert ckpt.exists()
    monkeypatch.setattr(DynamicMixer, "batches", real)
    resumed = _fit(CompactEnhancer(**params), example.speech, example.noise, checkpoint=ckpt, resume=True)
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    for k, v in _weights(full).items():
        np.testing.assert_array_equal(_weights(resumed)[k], v)


def test_resume_refuses_a_checkpoint_of_another_training(example, tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    _fit(CompactEnhancer(max_epochs=1, random_state=0, **TINY), example.speech, example.noise, checkpoint=ckpt)
    other = CompactEnhancer(max_epochs=1, random_state=1, **TINY)
    with pytest.raises(CheckpointError, match="another training"):
        _fit(other, example.speech, example.noise, checkpoint=ckpt, resume=True)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        _fit(CompactEnhancer(max_epochs=1, random_state=0, **TINY), example.speech, example.noise,
             checkpoint=ckpt, resume=True)
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        CompactEnhancer(**TINY).fit(example.speech, example.noise, resume=True)


def test_fit_bad_inputs_get_clear_errors(example, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        CompactEnhancer(**TINY).fit(empty, example.noise)
    with pytest.raises(ValueError, match="fewer than one STFT frame"):
        CompactEnhancer(**TINY).fit([np.ones(100, np.float32)], example.noise)
    with pytest.raises(ValueError, match="silent"):
        CompactEnhancer(**TINY).fit(example.speech, [np.zeros(4000, np.float32)])
    with pytest.raises(ValueError, match="at least 2 speakers"):
        CompactEnhancer(**TINY).fit({"one": example.speech[sorted(example.speech)[0]]}, example.noise)
    with pytest.raises(ValueError, match="n_erb"):
        CompactEnhancer(n_fft=64, hop_length=32, **TINY).fit(example.speech, example.noise)


def test_warm_start_fine_tunes_from_the_current_weights(tiny, example):
    from sklearn.base import clone

    model = clone(tiny).set_params(warm_start=True, max_epochs=1)
    model.module_ = tiny._new_module(tiny.n_features_in_, 0)
    model.module_.load_state_dict(tiny.module_.state_dict())
    model.n_features_in_ = tiny.n_features_in_
    start = _weights(model)
    _fit(model, example.speech, example.noise)
    after = _weights(model)
    fresh = _fit(clone(tiny).set_params(max_epochs=1), example.speech, example.noise)
    # fine-tuning moved the weights a little from where they were, not to a fresh start's
    dist_start = sum(np.abs(after[k] - start[k]).sum() for k in start)
    dist_fresh = sum(np.abs(after[k] - _weights(fresh)[k]).sum() for k in start)
    assert 0 < dist_start < dist_fresh


def test_save_load_round_trip(tiny, mixture, tmp_path):
    tiny.save(tmp_path / "m.npz")
    loaded = pse_nmf.load(tmp_path / "m.npz")
    assert type(loaded) is CompactEnhancer
    np.testing.assert_array_equal(loaded.denoise(mixture[0]), tiny.denoise(mixture[0]))


# -- the shipped pretrained generalist -------------------------------------------------------------------
def test_pretrained_models_lists_the_generalist_with_its_card():
    cards = pretrained_models()
    card = cards["generalist"]
    for key in ("architecture", "parameters", "macs_per_second", "training_data", "licence", "dev_results",
                "training_command", "sha256", "estimator", "params"):
        assert key in card, key


def test_the_card_matches_the_shipped_file():
    from pse_nmf.neural._pretrained import _sha256, pretrained_path

    card = pretrained_models()["generalist"]
    path = pretrained_path("generalist")
    assert _sha256(path) == card["sha256"]
    assert path.stat().st_size < 500_000
    model = pse_nmf.load(path)
    c = complexity(model)
    assert c["parameters"] == card["parameters"] <= 100_000
    assert c["macs_per_second"] == pytest.approx(card["macs_per_second"])
    assert type(model).__name__ == card["estimator"]
    assert json.loads(json.dumps(model.get_params(), default=list)) == {**card["params"]}


def test_pretrained_generalist_enhances_a_real_mixture_without_network(mixture, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket, "socket", no_network)
    model = pretrained("generalist")
    assert model.warm_start is True
    x, s = mixture
    y = model.denoise(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert pse_nmf.metrics.si_sdr(y, s) > pse_nmf.metrics.si_sdr(x, s) + 3.0


def test_pretrained_refuses_unknown_names_and_damaged_files(tmp_path, monkeypatch):
    from pse_nmf.neural import _pretrained

    with pytest.raises(ValueError, match="no pretrained model 'nope'"):
        pretrained("nope")
    folder = tmp_path / "pretrained"
    shutil.copytree(_pretrained._folder(), folder)
    monkeypatch.setattr(_pretrained, "_folder", lambda: folder)
    npz = folder / pretrained_models()["generalist"]["file"]
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match its model card"):
        pretrained("generalist")
    (folder / "generalist.json").write_text("{broken")
    with pytest.raises(ModelFileError, match="unreadable"):
        pretrained_models()


# -- command line ---------------------------------------------------------------------------------------
def test_cli_denoises_with_the_pretrained_generalist_by_name(mixture, tmp_path, capsys):
    import soundfile as sf

    from pse_nmf._cli import main

    x, s = mixture
    sf.write(tmp_path / "noisy.wav", x, 16000)
    rc = main(["denoise", "-m", "generalist", str(tmp_path / "noisy.wav"), "-o", str(tmp_path / "out.wav")])
    assert rc == 0, capsys.readouterr().err
    y, sr = pse_nmf.audio.read_audio(tmp_path / "out.wav", sr=None)
    assert sr == 16000 and y.size == x.size
    assert pse_nmf.metrics.si_sdr(y, s) > pse_nmf.metrics.si_sdr(x, s) + 3.0


def test_cli_train_resume_and_errors(tmp_path, capsys):
    from pse_nmf._cli import main
    from pse_nmf.datasets import example_path

    speech, noise = str(example_path() / "speech"), str(example_path() / "noise")
    out, ckpt = tmp_path / "m.npz", tmp_path / "ckpt.npz"
    tiny = ["--set", "conv_channels=8", "--set", "hidden_size=12", "--set", "hidden_size2=8",
            "--set", "batch_size=4", "--set", "segment_seconds=1.0", "--max-epochs", "2", "--quiet"]
    rc = main(["train", speech, "-n", noise, "-o", str(out), "--checkpoint", str(ckpt), *tiny])
    assert rc == 0, capsys.readouterr().err
    assert "trained CompactEnhancer for 2 epochs" in capsys.readouterr().out
    first = pse_nmf.load(out)
    # resuming a finished training trains nothing more and gives the same model
    rc = main(["train", speech, "-n", noise, "-o", str(out), "--checkpoint", str(ckpt), "--resume",
               "--overwrite", *tiny])
    assert rc == 0, capsys.readouterr().err
    again = pse_nmf.load(out)
    for k, v in _weights(first).items():
        np.testing.assert_array_equal(_weights(again)[k], v)
    assert main(["train", speech, "-n", noise, "-o", str(out), *tiny]) == 1  # exists, no --overwrite
    assert "exists" in capsys.readouterr().err
    assert main(["train", speech, "-n", noise, "-o", str(tmp_path / "b.npz"), "--resume", *tiny]) == 2
    assert "--resume needs --checkpoint" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", speech, "-n", str(empty), "-o", str(tmp_path / "c.npz"), *tiny]) == 1
    assert "no audio files" in capsys.readouterr().err
    assert main(["train", speech, "-n", noise, "-o", str(tmp_path / "d.npz"), "--set", "nope=1", *tiny]) == 2
