"""Tests of the universal speech model and the block penalties (pse_nmf.USM, pse_nmf.decomposition._penalties).

The penalty objects and _solve are internals, reached on purpose: the block-sparse
objective is checked against a NumPy oracle under the library's one update loop.
"""

import json
import zipfile

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from pse_nmf import ModelFileError
from pse_nmf import load as load_model
from pse_nmf.audio import write_audio
from pse_nmf.datasets import load_example
from pse_nmf.decomposition import _usm as usm_module
from pse_nmf.decomposition._nmf import _solve
from pse_nmf.decomposition._penalties import BlockPenalty
from pse_nmf.decomposition._usm import USM
from pse_nmf.plotting import plot_block_usage

ORDER_REASON = (
    "transform fits the noise atoms and the utterance-level block selection on all frames together, "
    "so a frame's output depends on the other frames (as in SemiSupervisedNMF)"
)


def _small_usm(**kw):
    params = dict(n_components_per_speaker=2, n_noise_components=2, max_iter=5, test_max_iter=5, random_state=0)
    params.update(kw)
    return USM(**params)


@parametrize_with_checks(
    [_small_usm()],
    expected_failed_checks=lambda est: {
        "check_methods_sample_order_invariance": ORDER_REASON,
        "check_methods_subset_invariance": ORDER_REASON,
    },
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# -- penalty oracles ------------------------------------------------------------------------------

def _oracle_value(A, groups, weight, kind, scope, eps, l1):
    """Slow, loop-based penalty value."""
    T = A.shape[0]
    total = float(np.sum(A * l1))
    blocks = sorted(set(int(g) for g in groups if g >= 0))
    for g in blocks:
        w_g = weight[g] if np.ndim(weight) else weight  # one weight per block, or the same for all
        cols = [k for k in range(A.shape[1]) if groups[k] == g]
        rows = [A[:, cols]] if scope == "utterance" else [A[t:t + 1, cols] for t in range(T)]
        for sub in rows:
            if kind == "l1":
                total += w_g * sub.sum()
            elif kind == "log":
                if scope == "utterance":
                    total += w_g * T * np.log(eps + sub.sum() / T)
                else:
                    total += w_g * np.log(eps + sub.sum())
            else:
                norm = np.sqrt((sub**2).sum())
                total += w_g * (np.sqrt(T) if scope == "utterance" else 1.0) * norm
    return total


@pytest.mark.parametrize("weight", [0.7, np.array([0.7, 0.2])], ids=["scalar", "per-block"])
@pytest.mark.parametrize("kind", ["log", "l1", "l2"])
@pytest.mark.parametrize("scope", ["utterance", "frame"])
def test_block_penalty_value_and_gradient_match_oracle(kind, scope, weight):
    rng = np.random.default_rng(0)
    A = rng.uniform(0.1, 2.0, size=(7, 6))
    groups = np.array([0, 0, 1, 1, 1, -1])
    pen = BlockPenalty(groups, weight, kind=kind, scope=scope, eps=0.3, l1=0.05)
    assert pen.value(A) == pytest.approx(_oracle_value(A, groups, weight, kind, scope, 0.3, 0.05), rel=1e-10)
    # gradient against central finite differences of the oracle
    grad = np.broadcast_to(pen.gradient(A), A.shape)
    h = 1e-6
    for t, k in [(0, 0), (3, 2), (6, 4), (2, 5)]:
        Ap, Am = A.copy(), A.copy()
        Ap[t, k] += h
        Am[t, k] -= h
        fd = (_oracle_value(Ap, groups, weight, kind, scope, 0.3, 0.05)
              - _oracle_value(Am, groups, weight, kind, scope, 0.3, 0.05)) / (2 * h)
        assert grad[t, k] == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_block_penalty_weights_per_block():
    A = np.random.default_rng(3).uniform(0.1, 2.0, size=(5, 6))
    groups = [0, 0, 1, 1, 2, -1]
    same = BlockPenalty(groups, np.full(3, 0.4), scope="frame")
    scalar = BlockPenalty(groups, 0.4, scope="frame")
    np.testing.assert_array_equal(same.gradient(A), scalar.gradient(A))
    assert same.value(A) == scalar.value(A)
    # a zero weight leaves its block unpenalised, the others as before
    free_first = BlockPenalty(groups, [0.0, 0.4, 0.4], kind="l1")
    np.testing.assert_array_equal(free_first.gradient(A)[:2], 0.0)
    np.testing.assert_array_equal(free_first.gradient(A)[2:5], 0.4)
    with pytest.raises(ValueError, match="one value per block"):
        BlockPenalty(groups, [0.1, 0.2])
    with pytest.raises(ValueError, match="finite and non-negative"):
        BlockPenalty(groups, [0.1, -0.2, 0.3])


def test_block_penalty_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown block penalty 'l0'"):
        BlockPenalty([0, 1], 1.0, kind="l0")
    with pytest.raises(ValueError, match="unknown block penalty scope"):
        BlockPenalty([0, 1], 1.0, scope="song")


def _kl(X, Y):
    Y = np.maximum(Y, np.finfo(X.dtype).eps)
    return float(np.sum(np.where(X > 0, X * np.log(np.where(X > 0, X, 1) / Y), 0) - X + Y))


@pytest.mark.parametrize("weight", [0.5, np.array([0.0, 0.5, 2.0])], ids=["scalar", "per-block"])
@pytest.mark.parametrize("kind,scope", [("log", "utterance"), ("log", "frame"), ("l1", "utterance")])
def test_block_sparse_objective_never_increases(kind, scope, weight):
    # the MM update of the log penalty (and the plain L1 one) cannot increase the penalised objective
    rng = np.random.default_rng(1)
    D = rng.uniform(0, 1, size=(9, 20))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = rng.uniform(0, 1, size=(15, 3)) @ D[:3] + 0.05 * rng.uniform(0, 1, size=(15, 20))
    A = rng.uniform(0.1, 1, size=(15, 9))
    groups = np.repeat([0, 1, 2], 3)
    pen = BlockPenalty(groups, weight, kind=kind, scope=scope, eps=0.2)
    objectives = []
    for _ in range(40):
        objectives.append(_kl(X, A @ D) + _oracle_value(A, groups, weight, kind, scope, 0.2, 0.0))
        _solve(X, A, D, beta=1.0, penalty=pen, free=np.zeros(9, bool), max_iter=1, tol=0)
    objectives = np.array(objectives)
    assert np.all(np.diff(objectives) <= 1e-9 * np.abs(objectives[:-1]))
    assert objectives[-1] < objectives[0]


def test_group_lasso_decreases_objective_overall():
    rng = np.random.default_rng(2)
    D = rng.uniform(0, 1, size=(6, 12))
    X = rng.uniform(0, 1, size=(10, 2)) @ D[:2]
    A = rng.uniform(0.1, 1, size=(10, 6))
    groups = np.repeat([0, 1, 2], 2)
    pen = BlockPenalty(groups, 0.3, kind="l2")
    before = _kl(X, A @ D) + _oracle_value(A, groups, 0.3, "l2", "utterance", 1.0, 0.0)
    _, final, _ = _solve(X, A, D, beta=1.0, penalty=pen, free=np.zeros(6, bool), max_iter=50, tol=0)
    after = _kl(X, A @ D) + _oracle_value(A, groups, 0.3, "l2", "utterance", 1.0, 0.0)
    assert after < before
    assert final == pytest.approx(after, rel=1e-6)


# -- synthetic speakers ---------------------------------------------------------------------------

def _synthetic_speakers(n_speakers=4, n_bins=40, n_frames=120, seed=0):
    """Each speaker's frames are combinations of atoms living on its own band of bins."""
    rng = np.random.default_rng(seed)
    width = n_bins // n_speakers
    atoms = []
    for s in range(n_speakers):
        band = np.zeros((3, n_bins))
        band[:, s * width:(s + 1) * width] = rng.uniform(0.2, 1, size=(3, width))
        atoms.append(band)
    X, y = [], []
    for s in range(n_speakers):
        X.append(rng.gamma(1.0, 1.0, size=(n_frames, 3)) @ atoms[s])
        y += [f"spk{s}"] * n_frames
    return np.vstack(X), np.array(y), atoms, rng


def test_right_block_selected_on_synthetic_speakers(monkeypatch):
    monkeypatch.setattr(usm_module, "_BLOCK_EPS", 0.1)  # a sharper selection on these tiny synthetic frames
    X, y, atoms, rng = _synthetic_speakers()
    model = USM(n_components_per_speaker=3, n_noise_components=1, max_iter=100, test_max_iter=200,
                block_sparsity=1.0, random_state=0).fit(X, y)
    assert model.speakers_ == ["spk0", "spk1", "spk2", "spk3"]
    # test: speaker 2 with pauses, plus a flat, weak noise floor (the noise atoms start from the pauses)
    speech = rng.gamma(1.0, 1.0, size=(80, 3)) @ atoms[2]
    speech[::4] = 0.0
    test = speech + 0.02 * rng.uniform(size=(80, 40))
    weights = model.block_weights(test)
    assert weights.sum() == pytest.approx(1.0)
    assert np.argmax(weights) == 2 and weights[2] > 0.9
    usage = model.block_usage(test)
    assert usage.shape == (80, 4)
    assert np.mean(np.argmax(usage[speech.any(axis=1)], axis=1) == 2) > 0.9
    # the block penalty is what concentrates the weight
    plain = clone(model).set_params(block_sparsity=0.0).fit(X, y).block_weights(test)
    assert weights[2] > plain[2]


def test_active_speakers_restricts_blocks():
    X, y, atoms, _ = _synthetic_speakers(seed=1)
    model = USM(n_components_per_speaker=3, n_noise_components=1, max_iter=30, test_max_iter=30, random_state=0)
    model.fit(X, y).set_params(active_speakers=["spk0", "spk3"])
    weights = model.block_weights(X[:50])
    assert weights[1] == 0 and weights[2] == 0 and weights.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"active_speakers \['nobody'\] are not in the model"):
        model.set_params(active_speakers=["nobody"]).block_weights(X[:50])


