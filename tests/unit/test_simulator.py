"""The listing simulator: reproducible, as messy as a real source, labelled, and drifting on cue."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mlops_platform.datasource.simulator import (
    DIRTY_FIELDS,
    DIRTY_KINDS,
    DUPLICATE,
    BatchSource,
    CsvSource,
    SimulatorConfig,
    SyntheticSource,
    dirty_fields,
    dirty_outcome,
    expected_prices,
    generate_batch,
    generate_labelled_batch,
    location_effects,
    source_from_settings,
)
from mlops_platform.schema import FIELDS, OPTIONAL_FIELDS, REQUIRED_FIELDS, STATE_CODES, Listing
from mlops_platform.settings import load_settings

AS_OF = {"as_of": date.today()}
MESSY = (SimulatorConfig(batch_size=3000, dirty_rate=0.2, seed=7), 3, "Friday", 2)


def _dump(records: list[dict]) -> str:
    """Canonical text of records: equal text means equal values, types and NaN positions."""
    return json.dumps(records, allow_nan=True)


def _row_key(record: dict) -> str:
    return json.dumps(record, allow_nan=True, sort_keys=True)


def _valid_logs(config: SimulatorConfig, batch: int, field: str) -> np.ndarray:
    records, labels = generate_labelled_batch(config, 1, "Wednesday", batch)
    values = [float(r[field]) for r, label in zip(records, labels, strict=True)
              if label is None and r.get(field) is not None]  # fmt: skip
    values_array = np.array(values)
    return np.log(values_array[np.isfinite(values_array)])


def _psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index over deciles of the reference."""
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    ref = np.clip(np.histogram(reference, edges)[0] / len(reference), 1e-4, None)
    cur = np.clip(np.histogram(current, edges)[0] / len(current), 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@pytest.fixture(scope="module")
def messy() -> tuple[list[dict], list[str | None]]:
    """A batch with many dirty rows, so every kind shows up."""
    return generate_labelled_batch(*MESSY)


def test_same_arguments_give_identical_records_including_nan_positions() -> None:
    config = SimulatorConfig(batch_size=500)
    first = generate_batch(config, 2, "Monday", 4)
    again = generate_batch(SimulatorConfig(batch_size=500), 2, "Monday", 4)
    assert _dump(first) == _dump(again)
    assert "NaN" in _dump(first)


@pytest.mark.parametrize(
    ("group", "day", "batch", "seed"),
    [(2, "Monday", 4, 42), (3, "Monday", 4, 42), (2, "Tuesday", 4, 42), (2, "Monday", 4, 1)],
)
def test_other_group_day_batch_or_seed_give_other_records(
    group: int, day: str, batch: int, seed: int
) -> None:
    reference = generate_batch(SimulatorConfig(batch_size=200), 2, "Monday", 3)
    other = generate_batch(SimulatorConfig(batch_size=200, seed=seed), group, day, batch)
    assert _dump(other) != _dump(reference)


@pytest.mark.parametrize("size", [1, 7, 2000])
def test_batches_have_the_configured_size(size: int) -> None:
    config = SimulatorConfig(batch_size=size)
    for batch in (1, 2):
        records, labels = generate_labelled_batch(config, 1, "Sunday", batch)
        assert len(records) == len(labels) == size


def test_every_dirty_kind_fails_validation_on_the_field_it_corrupts(messy) -> None:
    records, labels = messy
    corrupted = dirty_fields(*MESSY)
    seen = Counter(label for label in labels if label in DIRTY_KINDS)
    assert set(seen) == set(DIRTY_KINDS)
    for record, label, field in zip(records, labels, corrupted, strict=True):
        if label not in DIRTY_KINDS:
            assert field is None, (label, field)
            continue
        assert field in DIRTY_FIELDS[label], (label, field)
        with pytest.raises(ValidationError) as caught:
            Listing.model_validate(record, context=AS_OF)
        broken = [error["loc"][0] for error in caught.value.errors()]
        assert broken == [field], (label, record, broken)


def test_dirty_rows_end_rejected_or_repaired_as_the_schema_says(messy) -> None:
    """Corrupting a required field costs the row, an optional one only the field; the stream
    carries both, and not_a_number does either depending on the field it picked."""
    _, labels = messy
    outcomes = {
        (label, field, dirty_outcome(field))
        for label, field in zip(labels, dirty_fields(*MESSY), strict=True)
        if field is not None
    }
    assert {field for _, field, end in outcomes if end == "rejected"} == set(REQUIRED_FIELDS)
    assert {f for _, f, end in outcomes if end == "repaired"} <= set(OPTIONAL_FIELDS)
    assert {end for label, _, end in outcomes if label == "not_a_number"} == {
        "rejected",
        "repaired",
    }


def test_every_unlabelled_row_is_accepted(messy) -> None:
    records, labels = messy
    valid = [r for r, label in zip(records, labels, strict=True) if label is None]
    assert len(valid) > 2000
    for record in valid:
        Listing.model_validate(record, context=AS_OF)


def test_valid_rows_carry_the_mess_real_sources_send(messy) -> None:
    records, labels = messy
    valid = [r for r, label in zip(records, labels, strict=True) if label is None]
    prices_as_text = sum(isinstance(r["price"], str) for r in valid)
    assert 0.05 < prices_as_text / len(valid) < 0.15
    assert any(isinstance(r["bed"], float) and math.isnan(r["bed"]) for r in valid if "bed" in r)
    assert any(r.get("house_size", 0) is None for r in valid)
    missing_key = sum(len(r) < len(FIELDS) for r in valid)
    assert 0.005 < missing_key / len(valid) < 0.04
    assert any(isinstance(r["zip_code"], float) for r in valid)
    assert any(r["state"] in STATE_CODES for r in valid)
    assert any(r["city"] != " ".join(r["city"].split()).title() for r in valid)
    ids = [r["brokered_by"] for r in valid if isinstance(r.get("brokered_by"), float)]
    assert any(i.is_integer() for i in ids)


def test_leading_zero_zips_come_as_floats_or_padded_text() -> None:
    records = generate_batch(SimulatorConfig(batch_size=20_000, dirty_rate=0), 1, "Monday", 1)
    puerto_rico = [r["zip_code"] for r in records if r["state"] in ("PR", "Puerto Rico")]
    assert any(isinstance(z, float) and z < 1000 for z in puerto_rico)
    assert any(isinstance(z, str) and z.startswith("00") for z in puerto_rico)
    states = {STATE_CODES.get(r["state"], r["state"]) for r in records}
    assert states == set(STATE_CODES.values())


def test_each_zip_code_belongs_to_one_city() -> None:
    records, labels = generate_labelled_batch(SimulatorConfig(batch_size=5000), 1, "Monday", 1)
    cities_of_zip: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for record, label in zip(records, labels, strict=True):
        if label is None:
            clean = Listing.model_validate(record, context=AS_OF)
            cities_of_zip[clean.zip_code].add((clean.city, clean.state))
    assert all(len(cities) == 1 for cities in cities_of_zip.values())


def test_duplicates_copy_rows_of_the_same_or_the_previous_batch() -> None:
    config = SimulatorConfig(batch_size=2000)
    previous = {_row_key(r) for r in generate_batch(config, 1, "Monday", 2)}
    records, labels = generate_labelled_batch(config, 1, "Monday", 3)
    own = Counter(_row_key(r) for r in records)
    copies = [r for r, label in zip(records, labels, strict=True) if label == DUPLICATE]
    assert 0.005 < len(copies) / len(records) < 0.03
    for copy in copies:
        key = _row_key(copy)
        assert own[key] >= 2 or key in previous
    assert sum(_row_key(c) in previous for c in copies) >= 1


def test_expected_prices_are_each_house_s_price_without_the_noise() -> None:
    """The noise floor of bench/quality.py: per record, the price minus the market's noise."""
    config = SimulatorConfig(batch_size=3000, dirty_rate=0)
    records, labels = generate_labelled_batch(config, 1, "Monday", 3)
    expected = expected_prices(config, 1, "Monday", 3)
    assert expected.shape == (len(records),)
    noise = np.log([float(r["price"]) for r in records] / expected)
    assert abs(np.median(noise)) < 0.01
    # 0.15 × a t(4) draw: mean |noise| 0.15, standard deviation 0.15·√2
    assert 0.13 < np.mean(np.abs(noise)) < 0.17
    assert 0.18 < np.std(noise) < 0.25
    # Without the living area the best guess misses by more: the size's own spread adds to it.
    unsized = np.log(
        [float(r["price"]) for r in records] / expected_prices(config, 1, "Monday", 3, sized=False)
    )
    assert np.mean(np.abs(unsized)) > 1.4 * np.mean(np.abs(noise))
    assert abs(np.median(unsized)) < 0.03
    copies = [i for i, label in enumerate(labels) if label == DUPLICATE]
    same = [j for i in copies for j in range(len(records)) if j != i and records[j] == records[i]]
    assert same, "a duplicate of this batch's own rows"
    assert all(expected[j] in expected[copies] for j in same)


def test_location_effects_explain_the_noise_free_price_across_zip_codes() -> None:
    """The location oracle's input: every zip code of the market once, and city and zip effects
    that move a house's noise-free price one for one (a scrambled zip effect would not)."""
    effects = location_effects()
    codes = effects["zip_code"]
    assert len(set(codes)) == len(codes)
    assert all(len(c) == 5 for c in codes)
    assert abs(np.std(effects["zip_effect"]) - 0.12) < 0.02  # the market's zip spread
    config = SimulatorConfig(batch_size=3000, dirty_rate=0, drift_at=99)
    records, labels = generate_labelled_batch(config, 1, "Monday", 2)
    expected = np.log(expected_prices(config, 1, "Monday", 2))
    where = {code: i for i, code in enumerate(codes)}
    rows = [i for i, label in enumerate(labels) if label is None]
    at = [where[f"{int(float(records[i]['zip_code'])):05d}"] for i in rows]
    design = np.column_stack(
        [np.ones(len(rows)), effects["city_effect"][at], effects["zip_effect"][at]]
    )
    _, city, zip_ = np.linalg.lstsq(design, expected[rows], rcond=None)[0]
    assert 0.9 < city < 1.1, city
    assert 0.9 < zip_ < 1.1, zip_


@pytest.mark.parametrize("field", ["house_size", "price"])
def test_drifted_regime_is_measurable(field: str) -> None:
    config = SimulatorConfig(batch_size=2000, drift_at=3)
    reference = _valid_logs(config, 1, field)
    same_regime = _psi(reference, _valid_logs(config, 2, field))
    drifted = _psi(reference, _valid_logs(config, 3, field))
    assert same_regime < 0.05
    assert drifted > 0.15
    assert drifted > 5 * same_regime


def test_no_drift_at_strength_zero() -> None:
    config = SimulatorConfig(batch_size=2000, drift_at=3, drift_strength=0)
    reference = _valid_logs(config, 1, "price")
    assert _psi(reference, _valid_logs(config, 3, "price")) < 0.05


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="day must be one of"):
        generate_batch(SimulatorConfig(batch_size=5), 1, "Someday", 1)
    with pytest.raises(ValueError, match="start at 1"):
        generate_batch(SimulatorConfig(batch_size=5), 0, "Monday", 1)
    with pytest.raises(ValueError, match="dirty_rate"):
        SimulatorConfig(dirty_rate=2)


