"""Gateway routes of the operations area whose HTTP body is not a request Struct as is.

``POST /api/flags`` takes the flags themselves as the body (``{"ExecutionRouter": false}``,
the mission's contract); it is wrapped into ``FlagsSetRequest(values=body, actor=<token id>)``
and forwarded to ``control.flags_set``. Unknown flag or wrong type → 400 from the service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec
from aiohttp import web

from stevie.contracts.ops import FlagsSetRequest
from stevie.services.gateway.security import OPERATOR_ID

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_enc = msgspec.json.Encoder()


class Forwarder(Protocol):
    async def forward(
        self, service: str, method: str, req: msgspec.Struct, unwrap: str | None = None
    ) -> web.Response: ...


class _Route(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...


def _bad(detail: str) -> web.Response:
    return web.Response(
        body=_enc.encode({"error": "bad_request", "detail": detail}), status=400, content_type="application/json"
    )


def flags_set(gw: Forwarder) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = msgspec.json.decode(await request.read() or b"{}")
        except msgspec.DecodeError as exc:
            return _bad(str(exc))
        if not isinstance(body, dict) or not all(isinstance(v, bool | str) or v is None for v in body.values()):
            return _bad('the body must be a JSON object of flag → value, e.g. {"ExecutionRouter": false}')
        return await gw.forward("control", "flags_set", FlagsSetRequest(body, request.get(OPERATOR_ID, "")))

    return handle


CUSTOM: dict[tuple[str, str], Callable[[Forwarder], Handler]] = {("POST", "/api/flags"): flags_set}


def custom(gw: Forwarder, f: _Route) -> Handler | None:
    """The custom handler of route ``f`` (method, path), or None for a plain forward."""
    make = CUSTOM.get((f.method, f.path))
    return make(gw) if make is not None else None