def test_personalize_adds_block_and_keeps_the_others():
    X, y, atoms, rng = _synthetic_speakers(n_speakers=3, n_bins=30)
    model = USM(n_components_per_speaker=2, n_noise_components=1, max_iter=30, random_state=0).fit(X[y != "spk2"],
                                                                                                   y[y != "spk2"])
    before = model.components_.copy()
    model.personalize(X[y == "spk2"], speaker_id="me")
    assert model.speakers_ == ["spk0", "spk1", "me"]
    assert model.components_.shape == (6, 30)
    np.testing.assert_array_equal(model.components_[:4], before)
    # the new block is the block a fresh fit makes of that speaker when it comes first (same seed)
    pair = np.vstack([X[y == "spk2"], X[y == "spk0"]])
    fresh = USM(n_components_per_speaker=2, n_noise_components=1, max_iter=30, random_state=0).fit(
        pair, ["a"] * 120 + ["b"] * 120)
    np.testing.assert_allclose(model.components_[4:], fresh.components_[:2])
    with pytest.raises(ValueError, match="speaker 'me' already has a block"):
        model.personalize(X[y == "spk2"], speaker_id="me")


def test_personal_block_of_its_own_size():
    X, y, atoms, rng = _synthetic_speakers(n_speakers=3, n_bins=30, seed=5)
    kw = dict(n_components_per_speaker=2, n_noise_components=1, max_iter=30, test_max_iter=20, random_state=0)
    model = USM(**kw).fit(X[y != "spk2"], y[y != "spk2"])
    before = model.components_.copy()
    model.personalize(X[y == "spk2"], speaker_id="me", n_components=5)
    assert model.block_sizes_ == [2, 2, 5]
    assert model.components_.shape == (9, 30)
    np.testing.assert_array_equal(model.components_[:4], before)
    # the personal block is the dictionary a 5-atom fit of that speaker alone makes (same seed)
    alone = USM(**dict(kw, n_components_per_speaker=5)).fit(
        np.vstack([X[y == "spk2"], X[y == "spk0"]]), ["a"] * 120 + ["b"] * 120)
    np.testing.assert_allclose(model.components_[4:], alone.components_[:5])
    # test time sees the 5 atoms as one block: restricting to it uses exactly those rows
    D, groups, _ = model.set_params(active_speakers=["spk1", "me"])._active_dictionary()
    np.testing.assert_array_equal(D, model.components_[2:])
    np.testing.assert_array_equal(groups, [0, 0, 1, 1, 1, 1, 1])
    weights = model.block_weights(X[y == "spk2"][:60])
    assert weights[0] == 0 and weights[2] > weights[1]
    with pytest.raises(ValueError, match="n_components must be a positive integer or None, got 0"):
        model.personalize(X[y == "spk2"], speaker_id="me2", n_components=0)


