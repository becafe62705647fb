"""EnsembleEnhancer: fitted enhancers of any kind combined by weighted averaging.

The members are small SemiSupervisedNMF models fitted on the example data
(fast settings), two test-only enhancers (the noisy input passed through, and
an oracle that applies the ideal ratio mask of mixtures it was given), and,
when installed, a tiny GRUEnhancer (torch) and RNNoiseEnhancer (pyrnnoise).
"""

import hashlib
import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import InvalidParameterError

from pse_nmf import EnsembleEnhancer, ModelFileError, RNNoiseEnhancer, SemiSupervisedNMF, load
from pse_nmf.audio import check_waveform, oracle_mask_denoise
from pse_nmf.datasets import mix_at_snr
from pse_nmf.metrics import si_sdr

SR = 16000
FAST = dict(n_components=16, n_noise_components=4, max_iter=30, test_max_iter=30, tol=0)


# -- test-only members ------------------------------------------------------------------------------------
class Passthrough(BaseEstimator):
    """An 'enhancer' that returns its input: the noisy signal as a member."""

    def __init__(self, sr=SR):
        self.sr = sr

    def __sklearn_is_fitted__(self):
        return True

    def fit(self, X=None, y=None):
        return self

    def denoise(self, x, *, sr=None, downmix=False):
        return check_waveform(x, downmix=downmix).copy()

    def separate(self, x, *, sr=None, downmix=False):
        y = check_waveform(x, downmix=downmix)
        return y.copy(), np.zeros_like(y)


def _key(x):
    return hashlib.sha1(np.asarray(x, dtype=np.float32).tobytes()).hexdigest()


class Oracle(Passthrough):
    """Applies the ideal ratio mask to the mixtures of ``pairs`` (mixture, speech) it was built with."""

    def __init__(self, pairs=(), sr=SR):
        self.pairs = pairs
        self.sr = sr

    def denoise(self, x, *, sr=None, downmix=False):
        table = {_key(m): s for m, s in self.pairs}
        y = check_waveform(x)
        return oracle_mask_denoise(y, table[_key(y)]).astype(np.float32)


class NoDenoise(Passthrough):
    denoise = None


# -- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def speaker(example):
    return example.speech[sorted(example.speech)[0]]


