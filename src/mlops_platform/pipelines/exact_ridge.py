"""A scikit-learn ``Ridge`` fitted by one direct solve of its normal equations.

Why: on one-hot locations (sparse, with an intercept) ``Ridge`` can only iterate
(``sparse_cg``): ~275 passes over the rows, 2.8 s at 78k rows and 22.7 s at 778k
(``bench/train.py``). The columns are few (about 1,500: states, cities, zips, numbers), so the
weighted Gram matrix is small and one Cholesky solve gives the exact minimiser of the same
objective, ``sum w (y - b0 - x b)² + alpha |b|²``, which the iterations approach to their
tolerance. The result is a plain fitted ``Ridge`` (same attributes), so predicting, SHAP and the
compiled serving path see no difference.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

# Above this many columns the dense Gram matrix (8 bytes × columns²) is not worth it: Ridge's own
# iterative solver is used instead. 4,000 columns: 128 MB.
MAX_COLUMNS = 4_000
# Rows per block when forming the Gram matrix, so the weighted copy of the rows stays small.
_BLOCK_ROWS = 100_000


def fits_exactly(ridge: object, X: object) -> bool:
    """Whether :func:`fit` applies: a plain Ridge (intercept, no sign constraint, one target)."""
    return (
        type(ridge) is Ridge
        and ridge.fit_intercept
        and not ridge.positive
        and np.ndim(ridge.alpha) == 0
        and X.shape[1] <= MAX_COLUMNS
    )


def fit(
    ridge: Ridge, X: sparse.spmatrix | np.ndarray, y: np.ndarray, sample_weight: np.ndarray
) -> Ridge:
    """Fit ``ridge`` in place on ``X`` (sparse or dense), ``y`` and ``sample_weight``."""
    if not fits_exactly(ridge, X):
        return ridge.fit(X, y, sample_weight=sample_weight)
    X = sparse.csr_matrix(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    total = w.sum()
    x_mean = np.asarray(X.T @ w).ravel() / total
    y_mean = float(w @ y) / total
    gram = np.zeros((X.shape[1], X.shape[1]))
    moment = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        rows = X[start : start + _BLOCK_ROWS]
        weighted = rows.multiply(w[start : start + _BLOCK_ROWS, None]).tocsr()
        gram += (rows.T @ weighted).toarray()
        moment += np.asarray(weighted.T @ y[start : start + _BLOCK_ROWS]).ravel()
    # Centre on the weighted means (the intercept is not penalised), then add the penalty.
    gram -= total * np.outer(x_mean, x_mean)
    moment -= total * x_mean * y_mean
    gram[np.diag_indices_from(gram)] += float(ridge.alpha)
    # One BLAS thread: the solve is ~0.15 CPU-s either way at 1,460 columns, but with two threads
    # on shared cores each waits at every barrier, spinning: 0.5-1.25 CPU-s measured at load ~7.
    with threadpool_limits(limits=1, user_api="blas"):
        ridge.coef_ = linalg.solve(gram, moment, assume_a="pos")
    ridge.intercept_ = y_mean - float(x_mean @ ridge.coef_)
    ridge.n_features_in_ = X.shape[1]
    ridge.n_iter_ = None
    ridge.solver_ = "cholesky"
    return ridge
