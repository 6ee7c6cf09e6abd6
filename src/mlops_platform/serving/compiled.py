"""The registered model compiled to lookup tables and numpy arrays, for sub-millisecond serving.

Why: a scikit-learn pipeline spends ~10 ms per one-row ``predict`` in pandas and input
validation, which caps an API at ~100 requests/s per core. :func:`compile_model` reads the fitted
state out of a model built by :func:`mlops_platform.pipelines.train.build_model` (feature counts,
encoder categories and encodings, imputer and scaler statistics, GLM coefficients, HGB trees) and
replays sklearn's arithmetic on plain dicts and numpy arrays: bit-exact for the trees, ~1e-15 for
the GLM (its sparse dot product sums in another order). :func:`build_predictor` serves the
compiled path only after it reproduces the pipeline on a sample, and otherwise serves the
pipeline itself with the reason why.

Numeric functions are numpy ufuncs on purpose: ``math.log1p``/``math.exp`` differ from numpy's
SIMD versions in the last bit, and one bit can flip a tree split.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from itertools import repeat
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import GammaRegressor, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    TargetEncoder,
)

from mlops_platform.pipelines.features import (
    ACRE_FLOOR,
    HIGH_CARDINALITY,
    LOW_CARDINALITY,
    MISSING_CATEGORY,
    NUMERIC,
    ListingFeatureBuilder,
    raw_frame,
)
from mlops_platform.pipelines.linear_trees import LinearTrees
from mlops_platform.schema import (
    EXAMPLE_RECORD,
    FEATURES,
    MAX_ACRES,
    MAX_HOUSE_SIZE,
    MAX_ROOMS,
    MIN_SOLD_DATE,
    OPTIONAL_FIELDS,
    STATUSES,
)

log = logging.getLogger(__name__)

Record = dict[str, Any]
Columns = Mapping[str, Sequence[Any]]  # one list of values per feature, rows in order
CATEGORICAL: tuple[str, ...] = (*LOW_CARDINALITY, *HIGH_CARDINALITY)


class CompileError(Exception):
    """The model has a part the compiled path cannot reproduce exactly (or it did not match)."""


class CompiledMismatch(CompileError):
    """The compiled path compiled, but predicted otherwise than the pipeline: a bug to alert on."""


# --- raw record values -------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    """None, NaN and pd.NA: what pandas turns into a missing value in the pipeline."""
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _number(value: Any) -> float:
    return np.nan if _is_missing(value) else float(value)


def _category(value: Any) -> str:
    """Like ``astype("string").fillna(MISSING_CATEGORY)``."""
    if _is_missing(value):
        return MISSING_CATEGORY
    return value if isinstance(value, str) else str(value)


def _sold_year(value: Any) -> float:
    """``dt.year + dt.day_of_year / 365.25`` of a date, datetime or ISO string; NaN if none."""
    return np.nan if _is_missing(value) else _known_sold_year(value)


@functools.lru_cache(maxsize=1 << 16, typed=True)
def _known_sold_year(value: Any) -> float:
    """:func:`_sold_year` of a present value, remembered between requests: sale dates repeat
    across requests, and ``timetuple`` is most of the cost (``typed``: ``1`` is not ``True``)."""
    if not isinstance(value, date):
        try:
            value = date.fromisoformat(str(value)[:10])
        except ValueError:
            return np.nan  # pd.to_datetime(errors="coerce")
    return value.year + value.timetuple().tm_yday / 365.25


_NUMBER_TYPES = frozenset({int, float, type(None)})


def _numbers(values: Sequence[Any]) -> np.ndarray:
    """``_number`` of each value; numpy reads plain ints, floats and None (as NaN) at once."""
    if set(map(type, values)) <= _NUMBER_TYPES:
        return np.array(values, dtype=np.float64).reshape(len(values))
    return np.array([_number(v) for v in values], dtype=np.float64).reshape(len(values))


def _sold_years(values: Sequence[Any]) -> list[float]:
    """``_sold_year`` of each value; a date (what the API's check gives) is one cache lookup."""
    return [_known_sold_year(v) if v.__class__ is date else _sold_year(v) for v in values]


def _categories(values: Sequence[Any]) -> list[str]:
    """``_category`` of each value; strings (almost all of them) are their own category."""
    return [v if v.__class__ is str else _category(v) for v in values]


def _counts(table: Mapping[str, float], values: Sequence[Any]) -> list[float]:
    """Listings per broker or street id: 0 if missing, 1 if unseen (no call per string id)."""
    return [
        table.get(v, 1.0)
        if v.__class__ is str
        else 0.0
        if _is_missing(v)
        else table.get(str(v), 1.0)
        for v in values
    ]


def record_columns(records: Sequence[Record]) -> dict[str, list[Any]]:
    """Records → one list per feature (a key absent from a record reads as None)."""
    return {name: [record.get(name) for record in records] for name in FEATURES}


def column_records(columns: Columns) -> list[Record]:
    """One list per field → one dict per record (the inverse of :func:`record_columns`)."""
    names = tuple(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _rows(columns: Columns) -> int:
    return len(next(iter(columns.values()))) if columns else 0


# --- feature builder ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Features:
    """ListingFeatureBuilder's fitted state and transform, on columns instead of a DataFrame."""

    reference_year: float
    broker_counts: dict[str, float]
    street_counts: dict[str, float]

    def numeric(self, columns: Columns) -> np.ndarray:
        """Rows × NUMERIC, as the builder computes them."""
        rows = _rows(columns)
        reference = self.reference_year
        x = np.zeros((rows, len(NUMERIC)))
        x[:, 0] = _numbers(columns["bed"])
        x[:, 1] = _numbers(columns["bath"])
        x[:, 2] = np.log1p(_numbers(columns["house_size"]))
        x[:, 3] = np.log(_numbers(columns["acre_lot"]) + ACRE_FLOOR)
        x[:, 4] = reference - np.array(_sold_years(columns["prev_sold_date"]), dtype=np.float64)
        x[:, 5] = _counts(self.broker_counts, columns["brokered_by"])
        x[:, 6] = _counts(self.street_counts, columns["street"])
        no_size = np.isnan(x[:, 2])
        x[:, 7:9] = np.where(no_size[:, None], x[:, 0:2], 0.0)  # rooms without size
        return x

    @staticmethod
    def categories(columns: Columns) -> dict[str, list[str]]:
        """Category strings per CATEGORICAL column, ``<missing>`` for absent values."""
        out = {c: _categories(columns[c]) for c in CATEGORICAL if c != "zip3"}
        out["zip3"] = [z if z == MISSING_CATEGORY else z[:3] for z in out["zip_code"]]
        return out


def _compile_features(builder: Any) -> _Features:
    if type(builder) is not ListingFeatureBuilder:
        raise CompileError(f"unsupported feature step {type(builder).__name__}")
    return _Features(
        reference_year=float(builder.reference_year_),
        broker_counts={str(k): float(v) for k, v in builder.broker_counts_.items()},
        street_counts={str(k): float(v) for k, v in builder.street_counts_.items()},
    )


# --- column encoders ---------------------------------------------------------------------------

Step = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Impute:
    """SimpleImputer: fill NaN with the fitted statistic, then append missing indicators."""

    statistics: np.ndarray
    indicator: np.ndarray | None  # input columns that get a 0/1 "was missing" column

    def __call__(self, x: np.ndarray) -> np.ndarray:
        missing = np.isnan(x)
        filled = np.where(missing, self.statistics, x)
        if self.indicator is None:
            return filled
        return np.hstack([filled, missing[:, self.indicator]])


@dataclass(frozen=True)
class _Scale:
    """StandardScaler: ``(x - mean) / scale``, in sklearn's order of operations."""

    mean: np.ndarray | None
    scale: np.ndarray | None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x / self.scale
        return x


@dataclass(frozen=True)
class _Lookup:
    """One float per category (ordinal code or target encoding), a default for unseen ones."""

    tables: tuple[dict[str, float], ...]
    defaults: tuple[float, ...]

    def __call__(self, columns: list[list[str]]) -> np.ndarray:
        values = [
            [table.get(v, default) for v in column]
            for table, default, column in zip(self.tables, self.defaults, columns, strict=True)
        ]
        return np.array(values, dtype=np.float64).T


@dataclass(frozen=True)
class _OneHot:
    """OneHotEncoder: the output column of each category; unseen categories set none."""

    tables: tuple[dict[str, int], ...]
    width: int

    def __call__(self, columns: list[list[str]]) -> np.ndarray:
        out = np.zeros((len(columns[0]), self.width))
        rows = np.arange(len(columns[0]))
        for table, column in zip(self.tables, columns, strict=True):
            index = np.fromiter(map(table.get, column, repeat(-1)), np.intp, len(column))
            seen = index >= 0
            out[rows[seen], index[seen]] = 1.0
        return out

    def dot(self, columns: list[list[str]], coef: np.ndarray) -> np.ndarray:
        """``self(columns) @ coef`` without the (rows × categories) matrix: per row, the sum of
        its categories' coefficients (an unseen category, index -1, reads the appended 0)."""
        padded = np.append(coef, 0.0)
        total = np.zeros(len(columns[0]))
        for table, column in zip(self.tables, columns, strict=True):
            total += padded[np.fromiter(map(table.get, column, repeat(-1)), np.intp, len(column))]
        return total


def _plain(values: np.ndarray) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _compile_impute(imputer: SimpleImputer) -> _Impute:
    if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
        raise CompileError("SimpleImputer with missing_values other than NaN")
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(statistics).any() or imputer.keep_empty_features:
        raise CompileError("SimpleImputer with an all-missing (dropped or kept) column")
    indicator = getattr(imputer, "indicator_", None)
    return _Impute(statistics, None if indicator is None else np.asarray(indicator.features_))


def _compile_scale(scaler: StandardScaler) -> _Scale:
    return _Scale(
        np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else None,
        np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else None,
    )


def _compile_ordinal(encoder: OrdinalEncoder) -> _Lookup:
    if encoder.min_frequency is not None or encoder.max_categories is not None:
        raise CompileError("OrdinalEncoder with infrequent categories")
    if encoder.handle_unknown != "use_encoded_value":
        raise CompileError(f"OrdinalEncoder with handle_unknown={encoder.handle_unknown!r}")
    tables = tuple(
        {c: float(i) for i, c in enumerate(_plain(cats))} for cats in encoder.categories_
    )
    return _Lookup(tables, (float(encoder.unknown_value),) * len(tables))


def _compile_target(encoder: TargetEncoder) -> _Lookup:
    if encoder.target_type_ != "continuous":
        raise CompileError(f"TargetEncoder with target_type {encoder.target_type_!r}")
    tables = tuple(
        dict(zip(_plain(cats), map(float, codes), strict=True))
        for cats, codes in zip(encoder.categories_, encoder.encodings_, strict=True)
    )
    return _Lookup(tables, (float(encoder.target_mean_),) * len(tables))


def _compile_onehot(encoder: OneHotEncoder, columns: Sequence[str]) -> _OneHot:
    if encoder.drop is not None or encoder.handle_unknown != "ignore":
        raise CompileError("OneHotEncoder with drop or handle_unknown other than 'ignore'")
    # Without min_frequency/max_categories sklearn has no infrequent state to read at all.
    enabled = getattr(encoder, "_infrequent_enabled", False)
    infrequent = encoder.infrequent_categories_ if enabled else [None] * len(columns)
    tables, names, width = [], [], 0
    for column, cats, rare in zip(columns, encoder.categories_, infrequent, strict=True):
        rare_set = set() if rare is None else set(_plain(rare))
        table = {}
        for cat in _plain(cats):
            if cat not in rare_set:
                table[cat], width = width, width + 1
                names.append(f"{column}_{cat}")
        if rare_set:
            table.update(dict.fromkeys(rare_set, width))
            width += 1
            names.append(f"{column}_infrequent_sklearn")
        tables.append(table)
    if names != list(encoder.get_feature_names_out(columns)):
        raise CompileError("OneHotEncoder output columns are not in the expected order")
    return _OneHot(tuple(tables), width)


@dataclass(frozen=True)
class _Block:
    """One ColumnTransformer entry: its input columns, a category encoder, then numeric steps."""

    numeric: np.ndarray | None  # indices into NUMERIC, for a numeric block
    categorical: tuple[str, ...]  # column names, for a categorical block
    encode: Callable[[list[list[str]]], np.ndarray] | None
    steps: tuple[Step, ...]

    def __call__(self, numbers: np.ndarray, categories: dict[str, list[str]]) -> np.ndarray:
        if self.encode is not None:
            x = self.encode([categories[c] for c in self.categorical])
        else:
            x = numbers[:, self.numeric]
        for step in self.steps:
            x = step(x)
        return x

    def dot(
        self, numbers: np.ndarray, categories: dict[str, list[str]], coef: np.ndarray
    ) -> np.ndarray:
        """``self(numbers, categories) @ coef``; a one-hot block never builds its matrix."""
        if isinstance(self.encode, _OneHot) and not self.steps:
            return self.encode.dot([categories[c] for c in self.categorical], coef)
        return self(numbers, categories) @ coef


def _flatten(transformer: Any) -> list[Any]:
    if isinstance(transformer, Pipeline):
        return [step for _, step in transformer.steps]
    return [transformer]


def _compile_block(transformer: Any, columns: Sequence[str]) -> _Block:
    stages = _flatten(transformer)
    encode = None
    first = stages[0]
    if isinstance(first, OneHotEncoder):
        encode = _compile_onehot(first, columns)
    elif isinstance(first, OrdinalEncoder):
        encode = _compile_ordinal(first)
    elif isinstance(first, TargetEncoder):
        encode = _compile_target(first)
    if encode is not None:
        if not set(columns) <= set(CATEGORICAL):
            raise CompileError(f"category encoder on non-category columns {list(columns)}")
        stages = stages[1:]
    elif not set(columns) <= set(NUMERIC):
        raise CompileError(f"no category encoder for columns {list(columns)}")
    steps: list[Step] = []
    for stage in stages:
        if isinstance(stage, SimpleImputer):
            steps.append(_compile_impute(stage))
        elif isinstance(stage, StandardScaler):
            steps.append(_compile_scale(stage))
        elif not (type(stage) is FunctionTransformer and stage.func is None):
            raise CompileError(f"unsupported transformer {type(stage).__name__}")
    numeric = None if encode else np.array([NUMERIC.index(c) for c in columns])
    return _Block(numeric, tuple(columns) if encode else (), encode, tuple(steps))


def _compile_encoder(encoder: Any) -> tuple[_Block, ...]:
    if type(encoder) is not ColumnTransformer:
        raise CompileError(f"unsupported encoding step {type(encoder).__name__}")
    blocks = []
    for _, transformer, columns in encoder.transformers_:
        if (isinstance(transformer, str) and transformer == "drop") or len(columns) == 0:
            continue
        if not all(isinstance(c, str) for c in columns):
            raise CompileError("ColumnTransformer columns must be selected by name")
        if isinstance(transformer, str):  # "passthrough"
            transformer = FunctionTransformer()
        blocks.append(_compile_block(transformer, list(columns)))
    return tuple(blocks)


# --- final estimators --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Linear:
    """A log-link GLM, ``exp(intercept + x · coef)``, or without the exp a ridge on log-price."""

    coef: np.ndarray
    intercept: float
    log_link: bool = True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.finish(x @ self.coef)

    def finish(self, dot: np.ndarray) -> np.ndarray:
        """The output from ``x · coef``."""
        linear = dot + self.intercept
        return np.exp(linear) if self.log_link else linear


@dataclass(frozen=True)
class _Forest:
    """All boosted trees as flat arrays, walked for every tree (and row) at once.

    Leaves are their own children, so ``depth`` steps from the roots reach every leaf. Node
    feature indices address the row ``[x with NaN → -inf, x]``: a node whose missing values go
    left reads the first half (``-inf <= t``: left), the others the second half (``NaN <= t`` is
    false: right). Otherwise ``x <= t`` goes left, as in sklearn's ``_predictor.pyx``.
    """

    feature: np.ndarray  # index into the doubled row
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    depth: int
    baseline: float
    walk: _Walk

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Prices: the target transform's exp of the raw (log-price) prediction."""
        return np.exp(self.raw(x))

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Sum of leaf values, added tree by tree after the baseline as sklearn does."""
        doubled = np.hstack([np.where(np.isnan(x), -np.inf, x), x])
        if len(x) == 1:
            leaves = self._leaves_one(doubled[0])
            start = np.full((len(x), 1), self.baseline)
            return np.cumsum(np.hstack([start, self.value[leaves]]), axis=1)[:, -1]
        return self.walk.raw(doubled, self.baseline)

    def _leaves_one(self, row: np.ndarray) -> np.ndarray:
        # One row: deciding every node costs 3 numpy calls, then one gather per level.
        step = np.where(np.take(row, self.feature) <= self.threshold, self.left, self.right)
        node = self.roots
        for _ in range(self.depth):
            node = np.take(step, node)
        return node[None, :]


@dataclass(frozen=True)
class _Walk:
    """The many-row tree walk, ~30 % fewer element steps than walking every tree to the deepest.

    Why: at 100 rows the walk is most of the compiled model's time, and it is paid per element.
    Trees are walked deepest first, one tree per row of a (trees × rows) array, so after level
    ``L`` only the first ``active[L]`` rows (trees deeper than ``L``) move on: a contiguous
    slice, no copy. A node ``n`` is addressed as ``2n`` (its ``[right, left]`` pair), so a step
    is ``children2[s + go_left]`` without a multiply. Leaf values are put back in the model's
    tree order before the running sum, which therefore adds exactly as sklearn does.
    """

    feature2: np.ndarray  # feature of node n at 2n and 2n + 1
    threshold2: np.ndarray
    children2: np.ndarray  # 2 × child of n: right at 2n, left at 2n + 1
    value2: np.ndarray
    roots2: np.ndarray  # 2 × root, deepest tree first
    active: tuple[int, ...]  # trees still moving at each level
    unsort: np.ndarray  # walk order → model order

    def raw(self, doubled: np.ndarray, baseline: float) -> np.ndarray:
        """Baseline plus each tree's leaf value, in model order, for rows of the doubled matrix."""
        n_rows, width = doubled.shape
        flat = doubled.ravel()
        base = np.arange(0, n_rows * width, width, dtype=np.intp)
        state = np.repeat(self.roots2[:, None], n_rows, axis=1)
        for k in self.active:
            node = state[:k]
            index = np.take(self.feature2, node)
            index += base
            go_left = np.take(flat, index) <= np.take(self.threshold2, node)
            np.take(self.children2, node + go_left, out=node)
        terms = np.empty((len(self.roots2) + 1, n_rows))
        terms[0] = baseline
        np.take(np.take(self.value2, state), self.unsort, axis=0, out=terms[1:])
        return np.cumsum(terms, axis=0)[-1]


def _walk(forest: dict[str, Any], depths: np.ndarray) -> _Walk:
    """The :class:`_Walk` of flat forest arrays; ``depths``: each tree's deepest leaf."""
    order = np.argsort(-depths, kind="stable")
    children = np.stack([forest["right"], forest["left"]], axis=1).ravel()
    return _Walk(
        feature2=np.repeat(forest["feature"], 2),
        threshold2=np.repeat(forest["threshold"], 2),
        children2=(2 * children).astype(np.intp),
        value2=np.repeat(forest["value"], 2),
        roots2=(2 * forest["roots"][order]).astype(np.intp),
        active=tuple(int(np.sum(depths > level)) for level in range(int(depths.max()))),
        unsort=np.argsort(order).astype(np.intp),
    )


def _tree_arrays(nodes: np.ndarray, offset: int, n_features: int) -> tuple[np.ndarray, ...]:
    """(feature, threshold, left, right, value) of one TreePredictor, node ids shifted."""
    if nodes["is_categorical"].any():
        raise CompileError("HistGradientBoostingRegressor with native categorical splits")
    leaf = nodes["is_leaf"].astype(bool)
    own = np.arange(len(nodes), dtype=np.intp) + offset
    nan_right = nodes["missing_go_to_left"] == 0
    return (
        np.where(leaf, 0, nodes["feature_idx"] + n_features * nan_right),
        np.where(leaf, np.inf, nodes["num_threshold"]),
        np.where(leaf, own, nodes["left"].astype(np.intp) + offset),
        np.where(leaf, own, nodes["right"].astype(np.intp) + offset),
        np.where(leaf, nodes["value"], 0.0),
    )


def _compile_forest(estimator: HistGradientBoostingRegressor) -> _Forest:
    if estimator.is_categorical_ is not None and np.any(estimator.is_categorical_):
        raise CompileError("HistGradientBoostingRegressor with native categorical splits")
    if estimator.n_trees_per_iteration_ != 1:
        raise CompileError("HistGradientBoostingRegressor with several trees per iteration")
    if type(estimator._loss.link).__name__ != "IdentityLink":
        raise CompileError(f"HistGradientBoostingRegressor with loss {estimator.loss!r}")
    trees = [predictor.nodes for (predictor,) in estimator._predictors]
    if not trees:
        raise CompileError("HistGradientBoostingRegressor without trees")
    roots = np.cumsum([0] + [len(nodes) for nodes in trees[:-1]]).astype(np.intp)
    n_features = int(estimator.n_features_in_)
    parts = [_tree_arrays(t, int(r), n_features) for t, r in zip(trees, roots, strict=True)]
    feature, threshold, left, right, value = (np.concatenate(p) for p in zip(*parts, strict=True))
    depths = np.array([int(nodes["depth"].max()) for nodes in trees])
    arrays = {
        "feature": feature.astype(np.intp),
        "threshold": threshold.astype(np.float64),
        "left": left,
        "right": right,
        "value": value.astype(np.float64),
        "roots": roots,
    }
    return _Forest(
        **arrays,
        depth=int(depths.max()),
        baseline=float(np.ravel(estimator._baseline_prediction)[0]),
        walk=_walk(arrays, depths),
    )


# --- the compiled model ------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledModel:
    """Records in, prices out: features → encoded matrix → GLM or trees, no pandas."""

    features: _Features
    blocks: tuple[_Block, ...]
    head: Callable[[np.ndarray], np.ndarray]  # encoded matrix → price
    feature_names: tuple[str, ...]  # of the encoded matrix, as the pipeline names them
    estimator: Any  # the fitted final estimator, for SHAP on encode_records()
    widths: tuple[int, ...] = ()  # encoded columns per block (a linear head sums block by block)

    def encode_records(self, records: Sequence[Record]) -> np.ndarray:
        """The dense matrix the final estimator sees (rows × ``feature_names``)."""
        return self.encode_columns(record_columns(records))

    def encode_columns(self, columns: Columns) -> np.ndarray:
        return self.encode(self.features.numeric(columns), self.features.categories(columns))

    def encode(self, numbers: np.ndarray, categories: dict[str, list[str]]) -> np.ndarray:
        """The encoded matrix from the features (which parts of a sum may share)."""
        return np.hstack([block(numbers, categories) for block in self.blocks])

    def predict_records(self, records: Sequence[Record]) -> np.ndarray:
        """Predicted prices of ``ListingFeatures.model_dump()`` records."""
        return self.predict_columns(record_columns(records))

    def predict_columns(self, columns: Columns) -> np.ndarray:
        """Predicted prices of records given as one list of values per feature."""
        if not _rows(columns):
            return np.empty(0)
        return self.output(self.features.numeric(columns), self.features.categories(columns))

    def output(self, numbers: np.ndarray, categories: dict[str, list[str]]) -> np.ndarray:
        """The head's output from the features. A linear head takes ``x · coef`` block by block:
        a one-hot block of thousands of locations is then a lookup, not a dense matrix (the sum
        runs in another order than one dot product, ~1e-16 relative, as the GLM's already did)."""
        head = self.head
        if not (isinstance(head, _Linear) and self.widths):
            return head(self.encode(numbers, categories))
        ends = np.cumsum(self.widths)
        dot = np.zeros(len(numbers))
        for block, end, width in zip(self.blocks, ends, self.widths, strict=True):
            dot += block.dot(numbers, categories, head.coef[end - width : end])
        return head.finish(dot)


@dataclass(frozen=True)
class CompiledSum:
    """A :class:`LinearTrees` model: exp of the sum of its parts' log-price outputs.

    Parts fitted on the same rows have the same feature state; :func:`compile_model` makes them
    share one object, and the features are then computed once per request, not once per part.
    """

    parts: tuple[CompiledModel, ...]

    def predict_records(self, records: Sequence[Record]) -> np.ndarray:
        return self.predict_columns(record_columns(records))

    def predict_columns(self, columns: Columns) -> np.ndarray:
        if not _rows(columns):
            return np.empty(0)
        computed: dict[int, tuple[np.ndarray, dict[str, list[str]]]] = {}
        outputs = []
        for part in self.parts:
            features = part.features
            if id(features) not in computed:
                computed[id(features)] = (features.numeric(columns), features.categories(columns))
            outputs.append(part.output(*computed[id(features)]))
        return np.exp(np.sum(outputs, axis=0))


def _shared_features(parts: tuple[CompiledModel, ...]) -> tuple[CompiledModel, ...]:
    """The parts, those with equal feature state holding the same object."""
    first = parts[0].features
    return tuple(
        replace(part, features=first) if part.features == first else part for part in parts
    )


def _split_model(model: Any) -> tuple[Pipeline, bool]:
    """(the fitted pipeline, whether its output is exponentiated by a target transform)."""
    if isinstance(model, TransformedTargetRegressor):
        if model.transformer is not None or model.inverse_func is not np.exp:
            raise CompileError("TransformedTargetRegressor whose inverse is not np.exp")
        return model.regressor_, True
    return model, False


def compile_model(model: Any) -> CompiledModel | CompiledSum:
    """Compile a fitted ``build_model`` model; CompileError names whatever is unsupported."""
    if isinstance(model, LinearTrees):
        parts = (_compile_pipeline(model.linear_, "log"), _compile_pipeline(model.trees_, "log"))
        return CompiledSum(_shared_features(parts))
    pipeline, exponentiate = _split_model(model)
    return _compile_pipeline(pipeline, "price" if exponentiate else "glm")


def _compile_pipeline(pipeline: Any, output: str) -> CompiledModel:
    """``output``: "price" (trees on log-price, exponentiated), "glm" (a log-link GLM) or
    "log" (a part of LinearTrees: trees or ridge on log-price, not exponentiated)."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 3:
        raise CompileError(f"unsupported model {type(pipeline).__name__}: expected 3-step Pipeline")
    builder, encoder, estimator = (step for _, step in pipeline.steps)
    features = _compile_features(builder)
    blocks = _compile_encoder(encoder)
    names = tuple(str(n) for n in encoder.get_feature_names_out())
    if len(names) != estimator.n_features_in_:
        raise CompileError("encoded width does not match the estimator")
    kind = type(estimator)
    head: Callable[[np.ndarray], np.ndarray]
    if (kind is GammaRegressor and output == "glm") or (kind is Ridge and output == "log"):
        coef = np.asarray(estimator.coef_, np.float64)
        head = _Linear(coef, float(estimator.intercept_), log_link=output == "glm")
    elif kind is HistGradientBoostingRegressor and output in ("price", "log"):
        forest = _compile_forest(estimator)
        head = forest if output == "price" else forest.raw
    else:
        where = {"price": " inside a log-target transform", "log": " in LinearTrees"}
        raise CompileError(f"unsupported final estimator {kind.__name__}{where.get(output, '')}")
    empty = record_columns([{}])
    numbers, categories = features.numeric(empty), features.categories(empty)
    widths = tuple(block(numbers, categories).shape[1] for block in blocks)
    if sum(widths) != len(names):
        raise CompileError(f"compiled encoding has {sum(widths)} columns, pipeline {len(names)}")
    return CompiledModel(features, blocks, head, names, estimator, widths)


# --- verification and the served predictor -----------------------------------------------------


def frame_records(frame: pd.DataFrame) -> list[Record]:
    """CLEAN-style rows → records, missing values (NaN, pd.NA) as None."""
    records = frame[list(FEATURES)].to_dict("records")
    return [{k: None if _is_missing(v) else v for k, v in r.items()} for r in records]


def edge_rows() -> pd.DataFrame:
    """Listings where a rewrite of the features would go wrong first, as a raw frame: every
    category unseen, every optional field missing (alone and all at once), every status, numbers
    at zero and at the schema's limits (beyond any training range), the oldest sale date. Fixed,
    so every model version is checked on the same rows. (Exact tree split thresholds are checked
    by the unit tests, which can search the fitted trees for them.)"""
    base = EXAMPLE_RECORD
    unseen = {
        "city": "Unseen City",
        "zip_code": "00001",
        "brokered_by": "unseen-broker",
        "street": "unseen-street",
        "state": "Guam",
    }
    records = [base, {**base, **unseen}, {**base, **dict.fromkeys(OPTIONAL_FIELDS)}]
    records += [{**base, name: value} for name, value in unseen.items()]
    records += [{**base, name: None} for name in OPTIONAL_FIELDS]
    records += [{**base, "status": status} for status in STATUSES]
    limits = {"bed": MAX_ROOMS, "bath": MAX_ROOMS, "acre_lot": MAX_ACRES}
    records += [{**base, name: value} for name, value in limits.items()]
    records += [{**base, name: 0} for name in ("bed", "bath", "acre_lot")]
    records += [{**base, "house_size": size} for size in (1.0, MAX_HOUSE_SIZE)]
    records.append({**base, "prev_sold_date": MIN_SOLD_DATE.isoformat()})
    return raw_frame(records)


def verify(
    compiled: CompiledModel | CompiledSum, model: Any, frame: pd.DataFrame, rtol: float = 1e-6
) -> float:
    """Max relative difference to ``model.predict`` on ``frame``; CompiledMismatch above
    ``rtol``."""
    if frame.empty:
        raise CompileError("no sample rows to verify the compiled model against")
    expected = np.asarray(model.predict(frame[list(FEATURES)]), dtype=np.float64)
    got = compiled.predict_records(frame_records(frame))
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.abs(got - expected) / np.abs(expected)
    worst = float(np.max(np.where(got == expected, 0.0, relative)))
    if not worst <= rtol:  # NaN counts as a mismatch
        raise CompiledMismatch(
            f"compiled predictions differ from the pipeline by {worst:.3g} > {rtol}"
        )
    return worst


class Predictor(Protocol):
    """What the API serves with: ``path`` says which, ``reason`` why it is not compiled, and
    ``mismatch`` whether that is because the compiled path predicted otherwise (alerted on)."""

    path: str
    reason: str | None
    mismatch: bool
    verified_rows: int  # rows the compiled path was checked on (0 when it is not served)

    def predict_records(self, records: Sequence[Record]) -> np.ndarray: ...

    def predict_columns(self, columns: Columns) -> np.ndarray: ...


@dataclass(frozen=True)
class CompiledPredictor:
    """The compiled model, verified against the pipeline on a sample."""

    compiled: CompiledModel | CompiledSum
    max_relative_difference: float
    verified_rows: int = 0
    path: str = "compiled"
    reason: str | None = None
    mismatch: bool = False

    def predict_records(self, records: Sequence[Record]) -> np.ndarray:
        return self.compiled.predict_records(records)

    def predict_columns(self, columns: Columns) -> np.ndarray:
        return self.compiled.predict_columns(columns)


def records_frame(records: Sequence[Record]) -> pd.DataFrame:
    """Records → the raw frame the pipeline takes, sale dates as ISO strings like CLEAN."""
    rows = [
        {**r, "prev_sold_date": d.isoformat()}
        if isinstance(d := r.get("prev_sold_date"), date)
        else r
        for r in records
    ]
    return raw_frame(rows)


@dataclass(frozen=True)
class PipelinePredictor:
    """The sklearn model itself: correct for anything, ~10 ms per call."""

    model: Any
    reason: str | None = None
    mismatch: bool = False
    verified_rows: int = 0
    path: str = "pipeline"

    def predict_records(self, records: Sequence[Record]) -> np.ndarray:
        if not records:
            return np.empty(0)
        return np.asarray(self.model.predict(records_frame(records)), dtype=np.float64)

    def predict_columns(self, columns: Columns) -> np.ndarray:
        names = list(columns)
        return self.predict_records(
            [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
        )


def build_predictor(model: Any, sample_frame: pd.DataFrame, rtol: float = 1e-6) -> Predictor:
    """The compiled path if it builds and matches the pipeline on ``sample_frame`` (the version's
    SHAP background rows, when it has them) and on :func:`edge_rows`, else the pipeline, with
    the reason."""
    frame = pd.concat([sample_frame, edge_rows()], ignore_index=True)
    try:
        compiled = compile_model(model)
        worst = verify(compiled, model, frame, rtol)
    except Exception as error:  # any failure means: serve the model itself, and say why
        reason = f"{type(error).__name__}: {error}"
        log.warning("serving the sklearn pipeline, not the compiled path: %s", reason)
        return PipelinePredictor(model, reason, mismatch=isinstance(error, CompiledMismatch))
    log.info(
        "serving the compiled model (max relative difference %.2g on %d rows)", worst, len(frame)
    )
    return CompiledPredictor(compiled, worst, verified_rows=len(frame))