def test_personal_block_size_round_trips(tmp_path):
    X, y, _, _ = _synthetic_speakers(n_speakers=3, n_bins=20, seed=6)
    model = USM(n_components_per_speaker=2, n_noise_components=1, max_iter=20, test_max_iter=20,
                random_state=0).fit(X[y != "spk2"], y[y != "spk2"])
    model.personalize(X[y == "spk2"], speaker_id="me", n_components=4)
    loaded = load_model(model.save(tmp_path / "usm.npz"), expected=USM)
    assert loaded.block_sizes_ == [2, 2, 4]
    np.testing.assert_array_equal(loaded.transform(X[:40]), model.transform(X[:40]))


def test_noise_schedule():
    """noise_init="staged": staged test-time updates of the noise atoms."""
    X, y, atoms, rng = _synthetic_speakers(n_speakers=2, n_bins=30, seed=7)
    model = USM(n_components_per_speaker=3, n_noise_components=2, max_iter=30, test_max_iter=20,
                random_state=0).fit(X, y)
    speech = rng.gamma(1.0, 1.0, size=(80, 3)) @ atoms[0]
    speech[::3] = 0.0
    noise = np.outer(rng.uniform(0.5, 1.5, size=80), rng.uniform(size=30))
    test = speech + 0.3 * noise
    plain = model.transform(test)
    staged = clone(model).set_params(noise_init="staged").fit(X, y).transform(test)
    assert staged.shape == plain.shape and np.all(np.isfinite(staged))
    assert not np.allclose(staged, plain)
    # "quiet" is the default, plain path
    assert USM().noise_init == "quiet"
    zero = clone(model).set_params(noise_init="quiet").fit(X, y).transform(test)
    np.testing.assert_array_equal(zero, plain)
    # the noise atoms fitted on the pauses model the noise better than where they start (the pauses themselves)
    A, D, k = clone(model).set_params(noise_init="staged").fit(X, y)._activations(test)
    A0, D0, _ = model._activations(test)
    def noise_error(A, D):
        return np.linalg.norm(A[:, k:] @ D[k:] - 0.3 * noise)

    assert noise_error(A, D) < noise_error(A0, D0)
    # silent pauses (the quietest quarter all zeros) skip the quiet stage instead of failing
    gated = test.copy()
    gated[::2] = 0.0
    out = clone(model).set_params(noise_init="staged").fit(X, y).transform(gated)
    assert np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="noise_init"):
        clone(model).set_params(noise_init="loud").fit(X, y)


