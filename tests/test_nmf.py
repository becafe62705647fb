"""Properties of the beta-NMF core: BetaNMF, non_negative_factorization, _solve.

The monotonicity tests drive the private update loop ``pse_nmf.decomposition._nmf._solve``
one iteration at a time, because the property is about each update; the
rest goes through the public API. scikit-learn's ``NMF(solver="mu")`` is an
independent oracle for the unpenalised updates.
"""

import warnings

import numpy as np
import pytest
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

from pse_nmf import BetaNMF
from pse_nmf.decomposition import beta_divergence, non_negative_factorization
from pse_nmf.decomposition._nmf import (
    L1Penalty,
    _init_activations,
    _init_atoms,
    _normalize_rows,
    _solve,
)

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]


def _low_rank(seed=0, shape=(60, 40), rank=5, noise=0.1):
    rng = np.random.default_rng(seed)
    X = rng.random((shape[0], rank)) @ rng.random((rank, shape[1]))
    if noise:
        X = X + noise * rng.random(shape)
    return X


def _objective(X, A, D, beta, penalty):
    return beta_divergence(X, A @ D, beta) + (penalty.value(A) if penalty is not None else 0.0)


def _objective_trace(X, beta, sparsity, free, n_iter=150, seed=0):
    rng = np.random.RandomState(seed)
    n_components = 8
    D = _init_atoms(n_components, X.shape[1], X.dtype, rng)
    A = _init_activations(X, D, rng)
    penalty = L1Penalty(sparsity) if sparsity else None
    if penalty is not None:
        # _solve starts by normalising the free atoms (A @ D unchanged); start the trace there
        _normalize_rows(D, A, np.arange(n_components) if free is None else np.flatnonzero(free))
    trace = [_objective(X, A, D, beta, penalty)]
    for _ in range(n_iter):
        _solve(X, A, D, beta=beta, penalty=penalty, free=free, max_iter=1, tol=0)
        trace.append(_objective(X, A, D, beta, penalty))
    return np.array(trace)


# --------------------------------------------------------------------------- monotone objective


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("free", ["all", "some"])
@pytest.mark.parametrize("seed", [0, 1])
def test_objective_non_increasing(beta, free, seed):
    X = _low_rank(seed)
    X /= X.mean()  # the scale _factorize hands to _solve
    mask = None if free == "all" else np.arange(8) >= 3
    trace = _objective_trace(X, beta, 0.0, mask, seed=seed)
    steps = np.diff(trace)
    slack = 1e-10 * np.abs(trace[:-1])
    assert np.all(steps <= slack), f"objective rose at iterations {np.flatnonzero(steps > slack)}"
    assert trace[-1] < 0.1 * trace[0]  # and it actually decreased


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("sparsity", [0.1, 1.0])
@pytest.mark.parametrize("free", ["all", "some"])
def test_objective_non_increasing_with_sparsity(beta, sparsity, free):
    """With the L1 penalty the atom update is Le Roux et al.'s normalisation-aware one.

    That update, followed by renormalisation (which rescales A and so the
    penalty), is not a proven majorise-minimise step; this test checks it is
    monotone on these data all the same (it is, at the time of writing).
    """
    X = _low_rank(2, noise=0.2)
    X /= X.mean()
    mask = None if free == "all" else np.arange(8) >= 3
    trace = _objective_trace(X, beta, sparsity, mask)
    steps = np.diff(trace)
    slack = 1e-10 * np.abs(trace[:-1])
    assert np.all(steps <= slack), f"penalised objective rose at iterations {np.flatnonzero(steps > slack)}"
    assert trace[-1] < trace[0]


def test_solve_returns_objective_of_its_factors():
    X = _low_rank(3)
    X /= X.mean()
    rng = np.random.RandomState(0)
    D = _init_atoms(6, X.shape[1], X.dtype, rng)
    A = _init_activations(X, D, rng)
    penalty = L1Penalty(0.3)
    n_iter, objective, converged = _solve(X, A, D, beta=1.0, penalty=penalty, max_iter=25, tol=0)
    assert n_iter == 25 and not converged
    assert objective == pytest.approx(_objective(X, A, D, 1.0, penalty), rel=1e-10)


