"""``json_request.loads`` gives what ``json.loads`` gives, value or error, on any document.

orjson is stricter than the standard library; every body it refuses is parsed again by ``json``.
These tests generate documents (NaN, Infinity, integers beyond 64 bits, lone surrogates,
duplicate keys, other encodings, broken text) and compare the two parsers, so the fast path can
never change what ``POST /predict`` accepts, the values it sees, or the 422 it answers.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

import pytest
from fastapi import Body, FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_platform.serving import json_request
from mlops_platform.serving.json_request import FastJSONRoute, loads

# Every JSON value, plus what json.dumps writes beyond the standard (NaN, ±Infinity) and what
# orjson cannot hold (integers beyond 64 bits, lone surrogates in strings).
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**64 + 2)
    | st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.sampled_from(["\ud800", "a\udfff", "\x00", "\u2028", "é", "😀"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def same(left: Any, right: Any) -> bool:
    """Equal, with NaN equal to NaN, -0.0 told from 0.0 and int told from float."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return (math.isnan(left) and math.isnan(right)) or (
            left == right and math.copysign(1, left) == math.copysign(1, right)
        )
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, dict):
        return list(left) == list(right) and all(same(left[k], right[k]) for k in left)
    return left == right


def outcome(parse: Any, document: bytes) -> tuple[str, Any]:
    try:
        return "value", parse(document)
    except Exception as error:  # the error itself is what is compared
        return type(error).__name__, str(error)


def agree(document: bytes) -> None:
    ours, theirs = outcome(loads, document), outcome(json.loads, document)
    assert ours[0] == theirs[0], (document, ours, theirs)
    if ours[0] == "value":
        assert same(ours[1], theirs[1]), (document, ours[1], theirs[1])
    else:
        assert ours[1] == theirs[1], document


@settings(max_examples=400, deadline=None)
@given(VALUES, st.booleans(), st.sampled_from([None, 0, 2]))
def test_any_document_json_writes_is_read_the_same(
    value: Any, ascii_only: bool, indent: Any
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    agree(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=400, deadline=None)
@given(VALUES, st.data())
def test_broken_or_cut_documents_fail_the_same_way(value: Any, data: st.DataObject) -> None:
    document = json.dumps(value).encode("utf-8", "surrogatepass")
    cut = data.draw(st.integers(min_value=0, max_value=len(document)))
    noise = data.draw(st.binary(max_size=3))
    agree(document[:cut] + noise)


@pytest.mark.parametrize(
    "document",
    [
        b'{"a": 1, "a": 2}',  # duplicate keys: the last wins, at the first's place
        b'{"a": 1, "b": 2, "a": 3}',
        b"\xef\xbb\xbf[1]",  # a UTF-8 byte-order mark
        "[1, 2]".encode("utf-16"),
        "[1, 2]".encode("utf-32-le"),
        b"[1e400, -1e400, 1e-400, -0.0, -0]",
        b"[18446744073709551615, 18446744073709551616, -9223372036854775809]",
        b'["12345678901234567890", 0.12345678901234567890123]',  # long digits, read by json
        b"[NaN, Infinity, -Infinity]",
        b'["\\ud800", "\\udfff\\ud800", "\\ud83d\\ude00"]',
        b'["\\u0000", "tab\\there"]',
        b'["raw\ttab"]',  # a raw control character
        b"[" * 2000 + b"]" * 2000,  # deeper than orjson reads
        b"\xff[]",
        b"",
        b" ",
        b"[1,]",
        b"01",
        b"[1] x",
    ],
)
def test_edge_documents(document: bytes) -> None:
    agree(document)


def test_fastapi_reads_route_bodies_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The route class is in the path FastAPI takes: a body reaches the endpoint through
    ``loads``, and a broken one still gets FastAPI's 422."""
    seen: list[bytes] = []

    def counted(body: bytes) -> Any:
        seen.append(body)
        return loads(body)

    monkeypatch.setattr(json_request, "loads", counted)
    app = FastAPI()
    app.router.route_class = FastJSONRoute

    @app.post("/echo")
    async def echo(body: Annotated[Any, Body()]) -> Any:
        return {"got": body}

    client = TestClient(app)
    json_type = {"content-type": "application/json"}
    answer = client.post(
        "/echo", content=b'{"x": NaN, "y": 18446744073709551616}', headers=json_type
    )
    assert answer.status_code == 200
    assert answer.json() == {"got": {"x": None, "y": 18446744073709551616}}
    assert seen == [b'{"x": NaN, "y": 18446744073709551616}']
    broken = client.post("/echo", content=b'{"x": ', headers=json_type)
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["type"] == "json_invalid"
