"""Numba kernels against slow NumPy oracles.

The kernels are private (``pse_nmf.decomposition._kernels``); this file reaches for them on
purpose. Each oracle below is written straight from the formula in the
kernel's docstring, entry by entry in float64, with no attempt at speed.
scikit-learn's ``_beta_divergence`` serves as a second, independent oracle for
the divergences where its conventions agree with ours (model floored at a
small epsilon, ``0 log 0 = 0``).
"""

import numba
import numpy as np
import pytest
from sklearn.decomposition._nmf import _beta_divergence as sk_beta_divergence
from threadpoolctl import threadpool_info

from pse_nmf.decomposition import _kernels as K

DTYPES = [np.float32, np.float64]
# elementwise results: a few ulps of the dtype; sums: see _sum_tol
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def _data(dtype, shape=(37, 23), seed=0, zeros_in_model=False):
    """Random non-negative data with ~25 % exact zeros, and a positive model."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.05, 3.0, size=shape) * (rng.random(shape) > 0.25)
    WH = rng.uniform(0.05, 3.0, size=shape)
    if zeros_in_model:
        WH[rng.random(shape) < 0.1] = 0.0
    assert np.any(X == 0)
    return np.ascontiguousarray(X, dtype=dtype), np.ascontiguousarray(WH, dtype=dtype)


def _sum_tol(dtype, X, WH):
    """Absolute tolerance of a sum of divergence terms computed in ``dtype``.

    Each term is a difference of quantities of size ~(x + v) (and their logs),
    so its absolute rounding error is a few eps * (x + v).
    """
    eps = float(np.finfo(dtype).eps)
    return 64 * eps * float(np.sum(np.abs(X.astype(np.float64)) + np.abs(WH.astype(np.float64)) + 1.0))


# --------------------------------------------------------------------------- oracles
# Entry-by-entry Python loops: slow and obviously right.


def oracle_divergence(X, WH, beta, eps):
    X = X.astype(np.float64)
    WH = WH.astype(np.float64)
    total = 0.0
    for x, v in zip(X.ravel(), WH.ravel()):
        v = max(v, eps)
        if beta == 1:
            total += (x * np.log(x / v) if x > 0 else 0.0) - x + v
        elif beta == 0:
            x = max(x, eps)
            total += x / v - np.log(x / v) - 1.0
        elif beta == 2:
            total += 0.5 * (x - v) ** 2
        else:
            total += (x**beta + (beta - 1) * v**beta - beta * x * v ** (beta - 1)) / (beta * (beta - 1))
    return total


def oracle_kl_terms(X, WH, eps):
    """Returns (new WH, divergence)."""
    V = np.maximum(WH.astype(np.float64), eps)
    return X.astype(np.float64) / V, oracle_divergence(X, WH, 1.0, eps)


def oracle_is_terms(X, WH, eps):
    """Returns (NUM, new WH, divergence)."""
    V = np.maximum(WH.astype(np.float64), eps)
    Xe = np.maximum(X.astype(np.float64), eps)
    return Xe / V**2, 1.0 / V, oracle_divergence(X, WH, 0.0, eps)


def oracle_beta_terms(X, WH, beta, eps):
    """Returns (NUM, new WH, divergence)."""
    V = np.maximum(WH.astype(np.float64), eps)
    return X.astype(np.float64) * V ** (beta - 2), V ** (beta - 1), oracle_divergence(X, WH, beta, eps)


def oracle_mu_step(A, num, den, gamma, eps):
    A = A.astype(np.float64).copy()
    for idx in np.ndindex(A.shape):
        A[idx] *= (num[idx] / max(den[idx], eps)) ** gamma
    return A


# --------------------------------------------------------------------------- kernels vs oracles


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_div", [True, False])
@pytest.mark.parametrize("zeros_in_model", [False, True])
def test_kl_terms_matches_oracle(dtype, with_div, zeros_in_model):
    X, WH = _data(dtype, zeros_in_model=zeros_in_model)
    eps = np.finfo(dtype).eps
    X0, WH0 = X.copy(), WH.copy()
    expected_WH, expected_div = oracle_kl_terms(X, WH, eps)
    div = K.kl_terms(X, WH, dtype(eps), with_div)
    np.testing.assert_array_equal(X, X0)  # input untouched
    assert WH.dtype == dtype
    np.testing.assert_allclose(WH, expected_WH, rtol=RTOL[dtype])
    if with_div:
        assert div == pytest.approx(expected_div, abs=_sum_tol(dtype, X0, WH0))
    else:
        assert div == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zeros_in_model", [False, True])
def test_is_terms_matches_oracle(dtype, zeros_in_model):
    X, WH = _data(dtype, seed=1, zeros_in_model=zeros_in_model)
    eps = np.finfo(dtype).eps
    X0, WH0 = X.copy(), WH.copy()
    NUM = np.full_like(X, np.nan)
    expected_num, expected_WH, expected_div = oracle_is_terms(X, WH, eps)
    div = K.is_terms(X, WH, NUM, dtype(eps), True)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_allclose(NUM, expected_num, rtol=RTOL[dtype])
    np.testing.assert_allclose(WH, expected_WH, rtol=RTOL[dtype])
    # IS terms of zeros in X (read as eps) are ~ -log(eps): scale the tolerance with them
    tol = _sum_tol(dtype, X0, WH0) * (1 + abs(float(np.log(eps))))
    assert div == pytest.approx(expected_div, rel=10 * RTOL[dtype], abs=tol)
    assert K.is_terms(X0.copy(), WH0.copy(), NUM, dtype(eps), False) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [-0.5, 0.5, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("zeros_in_model", [False, True])
def test_beta_terms_matches_oracle(dtype, beta, zeros_in_model):
    X, WH = _data(dtype, seed=2, zeros_in_model=zeros_in_model)
    if beta < 0:  # 0 ** negative is inf; the kernel is not meant for zeros in X then
        X = np.maximum(X, dtype(0.01))
    eps = np.finfo(dtype).eps
    X0, WH0 = X.copy(), WH.copy()
    NUM = np.full_like(X, np.nan)
    expected_num, expected_WH, expected_div = oracle_beta_terms(X, WH, beta, eps)
    div = K.beta_terms(X, WH, NUM, beta, dtype(eps), True)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_allclose(NUM, expected_num, rtol=4 * RTOL[dtype])
    np.testing.assert_allclose(WH, expected_WH, rtol=4 * RTOL[dtype])
    # floored entries of the model give terms up to eps**(beta-1): scale with the largest term
    big = float(np.max(np.abs(expected_num) + np.abs(expected_WH)))
    tol = _sum_tol(dtype, X0, WH0) * max(1.0, big)
    assert div == pytest.approx(expected_div, rel=RTOL[dtype] * 10, abs=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [1.0, 0.5, 2.0 / 3.0])
def test_mu_step_matches_oracle(dtype, gamma):
    rng = np.random.default_rng(3)
    A = rng.uniform(0.0, 2.0, size=(19, 7)).astype(dtype)
    A[0, 0] = 0.0
    num = rng.uniform(0.0, 2.0, size=A.shape).astype(dtype)
    den = rng.uniform(0.0, 2.0, size=A.shape).astype(dtype)
    den[1, :3] = 0.0  # floored at eps, not a division by zero
    num[2, 1] = 0.0
    eps = np.finfo(dtype).eps
    expected = oracle_mu_step(A, num, den, gamma, eps)
    num0, den0 = num.copy(), den.copy()
    K.mu_step(A, num, den, gamma, dtype(eps))
    assert A.dtype == dtype
    assert np.all(np.isfinite(A))
    np.testing.assert_allclose(A, expected, rtol=4 * RTOL[dtype])
    np.testing.assert_array_equal(num, num0)
    np.testing.assert_array_equal(den, den0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [1.0, 0.5])
@pytest.mark.parametrize("axis", ["cols", "rows"])
def test_mu_step_broadcast_matches_oracle(dtype, gamma, axis):
    """The vector-denominator kernels equal mu_step with the vector broadcast to a full array."""
    rng = np.random.default_rng(5)
    A = rng.uniform(0.0, 2.0, size=(19, 7)).astype(dtype)
    num = rng.uniform(0.0, 2.0, size=A.shape).astype(dtype)
    vec = rng.uniform(0.0, 2.0, size=A.shape[1] if axis == "cols" else A.shape[0]).astype(dtype)
    vec[1] = 0.0  # floored at eps
    full = np.broadcast_to(vec if axis == "cols" else vec[:, None], A.shape)
    eps = np.finfo(dtype).eps
    expected = oracle_mu_step(A, num, full, gamma, eps)
    kernel = K.mu_step_cols if axis == "cols" else K.mu_step_rows
    kernel(A, num, vec, gamma, dtype(eps))
    assert np.all(np.isfinite(A))
    np.testing.assert_allclose(A, expected, rtol=4 * RTOL[dtype])


def test_mu_step_gamma_matters():
    """Gamma != 1 must actually be applied (guards against a kernel that ignores it)."""
    A1 = np.ones((3, 3))
    A2 = np.ones((3, 3))
    num = np.full((3, 3), 4.0)
    den = np.ones((3, 3))
    K.mu_step(A1, num, den, 1.0, 1e-16)
    K.mu_step(A2, num, den, 0.5, 1e-16)
    np.testing.assert_allclose(A1, oracle_mu_step(np.ones((3, 3)), num, den, 1.0, 1e-16))
    np.testing.assert_allclose(A2, oracle_mu_step(np.ones((3, 3)), num, den, 0.5, 1e-16))
    assert not np.allclose(A1, A2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("zeros_in_model", [False, True])
def test_beta_divergence_kernel_matches_oracle(dtype, beta, zeros_in_model):
    X, WH = _data(dtype, seed=4, zeros_in_model=zeros_in_model)
    eps = np.finfo(dtype).eps
    X0, WH0 = X.copy(), WH.copy()
    expected = oracle_divergence(X, WH, beta, eps)
    div = K.beta_divergence_kernel(X, WH, beta, dtype(eps))
    np.testing.assert_array_equal(X, X0)  # no side effects
    np.testing.assert_array_equal(WH, WH0)
    scale = 1.0
    if zeros_in_model and beta < 1:
        scale = float(eps ** (beta - 1))
    if beta == 0:
        scale *= 1 + abs(float(np.log(eps)))
    assert div == pytest.approx(expected, rel=10 * RTOL[dtype], abs=_sum_tol(dtype, X0, WH0) * scale)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_terms_kernels_agree_with_divergence_kernel(beta):
    """The divergence returned by the update kernels is the model's, before overwrite."""
    X, WH = _data(np.float64, seed=5)
    eps = np.finfo(np.float64).eps
    expected = K.beta_divergence_kernel(X, WH, beta, eps)
    if beta == 1.0:
        got = K.kl_terms(X, WH.copy(), eps, True)
    elif beta == 0.0:
        got = K.is_terms(X, WH.copy(), np.empty_like(X), eps, True)
    else:
        got = K.beta_terms(X, WH.copy(), np.empty_like(X), beta, eps, True)
    assert got == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- scikit-learn as oracle