def test_speaker_sparsity_frees_a_block(monkeypatch):
    monkeypatch.setattr(usm_module, "_BLOCK_EPS", 0.1)
    X, y, atoms, rng = _synthetic_speakers(seed=2)
    model = USM(n_components_per_speaker=3, n_noise_components=1, max_iter=30, test_max_iter=50, block_sparsity=1.0,
                random_state=0).fit(X, y)
    test = X[y == "spk1"][:60] + X[y == "spk3"][:60]  # two speakers at once: two blocks share the weight
    base = model.block_weights(test)
    # naming every speaker with the common weight changes nothing
    same = clone(model).set_params(speaker_sparsity={s: 1.0 for s in model.speakers_}).fit(X, y)
    np.testing.assert_array_equal(same.block_weights(test), base)
    # a heavy penalty on the speaker's own block, none on another's, moves the weight away from it
    tilted = clone(model).set_params(speaker_sparsity={"spk1": 50.0, "spk3": 0.0}).fit(X, y).block_weights(test)
    assert tilted[1] < base[1] and tilted[3] > base[3]
    with pytest.raises(ValueError, match=r"speaker_sparsity names speakers \['nobody'\]"):
        model.set_params(speaker_sparsity={"nobody": 0.0}).block_weights(test)
    with pytest.raises(ValueError, match="finite and non-negative"):
        model.set_params(speaker_sparsity={"spk0": -1.0}).block_weights(test)


