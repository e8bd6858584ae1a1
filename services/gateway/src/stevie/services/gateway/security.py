"""Gateway security: operator bearer token, Host allow-list, same-origin POSTs, body cap.

One aiohttp middleware, built from a ``SecurityPolicy``, runs before every handler:

1. **Body cap** — a declared ``Content-Length`` above ``max_body_bytes`` → 413 before the body
   is read (the application's ``client_max_size`` caps chunked bodies the same way).
2. **Host** — the ``Host`` header's name must be the bound address or a loopback name
   (``localhost``, ``127.0.0.1``, ``::1``) or one of ``allowed_hosts``; else 403
   ``forbidden_host`` (DNS rebinding: a page served by ``evil.example`` resolving to
   127.0.0.1 still sends ``Host: evil.example``).
3. **Same origin** on mutating methods (POST, PUT, PATCH, DELETE) — an ``Origin`` header that
   is not ``http(s)://<Host>`` (including the opaque ``null`` origin), or
   ``Sec-Fetch-Site: cross-site``, → 403 ``cross_origin`` (CSRF: a browser page elsewhere
   cannot fill a paper order with a ``text/plain`` form POST; browsers always send ``Origin``
   on cross-origin POSTs). curl and scripts send no ``Origin`` and pass.
4. **Operator token** on protected routes — ``Authorization: Bearer <token>`` compared with
   ``hmac.compare_digest`` (constant time): missing → 401 ``unauthorized`` (with
   ``WWW-Authenticate: Bearer``), wrong → 403 ``forbidden``. With no token configured a
   protected route answers 403 ``operator_disabled``. On success ``request[OPERATOR_ID]``
   holds the token id (first 12 hex digits of its SHA-256; never the token) for audits.

Which routes are protected (``SecurityPolicy.protected``):

- ``auth="operator"`` (default): the operator routes (``Forward(operator=True)`` and the
  extra operator paths). The paper-trading routes the user's acceptance calls without a
  token (router update, plan-and-execute, paper order, options chain) stay open on
  loopback, still behind the Host and Origin checks.
- ``auth="all"`` (the issue's strict mode): every mutating request needs the token, except
  the read-only computations listed in ``READ_ONLY_POSTS`` (router choose, exec simulate,
  portfolio optimize, venue score: they change no state).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from stevie.services.gateway.settings import GatewaySettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
AUTH_MODES = ("operator", "all")
# POST routes that compute an answer without changing any state: open even in strict mode.
READ_ONLY_POSTS = frozenset(
    {
        "/api/router/choose",
        "/api/exec/simulate",
        "/api/portfolio/optimize",
        "/api/venues/score",
    }
)
_enc = msgspec.json.Encoder()
OPERATOR_ID = web.RequestKey("operator_id", str)  # the token id of an authenticated request


def token_id(token: str) -> str:
    """A stable, non-secret name for a token (audits say who changed what): the first 12 hex
    digits of SHA-256(token). '' for no token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12] if token else ""


def host_name(host_header: str) -> str:
    """``Host`` header → lower-case host name without port (``[::1]:5000`` → ``::1``)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


@dataclass(frozen=True)
class SecurityPolicy:
    """token: the operator bearer token ('' = operator routes disabled). auth: ``operator`` or
    ``all`` (see module doc). bound_host: the address the gateway listens on. allowed_hosts:
    extra ``Host`` names to accept (a reverse proxy's name). operator_routes: (METHOD, path
    template) pairs that always need the token. max_body_bytes: request body cap."""

    token: str
    auth: str = "operator"
    bound_host: str = "127.0.0.1"
    allowed_hosts: frozenset[str] = frozenset()
    operator_routes: frozenset[tuple[str, str]] = frozenset()
    max_body_bytes: int = 1 << 20
    _hosts: frozenset[str] = field(init=False, repr=False, default=frozenset())

    def __post_init__(self) -> None:
        if self.auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {AUTH_MODES}, got {self.auth!r}")
        if self.max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be > 0")
        hosts = set(LOOPBACK) | {h.lower() for h in self.allowed_hosts}
        if self.bound_host not in ("0.0.0.0", "::", ""):
            hosts.add(self.bound_host.lower())
        object.__setattr__(self, "_hosts", frozenset(hosts))

    def host_allowed(self, host_header: str) -> bool:
        return host_name(host_header) in self._hosts

    def protected(self, method: str, path_template: str) -> bool:
        """Does ``method`` on the route ``path_template`` need the operator token?"""
        if (method, path_template) in self.operator_routes:
            return True
        return self.auth == "all" and method in MUTATING and path_template not in READ_ONLY_POSTS

    def check_token(self, authorization: str | None) -> tuple[int, str, str] | str:
        """The token id when ``authorization`` carries the right bearer token, else
        ``(status, error, detail)``. Constant-time comparison of the UTF-8 bytes."""
        if not self.token:
            return 403, "operator_disabled", "no operator token is configured (set STEVIE_OPERATOR_TOKEN)"
        if not authorization:
            return 401, "unauthorized", "this route needs 'Authorization: Bearer <operator token>'"
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return 401, "unauthorized", "the Authorization header must be 'Bearer <operator token>'"
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return 403, "forbidden", "wrong operator token"
        return token_id(self.token)


def same_origin(origin: str, host_header: str) -> bool:
    """Is ``origin`` (scheme://host[:port]) the origin of a page served by this ``Host``?"""
    if origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.strip().lower()


def _deny(status: int, err: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_enc.encode({"error": err, "detail": detail}),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def middleware(policy: SecurityPolicy) -> Middleware:
    """The aiohttp middleware enforcing ``policy`` (order: body cap, Host, Origin, token)."""

    @web.middleware
    async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > policy.max_body_bytes:
            return _deny(413, "payload_too_large", f"bodies are capped at {policy.max_body_bytes} bytes")
        host = request.headers.get("Host", "")
        if not policy.host_allowed(host):
            return _deny(403, "forbidden_host", "the Host header must name this gateway (loopback)")
        if request.method in MUTATING:
            origin = request.headers.get("Origin")
            if origin is not None and not same_origin(origin, host):
                return _deny(403, "cross_origin", "cross-origin requests may not change state")
            if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
                return _deny(403, "cross_origin", "cross-site requests may not change state")
        info = request.match_info
        route = info.route if info is not None else None
        resource = route.resource if route is not None else None
        template = resource.canonical if resource is not None else request.path
        if policy.protected(request.method, template):
            verdict = policy.check_token(request.headers.get("Authorization"))
            if isinstance(verdict, tuple):
                status, err, detail = verdict
                extra = {"WWW-Authenticate": 'Bearer realm="stevie"'} if status == 401 else None
                return _deny(status, err, detail, extra)
            request[OPERATOR_ID] = verdict
        return await handler(request)

    return security


def operator_routes(routes: Iterable[tuple[str, str, bool]]) -> frozenset[tuple[str, str]]:
    """(METHOD, path, operator?) rows → the set of operator (METHOD, path) pairs."""
    return frozenset((m.upper(), p) for m, p, op in routes if op)


def policy_for(s: GatewaySettings, routes: Iterable[tuple[str, str, bool]]) -> SecurityPolicy:
    """The policy of a gateway from its settings and its registered (METHOD, path, operator?)
    routes."""
    return SecurityPolicy(
        token=s.operator_token,
        auth=s.auth,
        bound_host=s.host,
        allowed_hosts=frozenset(s.allowed_hosts),
        operator_routes=operator_routes(routes),
        max_body_bytes=s.max_body_bytes,
    )
