"""The gateway's token and origin rules on the shared running stack (``e2e_stack``): an
operator route answers 401 without the token, 403 with a wrong one, 200 with the right one;
a state-changing request from a foreign origin (or ``Sec-Fetch-Site: cross-site``) is 403
even with the token; a foreign ``Host`` is 403; same-origin and header-less scripts pass."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.e2e


def call(url: str, method: str, path: str, body: object = None, headers: dict[str, str] | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_operator_route_needs_the_right_token(e2e_stack):
    url, token = e2e_stack.url, e2e_stack.token
    body = {"BOCPD": None}  # removes an override that is not there: changes nothing
    status, err = call(url, "POST", "/api/flags", body)
    assert status == 401 and err["error"] == "unauthorized"
    status, err = call(url, "POST", "/api/flags", body, {"Authorization": "Bearer " + "0" * len(token)})
    assert status == 403 and err["error"] == "forbidden"
    status, err = call(url, "POST", "/api/flags", body, {"Authorization": token})  # not a Bearer header
    assert status in (401, 403)
    status, state = call(url, "POST", "/api/flags", body, {"Authorization": f"Bearer {token}"})
    assert status == 200 and "BOCPD" in state["flags"]
    assert call(url, "GET", "/api/flags")[0] == 200  # reading needs no token


def test_cross_origin_state_changes_are_refused(e2e_stack):
    url, token = e2e_stack.url, e2e_stack.token
    choose = {"context": {}}
    assert call(url, "POST", "/api/router/choose", choose)[0] == 200  # a script: no Origin
    assert call(url, "POST", "/api/router/choose", choose, {"Origin": url})[0] == 200  # same origin
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        status, err = call(url, "POST", "/api/router/choose", choose, headers)
        assert status == 403 and err["error"] == "cross_origin", headers
    status, err = call(
        url,
        "POST",
        "/api/flags",
        {"BOCPD": None},
        {"Origin": "http://evil.example", "Authorization": f"Bearer {token}"},
    )
    assert status == 403 and err["error"] == "cross_origin"  # the token does not make a CSRF legal
    status, err = call(url, "GET", "/api/health", headers={"Host": "evil.example"})
    assert status == 403 and err["error"] == "forbidden_host"