def test_synthetic_source_serves_the_configured_batches() -> None:
    source = SyntheticSource(SimulatorConfig(batches=3, batch_size=10))
    assert isinstance(source, BatchSource)
    assert source.batch_count(1, "Monday") == 3
    assert len(source.batch(1, "Monday", 3)) == 10
    with pytest.raises(ValueError, match="between 1 and 3"):
        source.batch(1, "Monday", 4)


def _write_csv(path: Path, rows: int) -> Path:
    """A small file in the public dataset's layout: floats for ids and zips, blank for null."""
    body = [
        f"{103378 + i}.0,for_sale,{105000 + i}.0,3.0,2.0,0.12,1962661.0,Adjuntas,Puerto Rico,601.0,"
        f"920.0,"
        for i in range(rows - 1)
    ]
    body.append("1.0,sold,5.0,,,,,Ponce,PR,731.0,,2019-01-02")
    path.write_text("\n".join([",".join(FIELDS), *body]) + "\n", encoding="utf-8")
    return path


def test_csv_source_splits_a_deterministic_shuffle_into_batches(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "listings.csv", 25)
    source = CsvSource(path, batches=4, seed=3)
    batches = [source.batch(1, "Monday", b) for b in range(1, 5)]
    assert source.batch_count(1, "Monday") == 4
    assert [len(b) for b in batches] == [7, 6, 6, 6]
    served = [r for b in batches for r in b]
    assert len({r["price"] for r in served}) == 25
    assert batches[0] == CsvSource(path, batches=4, seed=3).batch(1, "Monday", 1)
    assert batches[0] != source.batch(1, "Tuesday", 1)
    last = next(r for r in served if r["city"] == "Ponce")
    assert last == {**dict.fromkeys(FIELDS), "brokered_by": "1.0", "status": "sold",
                    "price": "5.0", "city": "Ponce", "state": "PR", "zip_code": "731.0",
                    "prev_sold_date": "2019-01-02"}  # fmt: skip


def test_csv_source_names_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("price,city\n1,Boston\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing column"):
        CsvSource(path).batch(1, "Monday", 1)


def test_source_from_settings_picks_csv_when_set(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "listings.csv", 5)
    csv_source = source_from_settings(load_settings(sim_csv=path, sim_batches=2))
    assert isinstance(csv_source, CsvSource)
    assert csv_source.batch_count(1, "Monday") == 2
    settings = load_settings(sim_batch_size=4, sim_drift_strength=0.5, sim_csv=None)
    synthetic = source_from_settings(settings)
    assert isinstance(synthetic, SyntheticSource)
    assert synthetic.config == SimulatorConfig.from_settings(settings)
    assert (synthetic.config.batch_size, synthetic.config.drift_strength) == (4, 0.5)
