"""Tests of exemplar-based NMF (pse_nmf.ExemplarNMF); the selection helpers are internals, reached on purpose."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from pse_nmf import load as load_model
from pse_nmf.datasets import load_example
from pse_nmf.decomposition._exemplar import ExemplarNMF, _select_mpq
from pse_nmf.decomposition._nmf import _factorize

ORDER_REASON = (
    "transform learns the noise atoms on all frames of a chunk together, so a frame's output depends on the "
    "other frames (as in SemiSupervisedNMF)"
)


@parametrize_with_checks(
    [ExemplarNMF(n_exemplars=10, n_noise_components=2, test_max_iter=5, random_state=0)],
    expected_failed_checks=lambda est: {
        "check_methods_sample_order_invariance": ORDER_REASON,
        "check_methods_subset_invariance": ORDER_REASON,
    },
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _frames(n=200, n_bins=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.gamma(1.0, 1.0, size=(n, 4)) @ rng.uniform(0, 1, size=(4, n_bins))


@pytest.mark.parametrize("selection", ["random", "kmedoids", "mpq"])
def test_exemplars_are_normalised_training_frames(selection):
    X = _frames()
    X[::10] = 0.0  # silent frames are never exemplars
    model = ExemplarNMF(n_exemplars=30, selection=selection, random_state=0).fit(X)
    E = model.components_
    assert 0 < model.n_exemplars_ <= 30 and E.shape == (model.n_exemplars_, 24)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-6)
    U = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)
    distance = np.min(np.linalg.norm(E[:, None, :] - U[None, :, :], axis=2), axis=1)
    assert np.all(distance < 1e-6)
    assert not np.any(np.all(E == 0, axis=1))


def _naive_mpq(U, m, k):
    """Slow oracle: plain greedy coverage of the k-NN graph, every gain recomputed every step."""
    n = U.shape[0]
    d2 = ((U[:, None, :] - U[None, :, :]) ** 2).sum(axis=2)
    order = np.argsort(d2, axis=1, kind="stable")[:, : k + 1]
    order[:, 0] = np.arange(n)
    sigma2 = np.mean(np.take_along_axis(d2, order[:, 1:], axis=1))
    W = np.exp(-np.take_along_axis(d2, order, axis=1) / sigma2)
    W[:, 0] = 1.0
    covered = np.zeros(n)
    chosen = []
    for _ in range(m):
        gains = [-1.0 if i in chosen else np.maximum(W[i] - covered[order[i]], 0).sum() for i in range(n)]
        i = int(np.argmax(gains))
        chosen.append(i)
        np.maximum.at(covered, order[i], W[i])
    return sorted(chosen)


def test_mpq_lazy_greedy_matches_naive_greedy():
    X = _frames(n=80, seed=3)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    np.testing.assert_array_equal(_select_mpq(U, 12, 5), _naive_mpq(U, 12, 5))


def test_exemplars_stay_fixed_and_all_candidates_is_plain_factorization():
    X = _frames(n=150, seed=1)
    model = ExemplarNMF(n_exemplars=40, n_noise_components=3, test_max_iter=20, n_candidates=None,
                        chunk_size=1000, random_state=0).fit(X)
    before = model.components_.copy()
    test = _frames(n=60, seed=2) + 0.1
    speech, noise = model._models(test)
    np.testing.assert_array_equal(model.components_, before)
    # with one chunk and every exemplar, the decomposition is the library's fixed-atom factorization
    rng = np.random.RandomState(0)
    D = np.vstack([before, model._init_noise_atoms(test, rng)])
    free = np.arange(D.shape[0]) >= 40
    A, D2, *_ = _factorize(test, D, free=free, beta=1.0, sparsity=np.where(free, model.noise_sparsity, model.sparsity),
                           max_iter=20, tol=model.tol, rng=rng)
    np.testing.assert_array_equal(D2[:40], before)
    np.testing.assert_allclose(speech, A[:, :40] @ D2[:40], rtol=1e-10)


def test_chunks_and_candidates_bound_the_work():
    rng = np.random.default_rng(0)
    X = _frames(n=3000, n_bins=16, seed=4)
    model = ExemplarNMF(n_exemplars=2500, n_noise_components=2, test_max_iter=5, chunk_size=50, n_candidates=64,
                        random_state=0).fit(X)
    test = _frames(n=230, n_bins=16, seed=5) + 0.05 * rng.uniform(size=(230, 16))
    cand = model._candidates(test[:50], model.components_)
    assert 0 < cand.size <= 64
    out = model.transform(test)
    assert out.shape == test.shape and np.all(out >= 0) and np.all(out <= test + 1e-9)


def test_silent_training_and_round_trip(tmp_path):
    with pytest.raises(ValueError, match="silent"):
        ExemplarNMF().fit(np.zeros((10, 6)))
    data = load_example()
    model = ExemplarNMF(n_exemplars=200, selection="random", test_max_iter=10, random_state=0)
    model.fit(data.speech["so762_9628"][:2])
    loaded = load_model(model.save(tmp_path / "ex.npz"), expected=ExemplarNMF)
    assert loaded.n_exemplars_ == model.n_exemplars_
    noisy = data.speech["so762_9628"][-1][:16000] + 0.05 * data.noise["dishes"][0][:16000]
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))


def test_pipeline_and_grid_search():
    X = _frames(n=120, seed=6)
    pipe = Pipeline([("scale", FunctionTransformer(np.sqrt)),
                     ("ex", ExemplarNMF(n_exemplars=20, n_noise_components=1, test_max_iter=5, random_state=0))])
    assert pipe.fit(X).transform(X).shape == X.shape

    def neg_error(est, Z, y=None):
        return -float(np.abs(est.transform(Z) - Z).mean())

    search = GridSearchCV(ExemplarNMF(n_noise_components=1, test_max_iter=5, random_state=0),
                          {"n_exemplars": [5, 30], "selection": ["random", "mpq"]}, scoring=neg_error, cv=2)
    search.fit(X)
    assert set(search.best_params_) == {"n_exemplars", "selection"}


def test_staged_noise_updates_per_chunk():
    rng = np.random.default_rng(9)
    X = _frames(n=150, seed=10)
    model = ExemplarNMF(n_exemplars=40, n_noise_components=2, test_max_iter=10, chunk_size=40, random_state=0).fit(X)
    assert model.noise_init == "quiet"  # off by default
    test = _frames(n=100, seed=11) + 0.3 * np.outer(rng.uniform(0.5, 1.5, size=100), rng.uniform(size=24))
    plain = model.transform(test)
    staged = model.set_params(noise_init="staged").transform(test)
    assert staged.shape == test.shape and np.all(np.isfinite(staged))
    assert not np.allclose(staged, plain)
    with pytest.raises(ValueError, match="noise_init"):
        ExemplarNMF(noise_init="none").fit(X)


def test_mask_averaging_and_smoothing_per_chunk(monkeypatch):
    """noise_init="staged-averaged" / mask_smoothing act on the whole input's mask, after the chunked solves."""
    rng = np.random.default_rng(12)
    X = _frames(n=150, seed=13)
    model = ExemplarNMF(n_exemplars=40, n_noise_components=2, test_max_iter=10, chunk_size=40, noise_init="staged",
                        random_state=0).fit(X)
    assert (ExemplarNMF().noise_init, model.mask_smoothing) == ("quiet", 1)  # off by default
    test = _frames(n=90, seed=14) + 0.3 * np.outer(rng.uniform(0.5, 1.5, size=90), rng.uniform(0.1, 1, size=24))
    staged = model.transform(test) / test
    plain = model.set_params(noise_init="quiet", test_max_iter=100).transform(test) / test
    averaged = model.set_params(noise_init="staged-averaged", test_max_iter=10).transform(test) / test
    assert not np.allclose(staged, plain)
    np.testing.assert_allclose(averaged, 0.5 * (staged + plain), rtol=1e-4, atol=1e-6)
    monkeypatch.setattr(ExemplarNMF, "mask_smoothing", 3)  # a fixed setting since issue 18 (1: none)
    smoothed = model.set_params(noise_init="staged").transform(test) / test
    padded = np.vstack([staged[:1], staged, staged[-1:]])  # edges repeated
    np.testing.assert_allclose(smoothed, (padded[:-2] + padded[1:-1] + padded[2:]) / 3, rtol=1e-4, atol=1e-6)