def test_solve_without_objective_gives_the_same_factors():
    X = _low_rank(3)
    X /= X.mean()
    rng = np.random.RandomState(0)
    D = _init_atoms(6, X.shape[1], X.dtype, rng)
    A = _init_activations(X, D, rng)
    A2, D2 = A.copy(), D.copy()
    penalty = L1Penalty(0.3)
    with_obj = _solve(X, A, D, beta=1.0, penalty=penalty, max_iter=25, tol=1e-3)
    without = _solve(X, A2, D2, beta=1.0, penalty=penalty, max_iter=25, tol=1e-3, objective=False)
    assert without[1] is None and with_obj[1] is not None
    assert without[0] == with_obj[0] and without[2] == with_obj[2]
    np.testing.assert_array_equal(A2, A)
    np.testing.assert_array_equal(D2, D)


# --------------------------------------------------------------------------- independent oracle


@pytest.mark.parametrize("beta", BETAS)
def test_matches_sklearn_mu_with_same_init(beta):
    """Without penalty our normalised updates and scikit-learn's give the same A @ D.

    Rescaling an atom and its activations leaves the multiplicative updates of
    the product unchanged, and so does dividing X by its mean; so the products
    must agree although the factors do not.
    """
    rng = np.random.default_rng(10)
    X = _low_rank(4)
    A0 = rng.uniform(0.1, 1.0, (X.shape[0], 6))
    D0 = rng.uniform(0.1, 1.0, (6, X.shape[1]))
    A, D, n_iter = non_negative_factorization(X, A=A0, D=D0, beta=beta, max_iter=50, tol=0)
    assert n_iter == 50
    sk = NMF(n_components=6, solver="mu", beta_loss=beta, init="custom", max_iter=50, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        W = sk.fit_transform(X, W=A0.copy(), H=D0.copy())
    np.testing.assert_allclose(A @ D, W @ sk.components_, rtol=1e-9, atol=1e-12 * X.max())
    assert not np.allclose(A @ D, A0 @ D0)  # the updates did something


def _textbook_mu(X, A, D, beta, free, n_iter):
    """Plain NumPy multiplicative updates (Fevotte & Idier 2011, beta in [1, 2]) with the atoms
    outside ``free`` held fixed; no normalisation, no fused kernels, no shared buffers.
    """
    A, D = A.copy(), D.copy()
    for _ in range(n_iter):
        WH = A @ D
        A *= ((X * WH ** (beta - 2)) @ D.T) / (WH ** (beta - 1) @ D.T)
        WH = A @ D
        Af = A[:, free]
        D[free] *= (Af.T @ (X * WH ** (beta - 2))) / (Af.T @ WH ** (beta - 1))
    return A, D


@pytest.mark.parametrize("beta", [1.0, 2.0])
@pytest.mark.parametrize("free", ["all", "some", "none"])
def test_solve_matches_textbook_updates_with_fixed_atoms(beta, free):
    """The loop (Gram-matrix path and shared buffers for beta=2, vector denominators for KL) gives the
    textbook updates' A @ D, the fixed atoms untouched, with all, some or no atoms free.
    """
    rng = np.random.default_rng(11)
    X = _low_rank(5, shape=(70, 30))
    A0 = rng.uniform(0.1, 1.0, (X.shape[0], 6))
    D0 = rng.uniform(0.1, 1.0, (6, X.shape[1]))
    mask = {"all": np.ones(6, bool), "some": np.array([0, 1, 0, 0, 1, 1], bool), "none": np.zeros(6, bool)}[free]
    A, D = A0.copy(), D0.copy()
    _solve(X, A, D, beta=beta, free=mask, max_iter=30, tol=0, objective=False)
    A_ref, D_ref = _textbook_mu(X, A0, D0, beta, mask, 30)
    np.testing.assert_allclose(A @ D, A_ref @ D_ref, rtol=1e-9, atol=1e-12 * X.max())
    np.testing.assert_array_equal(D[~mask], D0[~mask])
    assert not np.allclose(A @ D, A0 @ D0)


# --------------------------------------------------------------------------- fixed atoms


MASKS = {
    "first": np.array([False, True, True, True, True, True]),
    "last": np.array([True, True, True, True, True, False]),
    "scattered": np.array([False, True, False, True, True, False]),
    "none_free": np.zeros(6, dtype=bool),
}


@pytest.mark.parametrize("which", list(MASKS))
@pytest.mark.parametrize("sparsity", [0.0, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fixed_atoms_bit_identical(which, sparsity, dtype):
    free = MASKS[which]
    rng = np.random.default_rng(1)
    X = _low_rank(5).astype(dtype)
    D0 = rng.uniform(0.0, 2.0, (6, X.shape[1])).astype(dtype)  # not normalised: must stay as given
    A, D, _ = non_negative_factorization(
        X, D=D0.copy(), beta=1.0, sparsity=sparsity, update_components=free, max_iter=30, tol=0, random_state=0
    )
    assert D.dtype == dtype and A.dtype == dtype
    np.testing.assert_array_equal(D[~free], D0[~free])
    if free.any():
        np.testing.assert_allclose(np.linalg.norm(D[free].astype(np.float64), axis=1), 1.0, rtol=1e-5)
        assert not np.allclose(D[free], D0[free] / np.linalg.norm(D0[free], axis=1, keepdims=True))


def test_update_components_false_keeps_all():
    X = _low_rank(6)
    D0 = np.random.default_rng(2).uniform(0.0, 1.0, (4, X.shape[1]))
    _, D, _ = non_negative_factorization(X, D=D0, update_components=False, max_iter=10, tol=0, random_state=0)
    np.testing.assert_array_equal(D, D0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparsity", [0.0, 0.3])
def test_betanmf_fixed_components(dtype, sparsity):
    X = _low_rank(7).astype(dtype)
    F = np.random.default_rng(3).uniform(0.0, 3.0, (3, X.shape[1])).astype(dtype)
    model = BetaNMF(n_components=4, fixed_components=F.copy(), sparsity=sparsity, max_iter=30, tol=0,
                    random_state=0).fit(X)
    assert model.components_.shape == (7, X.shape[1])
    assert model.n_components_ == 7
    assert model.components_.dtype == dtype
    np.testing.assert_array_equal(model.components_[:3], F)
    np.testing.assert_allclose(np.linalg.norm(model.components_[3:].astype(np.float64), axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_betanmf_free_atoms_unit_norm(beta):
    model = BetaNMF(n_components=5, beta=beta, max_iter=20, tol=0, random_state=0).fit(_low_rank(8))
    np.testing.assert_allclose(np.linalg.norm(model.components_, axis=1), 1.0, rtol=1e-10)


# --------------------------------------------------------------------------- dtypes, seeds, scale


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_float32_close_to_float64(beta):
    X = _low_rank(9)
    m64 = BetaNMF(n_components=6, beta=beta, max_iter=100, tol=0, random_state=0)
    m32 = BetaNMF(n_components=6, beta=beta, max_iter=100, tol=0, random_state=0)
    A64 = m64.fit_transform(X)
    A32 = m32.fit_transform(X.astype(np.float32))
    assert A32.dtype == np.float32 and m32.components_.dtype == np.float32
    assert A64.dtype == np.float64 and m64.components_.dtype == np.float64
    np.testing.assert_allclose(m32.components_, m64.components_, atol=1e-4)
    np.testing.assert_allclose(A32 @ m32.components_, A64 @ m64.components_, rtol=1e-3, atol=1e-4 * X.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved(dtype):
    X = _low_rank(10).astype(dtype)
    model = BetaNMF(n_components=3, max_iter=10, tol=0, random_state=0)
    assert model.fit_transform(X).dtype == dtype
    assert model.components_.dtype == dtype
    assert model.transform(X).dtype == dtype
    assert model.inverse_transform(model.transform(X)).dtype == dtype
    A, D, _ = non_negative_factorization(X, n_components=3, max_iter=10, tol=0, random_state=0)
    assert A.dtype == dtype and D.dtype == dtype


def test_integer_input_is_float64():
    X = (_low_rank(11) * 10).astype(np.int64)
    A, D, _ = non_negative_factorization(X, n_components=3, max_iter=5, tol=0, random_state=0)
    assert A.dtype == np.float64 and D.dtype == np.float64


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_seeded_determinism():
    X = _low_rank(12)
    a = BetaNMF(n_components=4, max_iter=30, random_state=0).fit(X)
    b = BetaNMF(n_components=4, max_iter=30, random_state=0).fit(X)
    c = BetaNMF(n_components=4, max_iter=30, random_state=1).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert not np.allclose(a.components_, c.components_)
    A1, D1, _ = non_negative_factorization(X, n_components=4, max_iter=30, random_state=5)
    A2, D2, _ = non_negative_factorization(X, n_components=4, max_iter=30, random_state=5)
    A3, D3, _ = non_negative_factorization(X, n_components=4, max_iter=30, random_state=6)
    np.testing.assert_array_equal(D1, D2)
    np.testing.assert_array_equal(A1, A2)
    assert not np.allclose(D1, D3)


def test_random_state_instance_advances():
    """A RandomState instance is used, not reseeded: two fits with it differ."""
    X = _low_rank(13)
    rs = np.random.RandomState(0)
    a = BetaNMF(n_components=4, max_iter=10, tol=0, random_state=rs).fit(X).components_.copy()
    b = BetaNMF(n_components=4, max_iter=10, tol=0, random_state=rs).fit(X).components_.copy()
    assert not np.allclose(a, b)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("factor", [10.0, 0.1])
@pytest.mark.parametrize("sparsity", [0.0, 0.5])
def test_gain_invariance_betanmf(factor, sparsity):
    X = _low_rank(14)
    base = BetaNMF(n_components=4, sparsity=sparsity, max_iter=50, random_state=0)
    scaled = BetaNMF(n_components=4, sparsity=sparsity, max_iter=50, random_state=0)
    A = base.fit_transform(X)
    As = scaled.fit_transform(X * factor)
    np.testing.assert_allclose(scaled.components_, base.components_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(As, A * factor, rtol=1e-6, atol=1e-9 * factor * A.max())
    np.testing.assert_allclose(scaled.transform(X * factor), base.transform(X) * factor, rtol=1e-6,
                               atol=1e-9 * factor * A.max())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("factor", [10.0, 0.1])
def test_gain_invariance_non_negative_factorization(factor):
    X = _low_rank(15)
    A, D, _ = non_negative_factorization(X, n_components=4, sparsity=0.2, max_iter=50, random_state=0)
    As, Ds, _ = non_negative_factorization(X * factor, n_components=4, sparsity=0.2, max_iter=50, random_state=0)
    np.testing.assert_allclose(Ds, D, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(As, A * factor, rtol=1e-6, atol=1e-9 * factor * A.max())


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_reconstructs_exact_low_rank(beta):
    X = _low_rank(16, rank=4, noise=0.0)
    model = BetaNMF(n_components=4, beta=beta, max_iter=1500, tol=0, random_state=0)
    A = model.fit_transform(X)
    rel = np.linalg.norm(X - A @ model.components_) / np.linalg.norm(X)
    assert rel < 1e-2
    assert model.reconstruction_err_ == pytest.approx(beta_divergence(X, A @ model.components_, beta), rel=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sparsity_makes_activations_sparser():
    X = _low_rank(17)
    dense = BetaNMF(n_components=8, max_iter=100, random_state=0).fit_transform(X)
    sparse = BetaNMF(n_components=8, sparsity=2.0, max_iter=100, random_state=0).fit_transform(X)

    def l1_over_l2(A):
        return np.sum(A) / np.sqrt(np.sum(A**2))

    assert l1_over_l2(sparse) < l1_over_l2(dense)


# --------------------------------------------------------------------------- warnings and errors


def test_convergence_warning_betanmf():
    X = _low_rank(18)
    with pytest.warns(ConvergenceWarning, match="Maximum number of iterations"):
        BetaNMF(n_components=3, max_iter=2, tol=1e-4, random_state=0).fit(X)


def test_convergence_warning_non_negative_factorization():
    with pytest.warns(ConvergenceWarning, match="Maximum number of iterations"):
        non_negative_factorization(_low_rank(19), n_components=3, max_iter=2, tol=1e-4, random_state=0)


def test_no_convergence_warning_when_converged():
    X = _low_rank(20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = BetaNMF(n_components=3, max_iter=2000, tol=1e-3, random_state=0).fit(X)
    assert model.n_iter_ < 2000


def test_negative_input_errors():
    X = _low_rank(21)
    X[3, 4] = -1.0
    with pytest.raises(ValueError, match="Negative values"):
        BetaNMF(n_components=2).fit(X)
    with pytest.raises(ValueError, match="Negative values"):
        non_negative_factorization(X, n_components=2)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_errors(bad):
    X = _low_rank(22)
    X[0, 0] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        BetaNMF(n_components=2).fit(X)
    with pytest.raises(ValueError, match="NaN|infinity"):
        non_negative_factorization(X, n_components=2)


def test_all_zero_input_errors():
    with pytest.raises(ValueError, match="all zeros"):
        BetaNMF(n_components=2).fit(np.zeros((5, 4)))


@pytest.mark.parametrize("shape", [(2, 39), (40,), (1, 2, 40)])
def test_wrong_fixed_components_shape(shape):
    X = _low_rank(23)
    with pytest.raises(ValueError, match="fixed_components must have shape"):
        BetaNMF(n_components=2, fixed_components=np.ones(shape)).fit(X)


def test_fixed_components_negative_or_nan():
    X = _low_rank(24)
    F = np.ones((2, X.shape[1]))
    F[0, 0] = -1
    with pytest.raises(ValueError, match="Negative values"):
        BetaNMF(n_components=2, fixed_components=F).fit(X)
    F[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        BetaNMF(n_components=2, fixed_components=F).fit(X)


def test_non_negative_factorization_argument_errors():
    X = _low_rank(25)
    with pytest.raises(ValueError, match="pass D or n_components"):
        non_negative_factorization(X)
    with pytest.raises(ValueError, match="D must have shape"):
        non_negative_factorization(X, D=np.ones((3, X.shape[1] + 1)))
    with pytest.raises(ValueError, match="A must have shape"):
        non_negative_factorization(X, A=np.ones((2, 3)), D=np.ones((3, X.shape[1])))
    with pytest.raises(ValueError, match="unknown beta"):
        non_negative_factorization(X, n_components=2, beta="hellinger")


def test_transform_wrong_number_of_features():
    model = BetaNMF(n_components=2, max_iter=5, tol=0, random_state=0).fit(_low_rank(26))
    with pytest.raises(ValueError, match="features"):
        model.transform(np.ones((4, 7)))


def test_beta_aliases():
    X = _low_rank(27)
    for name, value in [("itakura-saito", 0.0), ("kullback-leibler", 1.0), ("frobenius", 2.0)]:
        a = BetaNMF(n_components=3, beta=name, max_iter=10, tol=0, random_state=0).fit(X).components_
        b = BetaNMF(n_components=3, beta=value, max_iter=10, tol=0, random_state=0).fit(X).components_
        np.testing.assert_array_equal(a, b)
