"""Synthetic USA real-estate listings, served in batches like the course's data-source API.

Why synthetic: the platform needs a source that is deterministic (tests, benchmarks), that sends
the mess real sources send (numbers as text, NaN, missing keys, repeated rows, invalid values)
with labels saying which row is which, and that changes regime at a known batch so drift
detection and retraining have something real to find.

The market is fixed (states, cities, zip codes, price levels); a seed only changes which houses
are drawn. ``price ≈ $/sqft(city, zip) × size^0.9 × small bath/lot effects × heavy-tailed noise``.
"""

from __future__ import annotations

import csv
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np

from mlops_platform.schema import (
    FIELDS,
    MAX_HOUSE_SIZE,
    MAX_PRICE,
    REQUIRED_FIELDS,
    STATE_CODES,
    STATUSES,
)
from mlops_platform.settings import Weekday

if TYPE_CHECKING:
    from mlops_platform.settings import Settings

Record = dict[str, Any]

WEEKDAYS: tuple[str, ...] = get_args(Weekday)

# Each dirty kind and the field(s) it corrupts: one per row (not_a_number picks one of several).
# Whether cleaning then rejects the row or repairs the field is the schema's call, not restated
# here: see dirty_outcome.
DIRTY_FIELDS: dict[str, tuple[str, ...]] = {
    "negative_price": ("price",),
    "absurd_price": ("price",),
    "missing_price": ("price",),
    "absurd_bed": ("bed",),
    "negative_bath": ("bath",),
    "negative_house_size": ("house_size",),
    "absurd_house_size": ("house_size",),
    "negative_acre_lot": ("acre_lot",),
    "bad_zip": ("zip_code",),
    "unknown_state": ("state",),
    "future_sold_date": ("prev_sold_date",),
    "bad_date": ("prev_sold_date",),
    "bad_status": ("status",),
    "missing_city": ("city",),
    "not_a_number": ("price", "bed", "bath", "house_size", "acre_lot"),
}
DIRTY_KINDS: tuple[str, ...] = tuple(DIRTY_FIELDS)
DUPLICATE = "duplicate"

DUPLICATE_RATE = 0.01  # exact copies of another row of the same batch
CARRY_RATE = 0.003  # rows of batch k that repeat a row of batch k-1
TEXT_RATE = 0.10  # numeric values sent as strings
DROPPED_KEY_RATE = 0.02  # records lacking one optional key entirely
MISSING_RATES: dict[str, float] = {
    "brokered_by": 0.05,
    "bed": 0.08,
    "bath": 0.10,
    "acre_lot": 0.15,
    "street": 0.05,
    "house_size": 0.12,
    "prev_sold_date": 0.35,
}
OPTIONAL_FIELDS: tuple[str, ...] = tuple(MISSING_RATES)