@pytest.fixture(scope="module")
def mixtures(example, speaker):
    """Four 2.5 s mixtures (mixture, speech) of held-out utterances: 0 and 5 dB, two noise types."""
    out = []
    for i, (utt, noise, snr) in enumerate([(3, "running_tap", 0), (4, "dishes", 0), (5, "street_tram_bus", 5),
                                           (3, "dishes", 5)]):
        s = speaker[utt][i * 8000 : i * 8000 + 40000]
        m, _ = mix_at_snr(s, example.noise[noise][0], snr, random_state=i)
        out.append((m.astype(np.float32), s.astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def noisy(mixtures):
    return mixtures[0][0]


@pytest.fixture(scope="module")
def nmf_a(speaker):
    return SemiSupervisedNMF(random_state=0, **FAST).fit(speaker[:3])


@pytest.fixture(scope="module")
def nmf_b(speaker):
    return SemiSupervisedNMF(sparsity=0.2, random_state=1, **FAST).fit(speaker[:3])


@pytest.fixture(scope="module")
def nmf_8k(speaker):
    """A member at another rate (fitted on the 16 kHz recordings, resampled)."""
    return SemiSupervisedNMF(sr=8000, n_fft=512, hop_length=128, random_state=2, **FAST).fit(speaker[:3], sr=SR)


@pytest.fixture(scope="module")
def gru(example):
    torch = pytest.importorskip("torch")  # noqa: F841
    from sklearn.exceptions import ConvergenceWarning

    from pse_nmf.neural import GRUEnhancer

    spk = example.speech[sorted(example.speech)[1]]
    # same STFT as the NMF members (n_fft=1024, hop 256): usable in mask mode with them
    model = GRUEnhancer(hidden_size=8, num_layers=1, max_epochs=1, segment_seconds=1.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit([y[:32000] for y in spk[:2]], example.noise)


# refuses torch the way a missing package does (as tests/test_neural_import.py does)
_HIDE_TORCH = textwrap.dedent(
    """
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


def _ensemble(members, **kw):
    return EnsembleEnhancer(list(members.items()), **kw).fit()


# -- combination ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("combine", ["waveform", "mask"])
def test_one_member_is_the_member(nmf_a, noisy, combine):
    ens = _ensemble({"a": nmf_a}, combine=combine)
    np.testing.assert_array_equal(ens.denoise(noisy), nmf_a.denoise(noisy))
    for got, want in zip(ens.separate(noisy), nmf_a.separate(noisy)):
        np.testing.assert_array_equal(got, want)


def test_one_member_is_the_member_rnnoise(noisy):
    pytest.importorskip("pyrnnoise")
    rnn = RNNoiseEnhancer()
    np.testing.assert_array_equal(_ensemble({"rnn": rnn}).denoise(noisy), rnn.denoise(noisy))


@pytest.mark.parametrize("combine", ["waveform", "mask"])
def test_all_weight_on_one_member_is_that_member(nmf_a, nmf_b, noisy, combine):
    ens = _ensemble({"a": nmf_a, "b": nmf_b}, weights=[0, 2.5], combine=combine)
    np.testing.assert_array_equal(ens.weights_, [0.0, 1.0])
    np.testing.assert_array_equal(ens.denoise(noisy), nmf_b.denoise(noisy))


def test_waveform_mode_averages_outputs(nmf_a, nmf_b, noisy):
    a, b = nmf_a.denoise(noisy).astype(np.float64), nmf_b.denoise(noisy).astype(np.float64)
    out = _ensemble({"a": nmf_a, "b": nmf_b}).denoise(noisy)
    assert out.dtype == np.float32 and out.shape == noisy.shape
    np.testing.assert_allclose(out, 0.5 * (a + b), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_ensemble({"a": nmf_a, "b": nmf_b}, weights=[1, 3]).denoise(noisy), 0.25 * a + 0.75 * b,
                               rtol=0, atol=1e-6)


def test_mask_mode_averages_masks(nmf_a, nmf_b, noisy):
    """The inverse STFT is linear, so the mean mask gives the mean of the members' (masked) outputs."""
    a, b = nmf_a.denoise(noisy).astype(np.float64), nmf_b.denoise(noisy).astype(np.float64)
    out = _ensemble({"a": nmf_a, "b": nmf_b}, weights=[3, 1], combine="mask").denoise(noisy)
    np.testing.assert_allclose(out, 0.75 * a + 0.25 * b, rtol=0, atol=1e-5)
    assert not np.allclose(out, 0.5 * (a + b), rtol=0, atol=1e-5)  # the weights matter


@pytest.mark.parametrize("combine", ["waveform", "mask"])
def test_separate_parts_sum_to_the_input(nmf_a, nmf_b, noisy, combine):
    speech, noise = _ensemble({"a": nmf_a, "b": nmf_b}, combine=combine).separate(noisy)
    assert speech.dtype == noise.dtype == np.float32 and speech.shape == noise.shape == noisy.shape
    np.testing.assert_allclose(speech + noise, noisy, rtol=0, atol=1e-4)


def test_members_at_different_rates(nmf_a, nmf_8k, noisy):
    ens = _ensemble({"a": nmf_a, "low": nmf_8k})
    with pytest.raises(ValueError, match="different rates"):
        ens.denoise(noisy)
    out = ens.denoise(noisy, sr=SR)
    assert out.shape == noisy.shape
    want = 0.5 * (nmf_a.denoise(noisy).astype(np.float64) + nmf_8k.denoise(noisy, sr=SR))
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-6)
    # an input at another rate: every member is given it at that rate and resamples to its own
    x48 = np.repeat(noisy, 3)
    assert ens.denoise(x48, sr=48000).shape == x48.shape


def test_input_checks(nmf_a, noisy):
    ens = _ensemble({"a": nmf_a})
    with pytest.raises(ValueError, match="2-channel audio"):
        ens.denoise(np.stack([noisy, noisy], 1))
    assert ens.denoise(np.stack([noisy, noisy], 1), downmix=True).shape == noisy.shape
    with pytest.raises(ValueError, match="fewer than one STFT frame"):
        _ensemble({"a": nmf_a}, combine="mask").denoise(noisy[:100])
    np.testing.assert_array_equal(_ensemble({"a": nmf_a}, combine="mask").denoise(np.zeros(4000)), np.zeros(4000))


def test_mask_mode_with_a_neural_member(nmf_a, gru, noisy):
    ens = _ensemble({"a": nmf_a, "gru": gru}, combine="mask")
    want = 0.5 * (nmf_a.denoise(noisy).astype(np.float64) + gru.denoise(noisy))
    np.testing.assert_allclose(ens.denoise(noisy), want, rtol=0, atol=1e-5)


# -- learning the weights ----------------------------------------------------------------------------------
def test_fit_weights_finds_the_oracle(mixtures):
    val, held = mixtures[:2], mixtures[2:]
    oracle = Oracle(pairs=tuple(mixtures))
    ens = EnsembleEnhancer([("noisy", Passthrough()), ("oracle", oracle)])
    ens.fit_weights([m for m, _ in val], [s for _, s in val])
    assert np.argmax(ens.weights_) == 1
    assert ens.weights_.sum() == pytest.approx(1.0) and np.all(ens.weights_ >= 0)
    # validation_score_ is the mean SI-SDR of the ensemble's own outputs (the Gram-matrix shortcut is exact)
    scores = [si_sdr(ens.denoise(m), s) for m, s in val]
    assert ens.validation_score_ == pytest.approx(np.mean(scores), abs=1e-3)
    # never worse on the validation mixtures than either member or the plain average
    for w in ([1, 0], [0, 1], [1, 1]):
        other = clone(ens).set_params(weights=w).fit()
        assert ens.validation_score_ >= np.mean([si_sdr(other.denoise(m), s) for m, s in val]) - 1e-4
    # and the learned weights carry over to held-out mixtures better than the plain average
    plain = clone(ens).fit()
    learned = np.mean([si_sdr(ens.denoise(m), s) for m, s in held])
    assert learned > np.mean([si_sdr(plain.denoise(m), s) for m, s in held])


@pytest.mark.parametrize("combine", ["waveform", "mask"])
def test_fit_weights_real_members(nmf_a, nmf_b, mixtures, combine):
    ens = EnsembleEnhancer([("a", nmf_a), ("b", nmf_b)], combine=combine)
    ens.fit_weights([m for m, _ in mixtures], [s for _, s in mixtures])
    scores = [si_sdr(ens.denoise(m), s) for m, s in mixtures]
    assert ens.validation_score_ == pytest.approx(np.mean(scores), abs=1e-3)
    for member in (nmf_a, nmf_b):
        assert ens.validation_score_ >= np.mean([si_sdr(member.denoise(m), s) for m, s in mixtures]) - 1e-4
    assert ens.weights == ens.get_params()["weights"] is None  # the parameter is left alone
    assert ens.fit().validation_score_ is None  # fit goes back to the parameter's weights


def test_fit_weights_errors(nmf_a, mixtures):
    ens = EnsembleEnhancer([("a", nmf_a)])
    m, s = mixtures[0]
    with pytest.raises(ValueError, match="not supported"):
        ens.fit_weights([m], [s], metric="pesq")
    with pytest.raises(ValueError, match="1 mixtures but 2 clean"):
        ens.fit_weights([m], [s, s])
    with pytest.raises(ValueError, match="has 100 samples"):
        ens.fit_weights([m], [s[:100]])
    with pytest.raises(ValueError, match="silent"):
        ens.fit_weights([m], [np.zeros_like(s)])
    with pytest.raises(ValueError, match="mixtures is empty"):
        ens.fit_weights([], [])


# -- persistence ----------------------------------------------------------------------------------------------
def _round_trip(ens, tmp_path, x):
    path = ens.save(tmp_path / "ensemble.npz")
    loaded = load(path)
    assert isinstance(loaded, EnsembleEnhancer)
    assert [n for n, _ in loaded.estimators] == [n for n, _ in ens.estimators]
    np.testing.assert_array_equal(loaded.weights_, ens.weights_)
    np.testing.assert_array_equal(loaded.denoise(x), ens.denoise(x))
    return path, loaded


@pytest.mark.parametrize("combine", ["waveform", "mask"])
def test_save_load_nmf_members(nmf_a, nmf_b, mixtures, noisy, tmp_path, combine):
    ens = EnsembleEnhancer([("a", nmf_a), ("b", nmf_b)], combine=combine)
    ens.fit_weights([m for m, _ in mixtures[:2]], [s for _, s in mixtures[:2]])
    path, loaded = _round_trip(ens, tmp_path, noisy)
    assert loaded.combine == combine and loaded.validation_score_ == ens.validation_score_
    with np.load(path, allow_pickle=False) as npz:
        files = set(npz.files)
        meta = json.loads(npz["__meta__"].tobytes())
        member = json.loads(npz["estimators/1/__meta__"].tobytes())
    # each member stored as its own file would be, under its prefix
    assert {"estimators/0/attr:components_", "estimators/1/attr:components_"} <= files
    assert meta["nested"]["estimators"]["names"] == ["a", "b"]
    assert member["estimator"] == "SemiSupervisedNMF" and member["params"]["sparsity"] == 0.2


def test_save_load_neural_member(nmf_a, gru, noisy, tmp_path):
    _round_trip(_ensemble({"a": nmf_a, "gru": gru}, weights=[2, 1]), tmp_path, noisy)


def test_save_load_rnnoise_member(nmf_a, noisy, tmp_path):
    pytest.importorskip("pyrnnoise")
    _round_trip(_ensemble({"a": nmf_a, "rnn": RNNoiseEnhancer()}), tmp_path, noisy)


def test_save_load_frozen_member(nmf_a, noisy, tmp_path):
    _, loaded = _round_trip(_ensemble({"a": FrozenEstimator(nmf_a)}), tmp_path, noisy)
    assert isinstance(loaded.estimators[0][1], FrozenEstimator)


def test_load_neural_member_without_torch_says_what_to_install(nmf_a, gru, tmp_path):
    path = _ensemble({"a": nmf_a, "gru": gru}).save(tmp_path / "ensemble.npz")
    code = _HIDE_TORCH + textwrap.dedent(
        f"""
        import pse_nmf
        try:
            pse_nmf.load({str(path)!r})
        except ImportError as exc:
            print("ImportError:", exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ImportError:") and 'pip install "pse_nmf[neural]"' in proc.stdout


def test_save_refuses_a_member_without_model_format(nmf_a, tmp_path):
    with pytest.raises(TypeError, match="Passthrough, which has no pse_nmf model format"):
        _ensemble({"a": nmf_a, "p": Passthrough()}).save(tmp_path / "x.npz")


def test_load_refuses_a_damaged_member(nmf_a, nmf_b, tmp_path):
    path = _ensemble({"a": nmf_a, "b": nmf_b}).save(tmp_path / "ensemble.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "estimators/1/__meta__"}
    broken = tmp_path / "broken.npz"
    np.savez(broken, **arrays)
    with pytest.raises(ModelFileError, match="missing the nested estimator estimators/1/"):
        load(broken)
    arrays["estimators/1/__meta__"] = arrays["estimators/0/__meta__"]
    arrays["attr:weights_"] = np.array([0.9, 0.9])
    np.savez(broken, **arrays)
    with pytest.raises(ModelFileError, match="weights_"):
        load(broken)


# -- errors -----------------------------------------------------------------------------------------------
def test_bad_members_get_clear_errors(nmf_a):
    with pytest.raises(ValueError, match="estimators is empty"):
        EnsembleEnhancer([]).fit()
    with pytest.raises(ValueError, match=r"unique; repeated: \['a'\]"):
        EnsembleEnhancer([("a", nmf_a), ("a", nmf_a)]).fit()
    with pytest.raises(ValueError, match="without '__'"):
        EnsembleEnhancer([("a__b", nmf_a)]).fit()
    with pytest.raises(TypeError, match="pair"):
        EnsembleEnhancer([nmf_a]).fit()
    with pytest.raises(NotFittedError, match="member 'new' .* is not fitted"):
        EnsembleEnhancer([("a", nmf_a), ("new", SemiSupervisedNMF())]).fit()
    with pytest.raises(TypeError, match="member 'x' .* has no denoise"):
        EnsembleEnhancer([("x", NoDenoise())]).fit()
    with pytest.raises(InvalidParameterError, match="combine"):
        EnsembleEnhancer([("a", nmf_a)], combine="median").fit()


def test_bad_weights_get_clear_errors(nmf_a, nmf_b):
    members = [("a", nmf_a), ("b", nmf_b)]
    with pytest.raises(ValueError, match="there are 2 estimators"):
        EnsembleEnhancer(members, weights=[1, 2, 3]).fit()
    with pytest.raises(ValueError, match="non-negative"):
        EnsembleEnhancer(members, weights=[1, -0.5]).fit()
    with pytest.raises(ValueError, match="non-negative"):
        EnsembleEnhancer(members, weights=[1, np.nan]).fit()
    with pytest.raises(ValueError, match="all zero"):
        EnsembleEnhancer(members, weights=[0, 0]).fit()


def test_mask_mode_refuses_incompatible_members(nmf_a, nmf_8k):
    with pytest.raises(ValueError, match="same sr, n_fft and hop_length"):
        EnsembleEnhancer([("a", nmf_a), ("low", nmf_8k)], combine="mask").fit()
    with pytest.raises(ValueError, match="'rnn' .* exposes no mask"):
        EnsembleEnhancer([("a", nmf_a), ("rnn", RNNoiseEnhancer())], combine="mask").fit()


def test_unfitted_ensemble_refuses(nmf_a, noisy):
    with pytest.raises(NotFittedError):
        EnsembleEnhancer([("a", nmf_a)]).denoise(noisy)


# -- scikit-learn manners ------------------------------------------------------------------------------------
def test_init_stores_params_only(nmf_a):
    ens = EnsembleEnhancer("not a list", weights=[-1])  # validated in fit, not here
    assert ens.get_params(deep=False) == {"estimators": "not a list", "weights": [-1], "combine": "waveform"}
    assert not any(k.endswith("_") for k in vars(EnsembleEnhancer([("a", nmf_a)])))


def test_clone_and_nested_params(nmf_a, nmf_b, noisy):
    ens = EnsembleEnhancer([("a", nmf_a), ("b", nmf_b)], weights=[1, 2])
    params = ens.get_params()
    assert params["a"] is nmf_a and params["b__sparsity"] == 0.2
    copy = clone(ens)
    assert copy.get_params()["b__sparsity"] == 0.2 and copy.weights == [1, 2]
    # clone gives unfitted members, and the ensemble does not fit them: a clear error, not a silent refit
    with pytest.raises(NotFittedError, match="FrozenEstimator"):
        copy.fit()
    # frozen members stay fitted through clone (e.g. inside a search over the weights)
    frozen = EnsembleEnhancer([("a", FrozenEstimator(nmf_a)), ("b", FrozenEstimator(nmf_b))], weights=[1, 2])
    np.testing.assert_array_equal(clone(frozen).fit().denoise(noisy), ens.fit().denoise(noisy))
    assert clone(frozen).set_params(weights=[1, 0]).fit().weights_.tolist() == [1.0, 0.0]