def _sk(X, WH, beta):
    """scikit-learn's divergence of X and WH (WH @ I is exact in floating point)."""
    return float(sk_beta_divergence(X, WH, np.eye(X.shape[1], dtype=X.dtype), beta))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_divergence_matches_sklearn(beta):
    X, WH = _data(np.float64, seed=6)
    if beta == 0:
        # scikit-learn skips zeros of X for IS (our kernel reads them as eps): compare where they agree
        X = np.maximum(X, 0.05)
    eps = np.finfo(np.float64).eps
    expected = _sk(X, WH, beta)
    # sklearn floors the model at float32's eps; the model here is >= 0.05, so that never bites
    assert K.beta_divergence_kernel(X, WH, beta, eps) == pytest.approx(expected, rel=1e-9)
    if beta == 1.0:
        got = K.kl_terms(X, WH.copy(), eps, True)
    elif beta == 0.0:
        got = K.is_terms(X, WH.copy(), np.empty_like(X), eps, True)
    elif beta == 2.0:
        got = None
    else:
        got = K.beta_terms(X, WH.copy(), np.empty_like(X), beta, eps, True)
    if got is not None:
        assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.5, 2.0, 3.0])
def test_divergence_matches_sklearn_float32(beta):
    X, WH = _data(np.float32, seed=7)
    expected = _sk(X.astype(np.float64), WH.astype(np.float64), beta)
    got = K.beta_divergence_kernel(X, WH, beta, np.float32(np.finfo(np.float32).eps))
    assert got == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------- thread_limit