# --- the market ----------------------------------------------------------------------------------
# state -> (population in millions, base price per sq ft, cities as (name, zip prefix, multiplier)).
# Zip prefixes are the real 3-digit ones, so PR (006-009), MA (01x/02x) etc. keep leading zeros.
_City = tuple[str, int, float]
# fmt: off
_MARKET: dict[str, tuple[float, float, tuple[_City, ...]]] = {
    "AL": (5.0, 140, (("Birmingham", 352, 1.0), ("Huntsville", 358, 1.1),
                      ("Montgomery", 361, 0.85), ("Mobile", 366, 0.9))),
    "AK": (0.73, 190, (("Anchorage", 995, 1.05), ("Fairbanks", 997, 0.9), ("Juneau", 998, 1.1))),
    "AZ": (7.2, 250, (("Phoenix", 850, 1.0), ("Scottsdale", 852, 1.5), ("Tucson", 857, 0.85),
                      ("Flagstaff", 860, 1.15))),
    "AR": (3.0, 125, (("Little Rock", 722, 1.0), ("Fayetteville", 727, 1.15),
                      ("Fort Smith", 729, 0.8))),
    "CA": (39.5, 430, (("Los Angeles", 900, 1.25), ("San Diego", 921, 1.3),
                       ("San Jose", 951, 1.6), ("San Francisco", 941, 1.8),
                       ("Sacramento", 958, 0.8), ("Fresno", 937, 0.6), ("Bakersfield", 933, 0.55))),
    "CO": (5.8, 300, (("Denver", 802, 1.1), ("Colorado Springs", 809, 0.85),
                      ("Boulder", 803, 1.4), ("Fort Collins", 805, 1.0))),
    "CT": (3.6, 220, (("Hartford", 61, 0.75), ("New Haven", 65, 0.9), ("Stamford", 69, 1.5))),
    "DE": (1.0, 200, (("Wilmington", 198, 1.0), ("Dover", 199, 0.85), ("Lewes", 199, 1.3))),
    "DC": (0.69, 550, (("Washington", 200, 1.0),)),
    "FL": (21.5, 260, (("Miami", 331, 1.35), ("Jacksonville", 322, 0.8), ("Tampa", 336, 1.0),
                       ("Orlando", 328, 0.95), ("Naples", 341, 1.6))),
    "GA": (10.7, 180, (("Atlanta", 303, 1.15), ("Savannah", 314, 1.0), ("Augusta", 309, 0.75),
                       ("Athens", 306, 0.95))),
    "HI": (1.46, 650, (("Honolulu", 968, 1.1), ("Hilo", 967, 0.7), ("Kailua", 967, 1.2))),
    "ID": (1.84, 260, (("Boise", 837, 1.0), ("Idaho Falls", 834, 0.8),
                       ("Coeur D'Alene", 838, 1.1))),
    "IL": (12.8, 170, (("Chicago", 606, 1.3), ("Naperville", 605, 1.2),
                       ("Springfield", 627, 0.6), ("Peoria", 616, 0.55))),
    "IN": (6.8, 135, (("Indianapolis", 462, 1.0), ("Fort Wayne", 468, 0.85),
                      ("Evansville", 477, 0.8), ("Bloomington", 474, 1.05))),
    "IA": (3.2, 135, (("Des Moines", 503, 1.0), ("Cedar Rapids", 524, 0.9),
                      ("Iowa City", 522, 1.15))),
    "KS": (2.9, 140, (("Wichita", 672, 0.85), ("Overland Park", 662, 1.25),
                      ("Topeka", 666, 0.8))),
    "KY": (4.5, 140, (("Louisville", 402, 1.0), ("Lexington", 405, 1.1),
                      ("Bowling Green", 421, 0.9))),
    "LA": (4.7, 140, (("New Orleans", 701, 1.2), ("Baton Rouge", 708, 1.0),
                      ("Shreveport", 711, 0.75), ("Lafayette", 705, 0.9))),
    "ME": (1.36, 230, (("Portland", 41, 1.3), ("Bangor", 44, 0.75), ("Augusta", 43, 0.8))),
    "MD": (6.2, 230, (("Baltimore", 212, 0.8), ("Annapolis", 214, 1.4),
                      ("Frederick", 217, 1.05), ("Bethesda", 208, 1.7))),
    "MA": (7.0, 380, (("Boston", 21, 1.4), ("Worcester", 16, 0.7), ("Cambridge", 21, 1.6),
                      ("Springfield", 11, 0.55), ("Lowell", 18, 0.75))),
    "MI": (10.1, 150, (("Detroit", 482, 0.7), ("Grand Rapids", 495, 1.05),
                       ("Ann Arbor", 481, 1.5), ("Lansing", 489, 0.8))),
    "MN": (5.7, 190, (("Minneapolis", 554, 1.1), ("Saint Paul", 551, 1.0),
                      ("Rochester", 559, 0.95), ("Duluth", 558, 0.8))),
    "MS": (3.0, 115, (("Jackson", 392, 0.85), ("Gulfport", 395, 1.0),
                      ("Hattiesburg", 394, 0.95))),
    "MO": (6.2, 150, (("Kansas City", 641, 1.0), ("Saint Louis", 631, 1.0),
                      ("Springfield", 658, 0.85), ("Columbia", 652, 0.95))),
    "MT": (1.1, 270, (("Billings", 591, 0.8), ("Missoula", 598, 1.1), ("Bozeman", 597, 1.45))),
    "NE": (2.0, 150, (("Omaha", 681, 1.0), ("Lincoln", 685, 0.95), ("Grand Island", 688, 0.75))),
    "NV": (3.1, 250, (("Las Vegas", 891, 1.0), ("Henderson", 890, 1.05), ("Reno", 895, 1.15))),
    "NH": (1.38, 250, (("Manchester", 31, 0.95), ("Nashua", 30, 1.0), ("Concord", 33, 0.95),
                       ("Portsmouth", 38, 1.3))),
    "NJ": (9.3, 270, (("Newark", 71, 0.8), ("Jersey City", 73, 1.35), ("Trenton", 86, 0.6),
                      ("Princeton", 85, 1.5))),
    "NM": (2.1, 180, (("Albuquerque", 871, 0.95), ("Santa Fe", 875, 1.5),
                      ("Las Cruces", 880, 0.8))),
    "NY": (20.2, 300, (("New York", 100, 2.3), ("Brooklyn", 112, 1.9), ("Buffalo", 142, 0.5),
                       ("Rochester", 146, 0.5), ("Albany", 122, 0.65), ("Yonkers", 107, 1.2))),
    "NC": (10.4, 190, (("Charlotte", 282, 1.05), ("Raleigh", 276, 1.1), ("Durham", 277, 1.05),
                       ("Greensboro", 274, 0.8), ("Asheville", 288, 1.2))),
    "ND": (0.78, 150, (("Fargo", 581, 1.0), ("Bismarck", 585, 1.0), ("Minot", 587, 0.8))),
    "OH": (11.8, 140, (("Columbus", 432, 1.1), ("Cleveland", 441, 0.8), ("Cincinnati", 452, 1.0),
                       ("Toledo", 436, 0.75), ("Dayton", 454, 0.75))),
    "OK": (4.0, 130, (("Oklahoma City", 731, 1.0), ("Tulsa", 741, 1.0), ("Norman", 730, 1.05))),
    "OR": (4.2, 280, (("Portland", 972, 1.15), ("Eugene", 974, 0.95), ("Salem", 973, 0.85),
                      ("Bend", 977, 1.3))),
    "PA": (13.0, 170, (("Philadelphia", 191, 1.1), ("Pittsburgh", 152, 0.85),
                       ("Allentown", 181, 0.9), ("Harrisburg", 171, 0.8),
                       ("State College", 168, 1.0))),
    "RI": (1.1, 270, (("Providence", 29, 1.0), ("Warwick", 28, 0.9), ("Newport", 28, 1.6))),
    "SC": (5.1, 190, (("Charleston", 294, 1.3), ("Columbia", 292, 0.8), ("Greenville", 296, 0.95),
                      ("Myrtle Beach", 295, 1.0))),
    "SD": (0.89, 170, (("Sioux Falls", 571, 1.0), ("Rapid City", 577, 1.0))),
    "TN": (6.9, 200, (("Nashville", 372, 1.3), ("Memphis", 381, 0.65), ("Knoxville", 379, 0.95),
                      ("Chattanooga", 374, 1.0))),
    "TX": (29.1, 170, (("Houston", 770, 0.95), ("Dallas", 752, 1.1), ("San Antonio", 782, 0.9),
                       ("Austin", 787, 1.5), ("Fort Worth", 761, 0.95), ("El Paso", 799, 0.7))),
    "UT": (3.3, 270, (("Salt Lake City", 841, 1.1), ("Provo", 846, 0.95), ("Ogden", 844, 0.85),
                      ("Park City", 840, 2.0))),
    "VT": (0.64, 230, (("Burlington", 54, 1.15), ("Montpelier", 56, 0.95), ("Rutland", 57, 0.75))),
    "VA": (8.6, 230, (("Virginia Beach", 234, 0.9), ("Richmond", 232, 0.9),
                      ("Arlington", 222, 1.8), ("Norfolk", 235, 0.75),
                      ("Charlottesville", 229, 1.1))),
    "WA": (7.7, 340, (("Seattle", 981, 1.4), ("Spokane", 992, 0.65), ("Tacoma", 984, 0.85),
                      ("Bellevue", 980, 1.6), ("Olympia", 985, 0.85))),
    "WV": (1.8, 105, (("Charleston", 253, 1.0), ("Morgantown", 265, 1.15),
                      ("Huntington", 257, 0.85))),
    "WI": (5.9, 170, (("Milwaukee", 532, 0.9), ("Madison", 537, 1.2), ("Green Bay", 543, 0.9))),
    "WY": (0.58, 220, (("Cheyenne", 820, 0.9), ("Casper", 826, 0.8), ("Jackson", 830, 3.0))),
    "PR": (3.3, 110, (("San Juan", 9, 1.4), ("Bayamon", 9, 1.0), ("Ponce", 7, 0.8),
                      ("Adjuntas", 6, 0.6), ("Mayaguez", 6, 0.8))),
    "VI": (0.1, 280, (("Charlotte Amalie", 8, 1.0), ("Christiansted", 8, 0.9))),
    "GU": (0.17, 230, (("Hagatna", 969, 1.0), ("Dededo", 969, 0.9))),
}
# Drifted regime: these states boom (price per sq ft up by this share at drift_strength 1)
# and attract more listings.
_BOOM: dict[str, float] = {
    "FL": 0.60, "TX": 0.45, "AZ": 0.50, "NV": 0.40, "ID": 0.55, "UT": 0.45,
    "TN": 0.40, "NC": 0.35, "GA": 0.35, "SC": 0.40, "MT": 0.50, "CO": 0.30,
}
# fmt: on
if set(_MARKET) != set(STATE_CODES):
    raise RuntimeError("the simulated market must cover every state in schema.STATE_CODES")

