"""RAW's COPY encoding: the fast path and the careful path agree on every record."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_platform.pipelines.ingest import copy_chunk, copy_line
from mlops_platform.schema import FIELDS

values = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["\\", "\t", "\n", "\r", "\x00", "\x02", "a\\Nb", "3.0", "NaN"]),
    st.floats(allow_nan=True),
    st.integers(),
    st.booleans(),
)
records = st.dictionaries(st.sampled_from([*FIELDS, "extra_key"]), values, min_size=10, max_size=13)


def _careful(batch_id: int, batch: list[dict[str, Any]]) -> list[str]:
    return [copy_line(r) for r in batch]


@settings(max_examples=300, deadline=None)
@given(st.lists(records, min_size=1, max_size=8))
def test_fast_chunks_equal_the_careful_encoding(batch: list[dict[str, Any]]) -> None:
    chunk = copy_chunk(7, batch, 0, len(batch))
    rows = chunk.split("\n")[:-1]
    assert len(rows) == len(batch)
    for number, (row, line) in enumerate(zip(rows, _careful(7, batch), strict=True)):
        prefix, _, row_hash = row.rpartition("\t")
        assert prefix == f"7\t{number}\t{line}"
        assert len(row_hash) == 64
        assert row.count("\t") == 15  # 16 columns: no value leaks a separator


def test_plain_record_takes_no_escaping() -> None:
    record = dict.fromkeys(FIELDS, "1")
    record["city"] = None
    line = copy_line(record)
    assert line.split("\t") == ["1"] * 7 + ["\x02"] + ["1"] * 4 + ["\x02"]


def test_specials_are_escaped_and_extra_keys_kept() -> None:
    record = {**dict.fromkeys(FIELDS), "city": "a\tb\\c\nd", "zz": 1.5}
    line = copy_line(record)
    assert "a\\tb\\\\c\\nd" in line
    assert line.endswith('{"zz": 1.5}')
