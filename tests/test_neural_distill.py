"""pse_nmf.neural: padding-free normalisation of batches and the distillation's SI-SDR loss.

Tiny models (n_fft=256) on the embedded example; the whole file runs in a
few seconds.
"""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from pse_nmf import SemiSupervisedNMF  # noqa: E402
from pse_nmf.audio import istft, stft  # noqa: E402
from pse_nmf.datasets import mix_at_snr  # noqa: E402
from pse_nmf.metrics import si_sdr  # noqa: E402
from pse_nmf.neural import DistilledStudent, GRUEnhancer  # noqa: E402
from pse_nmf.neural._base import _batch  # noqa: E402
from pse_nmf.neural._models import DAEMaskNet, GRUMaskNet, TCNMaskNet, log_features  # noqa: E402

KW = dict(n_fft=256, hop_length=128)


def _quiet(fit, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # few epochs on purpose
        return fit(*args, **kwargs)


@pytest.fixture(scope="module")
def user(example):
    """(clean enrollment, noisy recordings) of one example speaker."""
    speech = example.speech[sorted(example.speech)[0]]
    noise = example.noise[sorted(example.noise)[0]][0]
    noisy = [mix_at_snr(s[:32000], noise, 0.0, random_state=i)[0] for i, s in enumerate(speech[3:5])]
    return [s[:48000] for s in speech[:3]], noisy


@pytest.fixture(scope="module")
def teacher(user):
    model = SemiSupervisedNMF(n_components=16, n_noise_components=4, max_iter=30, test_max_iter=30, tol=0,
                              random_state=0, **KW)
    return model.fit(user[0])


@pytest.fixture(scope="module")
def student(user, example):
    model = GRUEnhancer(hidden_size=8, num_layers=1, max_epochs=2, segment_seconds=1.0, random_state=0, **KW)
    return _quiet(model.fit, user[0], example.noise)


# -- zero padding does not change a sequence's features -----------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: GRUMaskNet(129, 8, 2),
    lambda: DAEMaskNet(129, 16, 4, 2),
    lambda: TCNMaskNet(129, 8, 16, 3, 2, 1),
], ids=["gru", "dae", "tcn"])
def test_a_padded_short_segment_gets_the_mask_it_gets_alone(make, user):
    torch.manual_seed(0)
    net = make().eval()
    long = np.abs(stft(user[1][0][:24000], **KW)).astype(np.float32)
    short = np.abs(stft(user[1][1][:8000], **KW)).astype(np.float32) * 3  # another level, fewer frames
    V, M, W = _batch([(long, long), (short, short)], "cpu")
    assert V.shape[1] == long.shape[0] > short.shape[0]
    with torch.no_grad():
        padded = net(V, W)[1, : short.shape[0]].numpy()
        alone = net(torch.from_numpy(short)[None])[0].numpy()
        np.testing.assert_allclose(padded, alone, atol=1e-5)
        # without the weights the padding lowers the mean magnitude and shifts the features
        unweighted = net(V)[1, : short.shape[0]].numpy()
    assert np.max(np.abs(unweighted - alone)) > 1e-3


def test_log_features_weights_normalise_over_real_frames_only():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 5, 3)).astype(np.float32))
    padded = torch.cat([x, torch.zeros(1, 4, 3)], dim=1)
    w = torch.cat([torch.ones(1, 5, 1), torch.zeros(1, 4, 1)], dim=1)
    f = log_features(padded, weight=w)
    expected = np.log(x.numpy() / x.numpy().mean() + 1e-3)  # the NumPy oracle on the unpadded sequence
    np.testing.assert_allclose(f[:, :5].numpy(), expected, rtol=1e-5)
    assert torch.all(f[:, 5:] == 0)


# -- SI-SDR distillation loss ----------------------------------------------------------------------
def test_si_sdr_loss_is_minus_the_si_sdr_of_the_waveforms(user):
    from pse_nmf.neural._distill import _si_sdr_loss

    y = user[1][0][:16000]
    Y = stft(y, **KW)
    T = stft(0.5 * y + 0.1 * np.roll(y, 300), **KW)

    class Ones(torch.nn.Module):
        def forward(self, V, W=None):
            return torch.ones_like(V)

    parts = (np.abs(Y), Y.real, Y.imag, T.real, T.imag)
    loss, n = _si_sdr_loss(256, 128)(Ones(), _batch([parts], "cpu"))
    est, ref = istft(Y, **KW), istft(T, **KW)
    alpha = est @ ref / (ref @ ref)
    expected = 10 * np.log10(np.sum((alpha * ref) ** 2) / np.sum((est - alpha * ref) ** 2))
    assert n == 1
    assert float(loss) == pytest.approx(-expected, abs=1e-3)