def _blas_threads():
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


@pytest.fixture
def two_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs at least 2 Numba threads to see a limit")
    if not _blas_threads():
        pytest.skip("no BLAS thread pool found by threadpoolctl")
    old_numba = numba.get_num_threads()
    numba.set_num_threads(2)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        yield
    numba.set_num_threads(old_numba)


def test_thread_limit_limits_and_restores(two_threads):
    before_numba, before_blas = numba.get_num_threads(), _blas_threads()
    assert before_numba == 2 and all(n == 2 for n in before_blas)
    with K.thread_limit(1):
        assert numba.get_num_threads() == 1
        assert all(n == 1 for n in _blas_threads())
    assert numba.get_num_threads() == before_numba
    assert _blas_threads() == before_blas


def test_thread_limit_restores_when_body_raises(two_threads):
    before_numba, before_blas = numba.get_num_threads(), _blas_threads()
    with pytest.raises(RuntimeError, match="boom"):
        with K.thread_limit(1):
            assert numba.get_num_threads() == 1
            raise RuntimeError("boom")
    assert numba.get_num_threads() == before_numba
    assert _blas_threads() == before_blas


def test_thread_limit_none_leaves_the_callers_settings_and_negative_counts_back(two_threads):
    before_numba, before_blas = numba.get_num_threads(), _blas_threads()
    with K.thread_limit(None):  # BLAS threads are the caller's business (issue 18)
        assert numba.get_num_threads() == before_numba
        assert _blas_threads() == before_blas
    with K.thread_limit(-1):  # all cores, capped at Numba's pool size
        assert numba.get_num_threads() == min(numba.config.NUMBA_NUM_THREADS, K._n_cores())
    assert numba.get_num_threads() == before_numba
    assert _blas_threads() == before_blas


def test_thread_limit_none_reads_no_machine_state(two_threads, monkeypatch):
    import builtins

    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    with K.thread_limit(None):
        pass
    assert not [f for f in opened if f.startswith("/proc")]