_ZIPS_PER_CITY = 6
# The market's noise on log-price: PRICE_NOISE_SCALE × Student-t with PRICE_NOISE_DF degrees of
# freedom (heavy tails: a few listings far from their street's price).
PRICE_NOISE_SCALE = 0.15
PRICE_NOISE_DF = 4
_N_BROKERS = 4000
_SIZE_REF = 1800.0  # sq ft where the size elasticity pivots
_LATEST_SOLD = np.datetime64("2024-12-31")
_EARLIEST_SOLD = np.datetime64("1985-01-01")


@dataclass(frozen=True)
class _Market:
    """The fixed market as flat per-city arrays, so one batch is a few vectorised lookups."""

    city_name: np.ndarray  # str per city
    city_state: np.ndarray  # state code per city
    state_name: np.ndarray  # full state name per city
    pop_share: np.ndarray  # share of listings per city, base regime
    boom: np.ndarray  # boom factor of the city's state (0 outside boom states)
    log_ppsf: np.ndarray  # log price per sq ft per city
    zips: np.ndarray  # (city, _ZIPS_PER_CITY) int zip codes, unique to the city
    zip_log_mult: np.ndarray  # (city, _ZIPS_PER_CITY) neighbourhood price effect
    broker_ids: np.ndarray  # broker id by popularity rank