def test_si_sdr_distillation_overfits_one_recording(student, teacher, user):
    y = user[1][0]
    target = teacher.denoise(y)
    model = DistilledStudent(student, teacher, loss="si_sdr", max_epochs=25, patience=25, learning_rate=1e-2,
                             validation_fraction=0, random_state=0)
    _quiet(model.fit, [y])
    losses = [h["train_loss"] for h in model.history_]
    assert losses[-1] < losses[0] - 3  # minus SI-SDR in dB: at least 3 dB closer to the teacher
    before, after = si_sdr(student.denoise(y), target), si_sdr(model.denoise(y), target)
    assert after > before + 3, (before, after)


def test_distillation_refuses_an_unknown_loss(student, teacher, user):
    with pytest.raises(ValueError, match="loss"):
        DistilledStudent(student, teacher, loss="l1").fit(user[1])


# -- noise augmentation -----------------------------------------------------------------------------
def test_augmentation_changes_the_inputs_not_the_targets(student, teacher, user, example):
    noise = example.noise[sorted(example.noise)[-1]]
    kw = dict(loss="mask_mse", max_epochs=3, patience=3, validation_fraction=0.2, random_state=0)
    plain = _quiet(DistilledStudent(student, teacher, **kw).fit, user[1])
    again = _quiet(DistilledStudent(student, teacher, **kw).fit, user[1], noise=noise)
    same = _quiet(DistilledStudent(student, teacher, **kw).fit, user[1], noise=noise)
    off = _quiet(DistilledStudent(student, teacher, augment_probability=0, **kw).fit, user[1], noise=noise)
    train = [h["train_loss"] for h in plain.history_]
    # the validation segments are never augmented: the first epoch's validation loss is computed on the same
    # examples either way, only the (augmented) training differs
    assert [h["train_loss"] for h in off.history_] == train
    assert [h["train_loss"] for h in again.history_] != train
    assert [h["train_loss"] for h in same.history_] == [h["train_loss"] for h in again.history_]


def test_augmentation_refuses_bad_settings(student, teacher, user):
    with pytest.raises(ValueError, match="augment_snr_range"):
        DistilledStudent(student, teacher, augment_snr_range=(10, 0)).fit(user[1], noise=user[1])
    with pytest.raises(ValueError, match="augment_probability"):
        DistilledStudent(student, teacher, augment_probability=1.5).fit(user[1])
    with pytest.raises(ValueError, match="silent"):
        DistilledStudent(student, teacher).fit(user[1], noise=[np.zeros(4000, np.float32)])


# -- issue 19, item 9: the intermittent "min(): Expected reduction dim" crash -------------------------
def test_distillation_with_a_one_frame_last_segment_alone_in_its_batch(student, teacher, user):
    """32000 samples at hop 128 are 251 frames: two 125-frame segments and a 1-frame tail. A batch
    holding only that tail made torch.istft (center=True) trim the signal to nothing, and its
    window-envelope check called min() on an empty tensor. With the default batch_size=4 that
    happened only when the shuffle put the tail alone (e.g. as the one validation segment): seen
    once in three runs. batch_size=1 puts every segment alone, so it happens on every run.
    """
    noisy = user[1]
    n_frames = 1 + noisy[0].size // KW["hop_length"]
    assert n_frames % (16000 // KW["hop_length"]) == 1  # the data the crash needs
    model = DistilledStudent(student, teacher, max_epochs=1, batch_size=1, validation_fraction=0,
                             segment_seconds=1.0, random_state=0)
    _quiet(model.fit, noisy)
    assert np.isfinite(model.history_[-1]["train_loss"])


def test_distillation_one_frame_validation_segment(student, teacher, user):
    # the path seen in the field: the tail drawn as the one validation segment (found by seed search)
    noisy = user[1]
    for seed in range(50):
        rng = np.random.RandomState(seed)
        order = rng.permutation(6)  # 2 recordings x 3 segments; _validation_split takes the first one
        if order[0] in (2, 5):  # the 1-frame tails are the 3rd segment of each recording
            break
    model = DistilledStudent(student, teacher, max_epochs=1, segment_seconds=1.0, random_state=seed)
    _quiet(model.fit, noisy)
    assert np.isfinite(model.history_[-1]["valid_loss"])
