"""The direct Ridge solve gives what Ridge's own solver converges to."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.linear_model import Ridge

from mlops_platform.pipelines import exact_ridge


def _one_hot_problem(rows: int = 3_000, seed: int = 0) -> tuple[sparse.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    numbers = rng.normal(size=(rows, 3))
    levels = rng.integers(0, 200, size=rows)
    onehot = sparse.csr_matrix((np.ones(rows), (np.arange(rows), levels)), shape=(rows, 200))
    X = sparse.hstack([sparse.csr_matrix(numbers), onehot]).tocsr()
    y = 12 + numbers @ [0.5, -0.2, 0.1] + rng.normal(size=200)[levels] + rng.normal(size=rows)
    return X, y


@pytest.mark.parametrize("alpha", [0.1, 1.0, 30.0])
def test_matches_ridge_converged_on_weighted_sparse_rows(alpha: float) -> None:
    X, y = _one_hot_problem()
    weight = np.random.default_rng(1).uniform(0.1, 1.0, size=len(y))
    exact = exact_ridge.fit(Ridge(alpha=alpha), X, y, weight)
    reference = Ridge(alpha=alpha, tol=1e-12, max_iter=100_000).fit(X, y, sample_weight=weight)
    assert type(exact) is Ridge
    np.testing.assert_allclose(exact.coef_, reference.coef_, atol=1e-6)
    assert exact.intercept_ == pytest.approx(reference.intercept_, abs=1e-6)
    np.testing.assert_allclose(exact.predict(X), reference.predict(X), atol=1e-6)


def test_blocks_add_up_like_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _one_hot_problem(rows=1_000)
    weight = np.ones(len(y))
    whole = exact_ridge.fit(Ridge(), X, y, weight)
    monkeypatch.setattr(exact_ridge, "_BLOCK_ROWS", 128)
    blocked = exact_ridge.fit(Ridge(), X, y, weight)
    np.testing.assert_allclose(blocked.coef_, whole.coef_, atol=1e-10)


def test_other_estimators_and_wide_inputs_fit_as_usual(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = _one_hot_problem(rows=500)
    monkeypatch.setattr(exact_ridge, "MAX_COLUMNS", 10)
    assert not exact_ridge.fits_exactly(Ridge(), X)
    fitted = exact_ridge.fit(Ridge(), X, y, np.ones(len(y)))
    assert fitted.solver_ == "sparse_cg"
    assert not exact_ridge.fits_exactly(Ridge(positive=True), X[:, :5])