def _build_market() -> _Market:
    """Lay the table out flat; zips and broker ids come from a fixed seed, never the user's."""
    rng = np.random.default_rng(20_240_601)
    names, states, pop, boom, ppsf, zips = [], [], [], [], [], []
    used: dict[int, set[int]] = {}
    for code, (population, base_ppsf, cities) in _MARKET.items():
        shares = np.array([1 / (rank + 1) ** 0.8 for rank in range(len(cities))])
        shares /= shares.sum()
        for (name, prefix, multiplier), share in zip(cities, shares, strict=True):
            free = sorted(set(range(1, 100)) - used.setdefault(prefix, set()))
            suffixes = rng.choice(free, _ZIPS_PER_CITY, replace=False)
            used[prefix].update(int(s) for s in suffixes)
            names.append(name)
            states.append(code)
            pop.append(population * share)
            boom.append(_BOOM.get(code, 0.0))
            ppsf.append(base_ppsf * multiplier)
            zips.append(np.sort(prefix * 100 + suffixes))
    pop_share = np.array(pop) / sum(pop)
    return _Market(
        city_name=np.array(names, dtype=object),
        city_state=np.array(states, dtype=object),
        state_name=np.array([STATE_CODES[c] for c in states], dtype=object),
        pop_share=pop_share,
        boom=np.array(boom),
        log_ppsf=np.log(np.array(ppsf, dtype=float)),
        zips=np.array(zips),
        zip_log_mult=rng.normal(0.0, 0.12, (len(names), _ZIPS_PER_CITY)),
        broker_ids=rng.choice(np.arange(1, 110_000), _N_BROKERS, replace=False).astype(float),
    )


MARKET = _build_market()


