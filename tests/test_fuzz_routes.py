"""Bad input never gets a 5xx: a bounded fuzz over every route of the OpenAPI document on the
shared running stack (a few hundred requests). Every answer must be < 500 and JSON; and a
request that is nonsense — truncated or non-object JSON, invalid UTF-8, nesting 10,000 deep,
numbers beyond float range or 30 digits long, a lone surrogate, a field of the wrong type,
an unregistered method — must never get a 200 (it gets a 4xx with ``{error, detail}``, a 405
with an ``Allow`` header)."""

from __future__ import annotations

import json
import random
import re
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.e2e

NONSENSE_BODIES: list[tuple[str, bytes]] = [
    ("truncated", b'{"symbol": "BTCUSDT"'),
    ("not_json", b"hello"),
    ("array", b"[1, 2, 3]"),
    ("number", b"1e308"),
    ("null", b"null"),
    ("deep_array", b"[" * 10_000 + b"]" * 10_000),
    ("deep_object", b'{"a":' * 5_000 + b"1" + b"}" * 5_000),
    ("bad_utf8", b'{"symbol": "\xff\xfe\xfd"}'),
    ("lone_surrogate", b'{"symbol": "\\ud800", "venue": "\\udfff"}'),
    ("huge_float", b'{"size": 1e308, "symbol": "BTCUSDT", "side": "buy"}'),
    ("inf_float", b'{"size": 1e999, "symbol": "BTCUSDT", "side": "buy"}'),
    ("neg_huge", b'{"size": -1e308, "limit": -1e308}'),
    ("big_int", b'{"size": 123456789012345678901234567890, "symbol": "BTCUSDT", "side": "buy"}'),
    ("nul_bytes", b'{"symbol": "BTC\\u0000USDT"}\x00\x00'),
]
PATH_VALUES = ["%00", "..%2F..%2Fetc", "A" * 300, "%F0%9F%92%A5", "'%20OR%201=1", "-1"]
QUERY_VALUES = ["abc", "-1", "1e308", "123456789012345678901234567890", "%00", "", "NaN", "[]"]


def raw_request(url: str, method: str, body: bytes | None, token: str | None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def wrong_value(schema: dict) -> object | None:
    """A JSON value of another type than ``schema`` says (None when the schema is not simple)."""
    t = schema.get("type")
    return {"string": 12345, "integer": "abc", "number": "abc", "boolean": "maybe", "array": "x", "object": [1]}.get(
        t if isinstance(t, str) else ""
    )


def fill(path: str, value: str) -> str:
    return re.sub(r"{\w+}", value, path)


def defaults(path: str) -> str:
    return path.replace("{venue}", "binance").replace("{symbol}", "BTCUSDT").replace("{id}", "x")


def test_fuzz_every_route_no_5xx_and_no_200_for_nonsense(e2e_stack):
    status, doc = e2e_stack.get("/api/openapi.json")
    assert status == 200
    paths: dict[str, dict] = doc["paths"]
    schemas = doc.get("components", {}).get("schemas", {})
    rng = random.Random(14)
    cases: list[tuple[str, str, bytes | None, bool, str]] = []  # method, path, body, nonsense, what
    for path, ops in paths.items():
        for method, op in ops.items():
            m = method.upper()
            base = defaults(path)
            if m == "POST":
                for what, body in NONSENSE_BODIES:
                    cases.append((m, base, body, True, what))
                body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
                if "$ref" in body_schema:
                    body_schema = schemas.get(body_schema["$ref"].rsplit("/", 1)[1], {})
                for name, prop in list(body_schema.get("properties", {}).items())[:3]:
                    bad = wrong_value(prop)
                    if bad is not None:
                        cases.append((m, base, json.dumps({name: bad}).encode(), True, f"wrong_type:{name}"))
            for prm in op.get("parameters", []):
                if prm["in"] == "path":
                    for v in rng.sample(PATH_VALUES, 3):
                        cases.append(
                            (
                                m,
                                defaults(path.replace("{" + prm["name"] + "}", v)),
                                b"{}" if m == "POST" else None,
                                False,
                                "path",
                            )
                        )
                elif prm["in"] == "query":
                    for v in rng.sample(QUERY_VALUES, 3):
                        cases.append((m, f"{base}?{prm['name']}={v}", b"{}" if m == "POST" else None, False, "query"))
                        if prm.get("schema", {}).get("type") == "integer" and v in ("abc", "1e308", "[]", "NaN"):
                            cases[-1] = (*cases[-1][:3], True, f"query_type:{prm['name']}")
            wrong = "DELETE" if m != "DELETE" else "PATCH"
            cases.append((wrong, base, None, True, "method"))
    assert 200 <= len(cases) <= 1500, len(cases)

    failures = []
    for m, path, body, nonsense, what in cases:
        status, raw, headers = raw_request(e2e_stack.url + path, m, body, e2e_stack.token)
        ctype = headers.get("Content-Type", "")
        if status >= 500:
            failures.append(f"{status} {m} {path} [{what}]: {raw[:160]!r}")
        elif nonsense and status == 200:
            failures.append(f"200 for nonsense {m} {path} [{what}]: {raw[:160]!r}")
        elif status >= 400 and "json" not in ctype:
            failures.append(f"{status} not JSON {m} {path} [{what}]: {ctype} {raw[:80]!r}")
        elif status == 405 and "Allow" not in headers:
            failures.append(f"405 without Allow {m} {path}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:40])
