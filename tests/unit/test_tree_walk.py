"""The compiled forest's many-row walk (deepest trees first, finished trees left behind) lands
every row in the same leaf as sklearn, and sums the leaves in sklearn's order: bit for bit.

Small boosted models are fitted on random data with missing values (so both directions of
``missing_go_to_left`` occur) and trees of uneven depth, then compared on random rows, NaNs,
infinities and values exactly at and next to every split threshold.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from mlops_platform.serving.compiled import _compile_forest, _Forest

N_FEATURES = 6


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """HGB's OpenMP threads spin-wait; on a busy 2-core machine that makes fits 5× slower."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _with_nans(rng: np.random.Generator, x: np.ndarray, share: float) -> np.ndarray:
    x = x.copy()
    x[rng.random(x.shape) < share] = np.nan
    return x


@pytest.fixture(scope="module", params=[(15, None), (48, None), (31, 4)], ids=str)
def fitted(request: pytest.FixtureRequest) -> HistGradientBoostingRegressor:
    """A boosted model with ``(max_leaf_nodes, max_depth)``, trained with missing values."""
    leaves, depth = request.param
    rng = np.random.default_rng(leaves)
    x = _with_nans(rng, rng.normal(size=(2000, N_FEATURES)), 0.15)
    y = np.nan_to_num(x[:, 0] * 2 + np.sin(x[:, 1] * 3) + x[:, 2] * x[:, 3]) + rng.normal(size=2000)
    model = HistGradientBoostingRegressor(
        max_iter=40, max_leaf_nodes=leaves, max_depth=depth, early_stopping=False, random_state=0
    )
    return model.fit(x, y)


def _rows(model: HistGradientBoostingRegressor, seed: int) -> np.ndarray:
    """Random rows with NaNs and infinities, plus each split threshold and its neighbours."""
    rng = np.random.default_rng(seed)
    rows = [_with_nans(rng, rng.normal(size=(150, N_FEATURES)) * 2, 0.2)]
    rows.append(np.array([[np.inf] * N_FEATURES, [-np.inf] * N_FEATURES, [np.nan] * N_FEATURES]))
    nodes = np.concatenate([p.nodes for (p,) in model._predictors])
    splits = nodes[nodes["is_leaf"] == 0]
    base = rng.normal(size=N_FEATURES)
    for node in splits[:: max(1, len(splits) // 80)]:
        t, f = node["num_threshold"], node["feature_idx"]
        for value in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)):
            row = base.copy()
            row[f] = value
            rows.append(row[None, :])
    return np.vstack(rows)


def _per_tree(model: HistGradientBoostingRegressor, x: np.ndarray) -> np.ndarray:
    """The reference: each row down each tree in Python, leaves added tree by tree."""
    total = np.full(len(x), float(np.ravel(model._baseline_prediction)[0]))
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        leaf_values = np.empty(len(x))
        for i, row in enumerate(x):
            n = 0
            while not nodes[n]["is_leaf"]:
                value = row[nodes[n]["feature_idx"]]
                if np.isnan(value):
                    go_left = bool(nodes[n]["missing_go_to_left"])
                else:
                    go_left = bool(value <= nodes[n]["num_threshold"])
                n = int(nodes[n]["left"] if go_left else nodes[n]["right"])
            leaf_values[i] = nodes[n]["value"]
        total += leaf_values
    return total


def _plain_walk(forest: _Forest, x: np.ndarray) -> np.ndarray:
    """Every tree walked to the deepest level, as before the deepest-first walk: all rows and
    trees at once, level by level, on the compiled forest's own arrays."""
    doubled = np.hstack([np.where(np.isnan(x), -np.inf, x), x])
    leaves = np.broadcast_to(forest.roots, (len(x), len(forest.roots)))
    row = np.arange(len(x))[:, None]
    for _ in range(forest.depth):
        go_left = doubled[row, forest.feature[leaves]] <= forest.threshold[leaves]
        leaves = np.where(go_left, forest.left[leaves], forest.right[leaves])
    start = np.full((len(x), 1), forest.baseline)
    return np.cumsum(np.hstack([start, forest.value[leaves]]), axis=1)[:, -1]


def test_fitted_trees_have_uneven_depths_and_both_missing_directions(
    fitted: HistGradientBoostingRegressor,
) -> None:
    """Otherwise the walk's early stop and NaN routing would not be exercised (a ``max_depth``
    makes all trees equally deep: then no tree stops early, also a case to cover)."""
    forest = _compile_forest(fitted)
    if fitted.max_depth is None:
        assert len(set(forest.walk.active)) > 1, forest.walk.active
    nodes = np.concatenate([p.nodes for (p,) in fitted._predictors])
    splits = nodes[nodes["is_leaf"] == 0]
    assert set(splits["missing_go_to_left"]) == {0, 1}


@pytest.mark.parametrize("n_rows", [2, 3, 100, None])
def test_walk_equals_per_tree_walk_plain_walk_and_sklearn(
    fitted: HistGradientBoostingRegressor, n_rows: int | None
) -> None:
    forest = _compile_forest(fitted)
    x = _rows(fitted, seed=n_rows or 0)[:n_rows]
    got = forest.raw(x)
    np.testing.assert_array_equal(got, _per_tree(fitted, x))
    np.testing.assert_array_equal(got, _plain_walk(forest, x))
    np.testing.assert_array_equal(got, fitted._raw_predict(x).ravel())


def test_one_row_path_equals_many_row_path(fitted: HistGradientBoostingRegressor) -> None:
    forest = _compile_forest(fitted)
    x = _rows(fitted, seed=7)[:60]
    singles = np.concatenate([forest.raw(row[None, :]) for row in x])
    np.testing.assert_array_equal(singles, forest.raw(x))