# --- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimulatorConfig:
    """How many batches of how many rows, how dirty, and when and how hard the regime changes."""

    batches: int = 10
    batch_size: int = 2000
    seed: int = 42
    drift_at: int = 6
    drift_strength: float = 1.0
    dirty_rate: float = 0.03

    def __post_init__(self) -> None:
        if self.batches < 1 or self.batch_size < 1 or self.drift_at < 1:
            raise ValueError("batches, batch_size and drift_at must be at least 1")
        if self.drift_strength < 0:
            raise ValueError("drift_strength must be >= 0 (0 = no regime change)")
        if not 0 <= self.dirty_rate <= 1:
            raise ValueError("dirty_rate must be between 0 and 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> SimulatorConfig:
        """The simulator knobs of the platform settings (``MLOPS_SIM_*``)."""
        return cls(
            batches=settings.sim_batches,
            batch_size=settings.sim_batch_size,
            seed=settings.sim_seed,
            drift_at=settings.sim_drift_at,
            drift_strength=settings.sim_drift_strength,
            dirty_rate=settings.sim_dirty_rate,
        )


def day_index(day: str) -> int:
    """Position of a weekday name (Monday = 0); anything else is a caller error."""
    try:
        return WEEKDAYS.index(day)
    except ValueError:
        raise ValueError(f"day must be one of {', '.join(WEEKDAYS)}, got {day!r}") from None


def _rng(
    config: SimulatorConfig, group: int, day: str, batch: int, stream: int = 0
) -> np.random.Generator:
    """One independent stream per (seed, group, day, batch): batches are reproducible alone."""
    if group < 1 or batch < 1:
        raise ValueError("group_number and batch_number start at 1")
    key = [config.seed % 2**63, group, day_index(day), batch, stream]
    return np.random.default_rng(key)


# --- one batch as columns ------------------------------------------------------------------------
@dataclass
class _Frame:
    """A batch as object columns (values exactly as they will be sent), plus row annotations."""

    columns: dict[str, np.ndarray]
    drop: np.ndarray  # per row: index into FIELDS of a key left out, or -1
    labels: np.ndarray  # per row: None (valid), a dirty kind, or "duplicate"
    copied: np.ndarray  # per row: True when a duplicate elsewhere copies it (keep it intact)
    corrupted: np.ndarray  # per row: the field its dirty kind made invalid, or None
    expected: np.ndarray  # per row: (noise-free price, the same without the size) of the house

    def valid_rows(self) -> np.ndarray:
        """Rows with no label: valid, and not themselves a copy."""
        return np.flatnonzero(self.labels == None)  # noqa: E711 (elementwise on object array)

    def copy_rows(self, other: _Frame, sources: np.ndarray, targets: np.ndarray) -> None:
        for name in FIELDS:
            self.columns[name][targets] = other.columns[name][sources]
        self.drop[targets] = other.drop[sources]
        self.corrupted[targets] = other.corrupted[sources]
        self.expected[targets] = other.expected[sources]
        self.labels[targets] = DUPLICATE
        other.copied[sources] = True


@dataclass
class _Houses:
    """Clean numeric draws of one batch, before they are dressed up the way sources send them."""

    city: np.ndarray
    zip_code: np.ndarray
    bed: np.ndarray
    bath: np.ndarray
    house_size: np.ndarray
    acre_lot: np.ndarray
    status: np.ndarray
    price: np.ndarray
    expected_price: np.ndarray  # the price without its noise: the best any model can predict
    expected_price_unsized: np.ndarray  # ... when the living area is not known (its median)
    brokered_by: np.ndarray
    street: np.ndarray
    prev_sold_date: np.ndarray


def _regime(config: SimulatorConfig, batch: int) -> float:
    """Drift strength in force for a batch: 0 before ``drift_at``, ``drift_strength`` after."""
    return config.drift_strength if batch >= config.drift_at else 0.0


def _draw_houses(rng: np.random.Generator, n: int, shift: float, inflation: float) -> _Houses:
    """The joint distribution: location → size → price, with the regime ``shift`` applied."""
    m = MARKET
    weights = m.pop_share * (1 + 1.5 * shift * (m.boom > 0))
    city = rng.choice(len(weights), size=n, p=weights / weights.sum())
    slot = rng.integers(0, _ZIPS_PER_CITY, n)
    bed = 1 + rng.binomial(5, min(0.45 + 0.06 * shift, 0.9), n)
    bath = np.clip(np.rint(0.7 * bed + 0.2 + rng.normal(0, 0.55, n)), 1, 9)
    log_size = np.log(620) + 0.27 * bed + 0.07 * bath + 0.15 * shift + rng.normal(0, 0.25, n)
    size = np.clip(np.rint(np.exp(log_size)), 300, 40_000)
    city_level = m.log_ppsf[city] - np.log(200)  # >0 in dear places, where lots are small
    log_acre = np.log(0.2) - 0.5 * city_level + rng.normal(0, 1.1, n)
    acre = np.clip(np.round(np.exp(log_acre), 2), 0.01, 20_000)
    status = rng.choice(len(STATUSES), size=n, p=[0.80, 0.08, 0.12])  # for_sale, ready, sold
    log_ppsf = m.log_ppsf[city] + m.zip_log_mult[city, slot] + np.log1p(m.boom[city] * shift)
    elasticity = 0.9 + 0.15 * shift
    log_expected = (
        log_ppsf
        + np.log(_SIZE_REF)
        + elasticity * np.log(size / _SIZE_REF)
        + 0.04 * (bath - 0.7 * bed)
        + 0.05 * np.log(acre / 0.2)
        + np.log(inflation)
    )
    log_price = log_expected + PRICE_NOISE_SCALE * rng.standard_t(PRICE_NOISE_DF, n)
    # Without the size: its mean log given rooms and regime replaces it (both noises are
    # symmetric, so this is the price's conditional median, the best guess under absolute error).
    log_size_mean = np.log(620) + 0.27 * bed + 0.07 * bath + 0.15 * shift
    log_unsized = log_expected + elasticity * (log_size_mean - np.log(size))
    price = np.clip(np.round(np.exp(log_price), -2), 5_000, MAX_PRICE / 2)
    rank = (rng.zipf(1.4, n) - 1) % _N_BROKERS
    days = (_LATEST_SOLD - _EARLIEST_SOLD).astype(int)
    sold = _EARLIEST_SOLD + np.rint(days * rng.beta(2.0, 1.2, n)).astype("timedelta64[D]")
    return _Houses(
        city=city,
        zip_code=m.zips[city, slot],
        bed=bed.astype(float),
        bath=bath,
        house_size=size,
        acre_lot=acre,
        status=status,
        price=price,
        expected_price=np.clip(np.exp(log_expected), 5_000, MAX_PRICE / 2),
        expected_price_unsized=np.clip(np.exp(log_unsized), 5_000, MAX_PRICE / 2),
        brokered_by=m.broker_ids[rank],
        street=rng.integers(1, 2_000_000, n).astype(float),
        prev_sold_date=sold.astype(str).astype(object),
    )


def _as_text(values: np.ndarray, rng: np.random.Generator, rate: float = TEXT_RATE) -> np.ndarray:
    """Numbers as Python floats, a share of them as strings ("3.0", "105000") like CSV exports."""
    out = values.astype(float).astype(object)
    picked = np.flatnonzero(rng.random(len(values)) < rate)
    whole = rng.random(len(picked)) < 0.5
    out[picked] = [
        str(int(v)) if w and float(v).is_integer() else repr(float(v))
        for v, w in zip(values[picked], whole, strict=True)
    ]
    return out


def _zip_as_sent(zips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zips as floats (601.0, leading zeros lost), as 5-digit text, or as float text."""
    out = zips.astype(float).astype(object)
    how = rng.random(len(zips))
    text = np.flatnonzero(how < 0.45)
    out[text] = [f"{z:05d}" for z in zips[text]]
    float_text = np.flatnonzero((how >= 0.45) & (how < 0.55))
    out[float_text] = [f"{z}.0" for z in zips[float_text]]
    return out


def _city_as_sent(names: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mostly the canonical name; some upper, lower or padded with stray whitespace."""
    out = names.copy()
    how = rng.random(len(names))
    odd = np.flatnonzero(how < 0.10)
    styles = (str.upper, str.lower, lambda s: f"  {s} ", lambda s: s.replace(" ", "  "))
    out[odd] = [styles[i % len(styles)](s) for i, s in zip(odd, names[odd], strict=True)]
    return out


def _state_as_sent(city: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mostly the full state name, about 15% the 2-letter code."""
    out = MARKET.state_name[city].copy()
    code = rng.random(len(city)) < 0.15
    out[code] = MARKET.city_state[city][code]
    return out


def _status_as_sent(status: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Canonical statuses, with a few spelled the way a UI shows them ("For Sale")."""
    out = np.array(STATUSES, dtype=object)[status]
    odd = np.flatnonzero(rng.random(len(status)) < 0.03)
    out[odd] = [s.replace("_", " ").title() for s in out[odd]]
    return out


def _blank_missing(
    columns: dict[str, np.ndarray], houses: _Houses, rng: np.random.Generator
) -> None:
    """Optional values left out as None or NaN; lots to build have no house details yet."""
    n = len(houses.price)
    ready = houses.status == STATUSES.index("ready_to_build")
    for name, rate in MISSING_RATES.items():
        missing = rng.random(n) < rate
        if name in ("bed", "bath", "house_size"):
            missing |= ready & (rng.random(n) < 0.6)
        as_none = rng.random(n) < 0.5
        columns[name][missing & as_none] = None
        columns[name][missing & ~as_none] = math.nan


def _dirty_value(kind: str, row: int, houses: _Houses, rng: np.random.Generator) -> tuple[str, Any]:
    """The one invalid (field, value) a dirty row of this kind carries."""
    pick = rng.choice
    match kind:
        case "negative_price":
            return "price", -float(houses.price[row])
        case "absurd_price":
            return "price", float(np.round(MAX_PRICE * rng.uniform(1.5, 100), -3))
        case "missing_price":
            return "price", pick(np.array([None, math.nan], dtype=object))
        case "absurd_bed":
            return "bed", float(pick([25, 45, 99, 123, 999]))
        case "negative_bath":
            return "bath", -float(rng.integers(1, 4))
        case "negative_house_size":
            return "house_size", -float(houses.house_size[row])
        case "absurd_house_size":
            return "house_size", float(np.round(MAX_HOUSE_SIZE * rng.uniform(1.5, 30)))
        case "negative_acre_lot":
            return "acre_lot", -float(houses.acre_lot[row])
        case "bad_zip":
            return "zip_code", str(pick(["ABC12", "1234567", "9O21O", "00000", "12-345"]))
        case "unknown_state":
            return "state", str(pick(["Atlantis", "XX", "Ontario", "Narnia", "ZZ"]))
        case "future_sold_date":
            when = np.datetime64("2090-01-01") + rng.integers(0, 3650)
            return "prev_sold_date", str(when)
        case "bad_date":
            return "prev_sold_date", str(
                pick(["2019-13-45", "31/02/2020", "yesterday", "2021-02-29", "12/31/19"])
            )
        case "bad_status":
            return "status", str(pick(["pending", "foreclosure", "off_market", "unknown"]))
        case "missing_city":
            return "city", pick(np.array([None, math.nan, "", "   "], dtype=object))
        case "not_a_number":
            field = str(pick(DIRTY_FIELDS[kind]))
            return field, str(pick(["cheap", "three", "call agent", "n.a.", "big"]))
    raise ValueError(f"unknown dirty kind {kind!r}")


def _draw_frame(config: SimulatorConfig, group: int, day: str, batch: int) -> _Frame:
    """One batch with its dirty rows and in-batch duplicates, before rows carried from k-1."""
    rng = _rng(config, group, day, batch)
    n = config.batch_size
    inflation = (1 + 0.01 * config.drift_strength) ** (batch - 1)
    houses = _draw_houses(rng, n, _regime(config, batch), inflation)
    columns = {
        "brokered_by": _as_text(houses.brokered_by, rng),
        "status": _status_as_sent(houses.status, rng),
        "price": _as_text(houses.price, rng),
        "bed": _as_text(houses.bed, rng),
        "bath": _as_text(houses.bath, rng),
        "acre_lot": _as_text(houses.acre_lot, rng),
        "street": _as_text(houses.street, rng),
        "city": _city_as_sent(MARKET.city_name[houses.city], rng),
        "state": _state_as_sent(houses.city, rng),
        "zip_code": _zip_as_sent(houses.zip_code, rng),
        "house_size": _as_text(houses.house_size, rng),
        "prev_sold_date": houses.prev_sold_date,
    }
    _blank_missing(columns, houses, rng)
    labels = np.full(n, None, dtype=object)
    corrupted = np.full(n, None, dtype=object)
    for row in np.flatnonzero(rng.random(n) < config.dirty_rate):
        kind = DIRTY_KINDS[rng.integers(len(DIRTY_KINDS))]
        field, value = _dirty_value(kind, row, houses, rng)
        columns[field][row] = value
        labels[row] = kind
        corrupted[row] = field
    drop = np.full(n, -1)
    frame = _Frame(
        columns,
        drop,
        labels,
        copied=np.zeros(n, dtype=bool),
        corrupted=corrupted,
        expected=np.column_stack([houses.expected_price, houses.expected_price_unsized]),
    )
    valid = frame.valid_rows()
    dropped = valid[rng.random(len(valid)) < DROPPED_KEY_RATE]
    optional = np.array([FIELDS.index(f) for f in OPTIONAL_FIELDS])
    drop[dropped] = rng.choice(optional, len(dropped))
    _duplicate_within(frame, rng)
    return frame


def _duplicate_within(frame: _Frame, rng: np.random.Generator) -> None:
    """Overwrite ~1% of valid rows with exact copies of other valid rows of the same batch."""
    valid = frame.valid_rows()
    count = min(rng.binomial(len(frame.labels), DUPLICATE_RATE), len(valid) // 2)
    if count == 0:
        return
    chosen = rng.permutation(valid)
    frame.copy_rows(frame, sources=chosen[:count], targets=chosen[count : 2 * count])


def _carry_targets(frame: _Frame, rng: np.random.Generator) -> np.ndarray:
    """Rows of a batch (k>1) that will repeat rows of batch k-1: a few of its valid rows."""
    valid = np.setdiff1d(frame.valid_rows(), np.flatnonzero(frame.copied))
    count = min(rng.binomial(len(frame.labels), CARRY_RATE), len(valid))
    return np.sort(rng.choice(valid, count, replace=False))


def _served_frame(config: SimulatorConfig, group: int, day: str, batch: int) -> _Frame:
    """The batch as served: its own rows plus a few repeats of batch k-1 as served."""
    frame = _draw_frame(config, group, day, batch)
    if batch == 1:
        return frame
    rng = _rng(config, group, day, batch, stream=1)
    targets = _carry_targets(frame, rng)
    previous = _draw_frame(config, group, day, batch - 1)
    replaced = (
        _carry_targets(previous, _rng(config, group, day, batch - 1, stream=1))
        if batch > 2
        else np.array([], dtype=int)
    )
    candidates = np.setdiff1d(previous.valid_rows(), replaced)
    count = min(len(targets), len(candidates))
    sources = rng.choice(candidates, count, replace=False)
    frame.copy_rows(previous, sources=sources, targets=targets[:count])
    return frame


def _records(frame: _Frame) -> list[Record]:
    """Columns to JSON-ready dicts in schema field order, without the keys a source left out."""
    columns = [frame.columns[name].tolist() for name in FIELDS]
    records = [dict(zip(FIELDS, row, strict=True)) for row in zip(*columns, strict=True)]
    for row in np.flatnonzero(frame.drop >= 0):
        del records[row][FIELDS[frame.drop[row]]]
    return records


def generate_labelled_batch(
    config: SimulatorConfig, group_number: int, day: str, batch_number: int
) -> tuple[list[Record], list[str | None]]:
    """A batch and, per record, None (valid), its dirty kind, or "duplicate" (a repeated row)."""
    frame = _served_frame(config, group_number, day, batch_number)
    return _records(frame), frame.labels.tolist()


def generate_batch(
    config: SimulatorConfig, group_number: int, day: str, batch_number: int
) -> list[Record]:
    """Batch ``batch_number`` (1-based) for a group and weekday; same arguments, same records."""
    return generate_labelled_batch(config, group_number, day, batch_number)[0]


def dirty_fields(
    config: SimulatorConfig, group_number: int, day: str, batch_number: int
) -> list[str | None]:
    """Per record of the batch, the field its dirty kind corrupted; None for valid rows and
    duplicates. With :func:`dirty_outcome` it says where cleaning must put each dirty row."""
    return _served_frame(config, group_number, day, batch_number).corrupted.tolist()


def dirty_outcome(field: str) -> Literal["rejected", "repaired"]:
    """Where a row with this corrupted field ends: a required field costs the row (rejected), an
    optional one only the field (kept with it null). The schema decides which is which."""
    return "rejected" if field in REQUIRED_FIELDS else "repaired"


def expected_prices(
    config: SimulatorConfig, group_number: int, day: str, batch_number: int, *, sized: bool = True
) -> np.ndarray:
    """Per record of the batch, the house's price without the market's noise.

    Used as a prediction it scores the noise floor: the error no model can go below, which is
    what ``bench/quality.py`` measures the served model against. ``sized=False`` gives the best
    guess when the living area is unknown (the record lacks it): the floor of such rows. The
    data-source API never serves either, so they cannot reach training.
    """
    frame = _served_frame(config, group_number, day, batch_number)
    return frame.expected[:, 0 if sized else 1].copy()


def location_effects() -> dict[str, np.ndarray]:
    """Per zip code of the market (5-digit text): its city's number, the city's log price effect
    relative to the mean of its state's cities, and the zip's own log effect within its city.

    For ``bench/quality.py``'s location oracle, which knows every other parameter and must
    estimate these from the listings: the best any model can hope for. Never served.
    """
    m = MARKET
    states = m.city_state
    state_mean = {code: m.log_ppsf[states == code].mean() for code in set(states)}
    city_effect = m.log_ppsf - np.array([state_mean[code] for code in states])
    cities = np.repeat(np.arange(len(states)), _ZIPS_PER_CITY)
    return {
        "zip_code": np.array([f"{z:05d}" for z in m.zips.ravel()], dtype=object),
        "city": cities,
        "city_effect": city_effect[cities],
        "zip_effect": m.zip_log_mult.ravel().copy(),
    }


# --- sources -------------------------------------------------------------------------------------
@runtime_checkable
class BatchSource(Protocol):
    """What the data-source API serves from: a fixed number of batches per group and day."""

    def batch_count(self, group_number: int, day: str) -> int: ...

    def batch(self, group_number: int, day: str, batch_number: int) -> list[Record]: ...


def _check_batch(batch_number: int, count: int) -> None:
    if not 1 <= batch_number <= count:
        raise ValueError(f"batch_number must be between 1 and {count}, got {batch_number}")


class SyntheticSource:
    """Batches from :func:`generate_batch`."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()

    def batch_count(self, group_number: int, day: str) -> int:
        day_index(day)
        return self.config.batches

    def batch(self, group_number: int, day: str, batch_number: int) -> list[Record]:
        _check_batch(batch_number, self.config.batches)
        return generate_batch(self.config, group_number, day, batch_number)


class CsvSource:
    """Rows of a USA real-estate CSV, shuffled per (seed, group, day) and cut into batches.

    Values are sent as the CSV text, empty cells as None, so the pipeline sees what a real
    source would send. The file is read once, on first use.
    """

    def __init__(self, path: str | Path, batches: int = 10, seed: int = 42) -> None:
        if batches < 1:
            raise ValueError("batches must be at least 1")
        self.path = Path(path)
        self.batches = batches
        self.seed = seed
        self._rows: list[tuple[str | None, ...]] | None = None
        self._lock = threading.Lock()

    def _load(self) -> list[tuple[str | None, ...]]:
        with self._lock:
            if self._rows is None:
                self._rows = _read_csv(self.path)
            return self._rows

    def batch_count(self, group_number: int, day: str) -> int:
        day_index(day)
        return self.batches

    def batch(self, group_number: int, day: str, batch_number: int) -> list[Record]:
        _check_batch(batch_number, self.batches)
        rows = self._load()
        key = [self.seed % 2**63, group_number, day_index(day)]
        order = np.random.default_rng(key).permutation(len(rows))
        picked = np.array_split(order, self.batches)[batch_number - 1]
        return [dict(zip(FIELDS, rows[i], strict=True)) for i in picked.tolist()]


def _read_csv(path: Path) -> list[tuple[str | None, ...]]:
    """The 12 listing columns of a CSV, in schema order; a missing column is named."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        absent = [f for f in FIELDS if f not in header]
        if absent:
            raise ValueError(f"{path}: missing column(s) {', '.join(absent)}")
        index = [header.index(f) for f in FIELDS]
        return [_cells(row, index) for row in reader if row]


def _cells(row: list[str], index: list[int]) -> tuple[str | None, ...]:
    """The listing cells of one CSV row; an empty or absent cell is None."""
    return tuple(row[i] if i < len(row) and row[i] != "" else None for i in index)


def source_from_settings(settings: Settings) -> BatchSource:
    """The CSV when ``MLOPS_SIM_CSV`` is set, else synthetic listings."""
    if settings.sim_csv is not None:
        return CsvSource(settings.sim_csv, settings.sim_batches, settings.sim_seed)
    return SyntheticSource(SimulatorConfig.from_settings(settings))