def test_speaker_sparsity_round_trips(tmp_path):
    X, y, _, _ = _synthetic_speakers(n_speakers=2, n_bins=20, seed=4)
    model = USM(n_components_per_speaker=2, n_noise_components=1, max_iter=20, test_max_iter=20, random_state=0,
                speaker_sparsity={"spk0": 0.0}).fit(X, y)
    model.save(tmp_path / "usm.npz")
    loaded = load_model(tmp_path / "usm.npz", expected=USM)
    assert loaded.speaker_sparsity == {"spk0": 0.0}
    np.testing.assert_array_equal(loaded.transform(X[:40]), model.transform(X[:40]))


def test_fit_sparsity_only_changes_the_fit(monkeypatch):
    # fit_sparsity is a fixed setting since issue 18 (usm_module._FIT_SPARSITY, the class attribute); None: sparsity
    assert USM.fit_sparsity == usm_module._FIT_SPARSITY == 1.0 and "fit_sparsity" not in USM().get_params()
    X, y, _, _ = _synthetic_speakers(n_speakers=2, n_bins=20, seed=3)
    kw = dict(n_components_per_speaker=2, n_noise_components=1, max_iter=20, random_state=0)
    monkeypatch.setattr(USM, "fit_sparsity", 0.7)
    split = USM(sparsity=0.1, **kw).fit(X, y)
    monkeypatch.setattr(USM, "fit_sparsity", None)
    joint = USM(sparsity=0.7, **kw).fit(X, y)
    np.testing.assert_array_equal(split.components_, joint.components_)
    other = USM(sparsity=0.1, **kw).fit(X, y)
    assert not np.allclose(other.components_, split.components_)


# -- input forms and errors -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def example():
    return load_example()


@pytest.fixture(scope="module")
def small_train(example):
    return {spk: [u[:16000] for u in utts[:2]] for spk, utts in example.speech.items()}


def test_fit_forms_agree(small_train, tmp_path):
    kw = dict(n_components_per_speaker=2, max_iter=5, random_state=0)
    a = USM(**kw).fit(small_train)
    lists = USM(**kw).fit([small_train[s] for s in small_train])
    for spk, utts in small_train.items():
        (tmp_path / spk).mkdir()
        for i, u in enumerate(utts):
            write_audio(tmp_path / spk / f"{i}.wav", u, 16000, subtype="FLOAT")
    folder = USM(**kw).fit(tmp_path)
    assert a.speakers_ == folder.speakers_ == sorted(small_train)
    assert lists.speakers_ == ["0", "1", "2", "3"]
    np.testing.assert_allclose(a.components_, lists.components_)
    np.testing.assert_allclose(a.components_, folder.components_, rtol=1e-5, atol=1e-6)


def test_bad_inputs_have_clear_errors(small_train):
    one = {k: small_train[k] for k in list(small_train)[:1]}
    with pytest.raises(ValueError, match="a universal speech model needs at least 2 speakers, got 1"):
        USM(max_iter=2).fit(one)
    empty = dict(small_train, nobody=[])
    with pytest.raises(ValueError, match="speaker 'nobody' has no recordings"):
        USM(max_iter=2).fit(empty)
    silent = dict(small_train, quiet=[np.zeros(8000, np.float32)])
    with pytest.raises(ValueError, match="recordings of speaker 'quiet' are silent"):
        USM(max_iter=2).fit(silent)
    X = np.random.default_rng(0).uniform(size=(10, 5))
    with pytest.raises(ValueError, match="X has 10 frames but y has 9 labels"):
        USM().fit(X, [0, 1] * 4 + [0])
    with pytest.raises(ValueError, match="requires y to be passed"):
        USM().fit(X)
    with pytest.raises(ValueError, match="needs the recordings of each speaker"):
        USM().fit(small_train[list(small_train)[0]])


def test_save_load_round_trip(small_train, example, tmp_path):
    model = USM(n_components_per_speaker=3, max_iter=10, test_max_iter=10, random_state=0).fit(small_train)
    noisy = example.speech["so762_9604"][-1][:16000] + 0.05 * example.noise["dishes"][0][:16000]
    path = model.save(tmp_path / "usm.npz")
    loaded = load_model(path, expected=USM)
    assert loaded.speakers_ == model.speakers_
    np.testing.assert_array_equal(loaded.components_, model.components_)
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))
    # a personalized model round-trips too
    model.personalize(example.speech["so762_9604"][0], speaker_id="target")
    again = load_model(model.save(tmp_path / "usm2.npz"))
    assert again.speakers_[-1] == "target"


