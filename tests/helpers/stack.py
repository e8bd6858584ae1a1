"""One ``stevie up`` (real NATS, PostgreSQL, every service, the replay venue) for the tests
that only read and exercise routes. Dev mode, with a known operator token."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from stevie.runtime.infra import free_port

T = TypeVar("T")


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    port: int
    state: Path
    token: str
    started_mono: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: object = None, token: str | None = None, timeout_s: float = 15
    ) -> tuple[int, Any]:
        """(status, decoded JSON or text). ``token``: sent as the bearer token when given."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        return self.request("GET", path, token=token)

    def post(self, path: str, body: object, token: str | None = None) -> tuple[int, Any]:
        return self.request("POST", path, body, token=token)

    def database_url(self) -> str:
        return str(json.loads((self.state / "stack.json").read_text())["database_url"])

    def nats_url(self) -> str:
        return str(json.loads((self.state / "stack.json").read_text())["nats_url"])


def wait_for(pred: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``pred`` every 0.25 s until it returns something truthy; AssertionError on timeout."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last  # type: ignore[return-value]
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last={last!r}")


def start(state: Path, env_extra: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Stack:
    """Start ``stevie up`` in ``state`` on a free gateway port (dev mode, random token)."""
    port = free_port()
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEVIE_")}
    env.update({"STEVIE_LOG_LEVEL": "warning", "STEVIE_ENV": "dev", "STEVIE_OPERATOR_TOKEN": token})
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stevie.runtime.cli",
            "up",
            "--state-dir",
            str(state),
            "--gateway-port",
            str(port),
            *args,
        ],
        env=env,
        stdout=open(state / "up.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    return Stack(proc, port, state, token, time.monotonic())


def stop(stack: Stack, timeout_s: float = 60) -> int | None:
    if stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGINT)
        return stack.proc.wait(timeout_s)
    return stack.proc.returncode


def wait_healthy(stack: Stack, timeout_s: float = 180) -> dict[str, Any]:
    """Wait until every service is up and the database answers; returns /api/health."""

    def healthy() -> dict[str, Any] | None:
        _, h = stack.get("/api/health")
        if not isinstance(h, dict) or "services" not in h:
            return None
        ok = all(s["up"] for s in h["services"].values()) and h["db"]["latencyMs"] is not None
        return h if ok else None

    return wait_for(healthy, timeout_s, "every service up")
