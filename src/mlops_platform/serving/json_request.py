"""Request bodies parsed by orjson, with the standard library's answer wherever the two differ.

FastAPI parses a JSON body with ``json.loads``: ~300 µs of a 100-record ``POST /predict`` that
costs ~2 ms in all. orjson reads the same body in a third of that, but it is stricter: it
refuses NaN and Infinity, lone surrogates and encodings other than UTF-8, all of which
``json.loads`` accepts, and reads integers beyond 64 bits as floats. A body orjson refuses, or
that may hold such an integer, is parsed by ``json``: every body gets exactly the value, or the
error (and so the 422), it got before. ``tests/unit/test_json_request.py`` checks that on
generated documents.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

# orjson reads an integer beyond 64 bits as a float instead of refusing it (json keeps it exact).
# Such a number has at least 19 digits in a row, which a usual body never has; a body that has
# them anyway (a long fraction, a long number in a string) is merely read the slower way. Found by
# mapping digits to "0" and the rest to " " (C speed: ~20 µs for 100 records, where a regular
# expression took ~250 µs, more than orjson saves).
_DIGITS = bytes(ord("0") if byte in b"0123456789" else ord(" ") for byte in range(256))
_HUGE_INTEGER = b"0" * 19


def loads(body: bytes) -> Any:
    """``json.loads(body)``, the fast way when orjson reads it the same."""
    if _HUGE_INTEGER not in body.translate(_DIGITS):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)


class FastJSONRequest(Request):
    """A request whose ``json()`` is :func:`loads`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class FastJSONRoute(APIRoute):
    """A route whose JSON body FastAPI reads through :class:`FastJSONRequest` (FastAPI's
    documented way to use a custom request class)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(FastJSONRequest(request.scope, request.receive))

        return route