def test_unknown_model_kind_in_file(small_train, tmp_path):
    model = USM(n_components_per_speaker=2, max_iter=3, random_state=0).fit(small_train)
    path = model.save(tmp_path / "usm.npz")
    with np.load(path) as npz:
        contents = {k: npz[k] for k in npz.files}
    meta = json.loads(contents["__meta__"].tobytes())
    meta["estimator"] = "UniversalSpeechThing"
    contents["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **contents)
    with pytest.raises(ModelFileError, match="unknown model kind 'UniversalSpeechThing'"):
        load_model(bad)
    assert zipfile.is_zipfile(bad)


def test_damaged_speakers_refused(small_train, tmp_path):
    model = USM(n_components_per_speaker=2, max_iter=3, random_state=0).fit(small_train)
    model.speakers_ = model.speakers_[:-1]
    path = model.save(tmp_path / "usm.npz")
    with pytest.raises(ModelFileError, match="block_sizes_ must hold one positive atom count per speaker"):
        load_model(path)
    model.speakers_ = model.speakers_ + ["extra"]
    model.block_sizes_ = [2] * (len(model.speakers_) - 1) + [3]  # one atom more than components_ holds
    path = model.save(tmp_path / "usm2.npz")
    with pytest.raises(ModelFileError, match="components_ has shape"):
        load_model(path)


# -- scikit-learn composition and plots -----------------------------------------------------------

def _identification_score(est, X, y):
    """Share of frames whose most used block is their speaker's (a speaker-identification score)."""
    usage = est[-1].block_usage(est[:-1].transform(X)) if isinstance(est, Pipeline) else est.block_usage(X)
    speakers = np.asarray(est[-1].speakers_ if isinstance(est, Pipeline) else est.speakers_)
    return float(np.mean(speakers[np.argmax(usage, axis=1)] == np.asarray(y).astype(str)))


def test_pipeline_and_grid_search():
    X, y, _, _ = _synthetic_speakers(n_speakers=3, n_bins=30, n_frames=40)
    pipe = Pipeline([("scale", FunctionTransformer(lambda Z: 2.0 * Z)),
                     ("usm", USM(n_noise_components=1, max_iter=20, test_max_iter=20, random_state=0))])
    out = pipe.fit(X, y).transform(X)
    assert out.shape == X.shape and np.all(out >= 0) and np.all(out <= 2.0 * X + 1e-9)
    search = GridSearchCV(USM(n_noise_components=1, max_iter=20, test_max_iter=20, random_state=0),
                          {"n_components_per_speaker": [1, 3], "block_sparsity": [0.0, 1.0]},
                          scoring=_identification_score, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    search.fit(X, y)
    assert set(search.best_params_) == {"n_components_per_speaker", "block_sparsity"}
    assert search.best_score_ > 0.5


def test_plot_block_usage(small_train, example, tmp_path):
    from matplotlib.figure import Figure

    model = USM(n_components_per_speaker=2, max_iter=5, test_max_iter=5, random_state=0).fit(small_train)
    fig = plot_block_usage(model, example.speech["so762_9618"][-1][:16000], path=tmp_path / "usage.png", top=3)
    assert isinstance(fig, Figure)
    assert (tmp_path / "usage.png").stat().st_size > 1000
    assert len(fig.axes[0].get_yticklabels()) == 3


# -- mask averaging and smoothing -----------------------------------------------------------------

def _smooth_oracle(M, width):
    """Loop-based moving average over frames, edges repeated."""
    T, half = M.shape[0], width // 2
    out = np.empty_like(M, dtype=np.float64)
    for t in range(T):
        rows = [M[min(max(s, 0), T - 1)] for s in range(t - half, t - half + width)]
        out[t] = np.mean(rows, axis=0)
    return out


def _mask_of(model, X):
    """The speech mask a model applies to frames X (transform is X times it)."""
    return model.transform(X) / X


def test_mask_averaging_and_smoothing_match_oracle(monkeypatch):
    X, y, atoms, rng = _synthetic_speakers(n_speakers=2, n_bins=30, seed=11)
    kw = dict(n_components_per_speaker=3, n_noise_components=2, max_iter=30, test_max_iter=15, random_state=0)
    # mask_smoothing is a fixed setting since issue 18 (usm_module._MASK_SMOOTHING, the class attribute)
    assert USM.mask_smoothing == usm_module._MASK_SMOOTHING == 3 and USM().noise_init == "quiet"
    monkeypatch.setattr(USM, "mask_smoothing", 1)
    raw = USM(**kw).fit(X, y)
    speech = rng.gamma(1.0, 1.0, size=(60, 3)) @ atoms[1]
    speech[::3] = 0.0
    test = speech + 0.3 * np.outer(rng.uniform(0.5, 1.5, size=60), rng.uniform(0.1, 1.0, size=30))
    # smoothing: the moving average of the raw mask over 3 (5) frames
    for width in (3, 5):
        monkeypatch.setattr(USM, "mask_smoothing", width)
        smoothed = _mask_of(clone(raw).fit(X, y), test)
        monkeypatch.setattr(USM, "mask_smoothing", 1)
        np.testing.assert_allclose(smoothed, _smooth_oracle(_mask_of(raw, test), width), rtol=1e-4, atol=1e-6)
    # averaging: the mean of the staged solve's mask and that of a plain solve of 100 iterations
    staged = _mask_of(clone(raw).set_params(noise_init="staged").fit(X, y), test)
    plain = _mask_of(clone(raw).set_params(test_max_iter=100).fit(X, y), test)
    averaged = _mask_of(clone(raw).set_params(noise_init="staged-averaged").fit(X, y), test)
    assert not np.allclose(staged, plain)
    np.testing.assert_allclose(averaged, 0.5 * (staged + plain), rtol=1e-4, atol=1e-6)
    # the waveform path still splits the input into two parts that add up to it
    example = load_example()
    x = example.speech["so762_9604"][0][:8000] + 0.05 * example.noise["dishes"][0][:8000]
    wave_model = USM(n_components_per_speaker=2, n_noise_components=2, max_iter=5, test_max_iter=5,
                     noise_init="staged-averaged", random_state=0)
    wave_model.fit({s: u[:1] for s, u in list(example.speech.items())[:2]})
    s_est, n_est = wave_model.separate(x)
    np.testing.assert_allclose(s_est + n_est, x, atol=1e-4)
    with pytest.raises(ValueError, match="Invalid parameter 'mask_smoothing'"):  # no longer a parameter
        clone(raw).set_params(mask_smoothing=0)
    with pytest.raises(ValueError, match="noise_init"):
        clone(raw).set_params(noise_init="averaged").fit(X, y)


# -- per-frame block penalty and averaged solves --------------------------------------------------

def _frame_log_gradient_oracle(A, groups, weight, eps):
    """Loop-based gradient of weight * sum_t sum_g log(eps + ||A_tg||_1) (0 for atoms in no block)."""
    g = np.zeros(A.shape)
    for t in range(A.shape[0]):
        for k in range(A.shape[1]):
            if groups[k] >= 0:
                g[t, k] = weight / (eps + A[t, groups == groups[k]].sum())
    return g


def test_frame_block_penalty_adds_a_per_frame_log_term(monkeypatch):
    assert (usm_module._FRAME_BLOCK_SPARSITY, usm_module._BLOCK_EPS) == (1.0, 1.0)
    monkeypatch.setattr(usm_module, "_BLOCK_EPS", 0.5)  # values apart from 1, to see each where it belongs
    monkeypatch.setattr(usm_module, "_FRAME_BLOCK_SPARSITY", 0.7)
    X, y, atoms, rng = _synthetic_speakers(n_speakers=3, n_bins=30, seed=5)
    model = USM(n_components_per_speaker=2, n_noise_components=2, max_iter=20, block_sparsity=2.0,
                speaker_sparsity={"spk1": 0.0}, sparsity=0.3, random_state=0).fit(X, y)
    groups = np.array([0, 0, 1, 1, 2, 2, -1, -1])
    l1 = np.where(groups < 0, 1.0, 0.3)
    penalty = model._speech_penalty(8, groups[:6], l1)
    A = rng.uniform(0, 2, size=(7, 8))
    utterance = BlockPenalty(groups, np.array([2.0, 0.0, 2.0]), eps=0.5, l1=l1)
    # the frame term penalises every block, the personal (unpenalised) one too
    expected = np.broadcast_to(utterance.gradient(A), A.shape) + _frame_log_gradient_oracle(A, groups, 0.7, 0.5)
    np.testing.assert_allclose(np.broadcast_to(penalty.gradient(A), A.shape), expected, rtol=1e-12)
    frame_value = sum(0.7 * np.log(0.5 + A[t, groups == b].sum()) for t in range(7) for b in range(3))
    assert penalty.value(A) == pytest.approx(utterance.value(A) + frame_value, rel=1e-12)
    # 0 switches the frame term off: the utterance penalty alone
    monkeypatch.setattr(usm_module, "_FRAME_BLOCK_SPARSITY", 0.0)
    np.testing.assert_allclose(np.broadcast_to(model._speech_penalty(8, groups[:6], l1).gradient(A), A.shape),
                               np.broadcast_to(utterance.gradient(A), A.shape), rtol=1e-12)


def test_n_solves_averages_the_masks_of_several_random_starts(monkeypatch):
    assert usm_module._N_SOLVES == 2
    monkeypatch.setattr(usm_module, "_N_SOLVES", 1)
    X, y, atoms, rng = _synthetic_speakers(n_speakers=2, n_bins=30, seed=12)
    monkeypatch.setattr(USM, "mask_smoothing", 1)
    kw = dict(n_components_per_speaker=3, n_noise_components=2, max_iter=30, test_max_iter=15, random_state=3)
    single = USM(**kw).fit(X, y)
    speech = rng.gamma(1.0, 1.0, size=(50, 3)) @ atoms[0]
    speech[::3] = 0.0
    test = speech + 0.3 * np.outer(rng.uniform(0.5, 1.5, size=50), rng.uniform(0.1, 1.0, size=30))
    # oracle: the single solve's mask and those of solves started from seeds drawn from random_state
    seeds = np.random.RandomState(3).randint(np.iinfo(np.int32).max, size=2)
    masks = [_mask_of(single, test)]
    for s in seeds:
        speech_model, noise_model = single._models(test, rng=np.random.RandomState(s))
        masks.append(speech_model ** 2 / (speech_model ** 2 + noise_model ** 2))
    assert not np.allclose(masks[0], masks[1], atol=1e-3)
    for n in (2, 3):
        monkeypatch.setattr(usm_module, "_N_SOLVES", n)
        averaged = _mask_of(clone(single).fit(X, y), test)
        np.testing.assert_allclose(averaged, np.mean(masks[:n], axis=0), rtol=1e-4, atol=1e-6)


def test_files_saved_with_the_former_parameters_still_load(tmp_path):
    """issue 18: quiet_noise_iter / fixed_noise_iter / unstaged_iter became noise_init, block_penalty is always "log"."""
    import json

    import pse_nmf

    X, y, atoms, rng = _synthetic_speakers(n_speakers=2, n_bins=30, seed=3)
    model = USM(n_components_per_speaker=3, n_noise_components=2, max_iter=10, test_max_iter=5,
                noise_init="staged-averaged", random_state=0).fit(X, y)
    path = model.save(tmp_path / "usm.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))

    def old_file(name, **old):
        m = json.loads(json.dumps(meta))
        del m["params"]["noise_init"]
        m["params"].update(old)
        np.savez(tmp_path / name, __meta__=np.frombuffer(json.dumps(m).encode(), dtype=np.uint8), **arrays)
        return tmp_path / name

    loaded = pse_nmf.load(old_file("old.npz", quiet_noise_iter=100, fixed_noise_iter=50, unstaged_iter=100,
                                   block_penalty="log"))
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.transform(X[:30]), model.transform(X[:30]))
    assert pse_nmf.load(old_file("plain.npz")).noise_init == "quiet"  # the old defaults: no stages
    with pytest.raises(pse_nmf.ModelFileError, match="block_penalty='l2'.*refit"):
        pse_nmf.load(old_file("l2.npz", block_penalty="l2"))
