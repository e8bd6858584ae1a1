"""``stevie up``: embedded servers, migrations, one OS process per service, supervised.

While it runs, ``<state_dir>/stack.json`` names the NATS and PostgreSQL URLs and the gateway
(and how often each embedded server was restarted). A service that exits is restarted with
backoff (and logged). So are the embedded ``nats-server`` and PostgreSQL: they are reaped
as soon as they die and started again on the same port with the same store (backoff 0.2 s
doubling to 5 s, a ``server_restarted`` log line, ``restarts`` in ``stack.json``).

Every child runs in its own session (process group), so a terminal Ctrl-C reaches only this
supervisor. SIGINT/SIGTERM stops every process it started, by PID and in order — services
first (SIGTERM, SIGKILL after ``grace_s``), then PostgreSQL (fast shutdown), then NATS — and
removes ``stack.json``. If the supervisor itself is killed, every child gets its
parent-death signal (services SIGTERM and exit within 1 s, PostgreSQL SIGQUIT, NATS SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stevie.runtime import nats_auth
from stevie.runtime.forked import ForkedProcess, ForkServer
from stevie.runtime.infra import InfraError, NatsServer, PostgresServer, free_port, kill_leftovers, pdeathsig
from stevie.runtime.logs import configure_logging, get_logger
from stevie.store import migrate

log = get_logger(service="supervisor")


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path
    speed: float = 1.0
    window: str = "2024-08-08"
    loop: bool = True
    gateway_port: int = 5000
    services: tuple[str, ...] = ()
    grace_s: float = 3.0
    fork_server: bool = True

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "state_dir": str(self.state_dir)})

    @classmethod
    def from_json(cls, raw: str) -> UpOptions:
        """Raises ValueError/TypeError/KeyError on anything but ``to_json``'s output."""
        d = json.loads(raw)
        return cls(**{**d, "state_dir": Path(d["state_dir"]), "services": tuple(d["services"])})


def exec_supervisor(opts: UpOptions) -> None:
    """Replace this process (same PID) with a fresh interpreter that runs only ``main``: the
    supervisor lives for the whole stack, and the command line's imports (typer, rich, the
    services' command-line tools, ≈ 20 MB) would stay in its heap. Never returns; OSError if
    the interpreter cannot be executed."""
    os.execv(sys.executable, [sys.executable, "-m", "stevie.runtime.supervisor", opts.to_json()])


def main(argv: list[str]) -> None:
    """``python -m stevie.runtime.supervisor OPTIONS_JSON`` (``exec_supervisor``): run the
    stack until SIGINT/SIGTERM, then exit with its code."""
    configure_logging(os.environ.get("STEVIE_LOG_LEVEL", "info"))
    code = asyncio.run(run_up(UpOptions.from_json(argv[0])))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # every child is stopped: skip interpreter finalisation (it took seconds)


#: the path from a venue message to a stored decision: started first, so their imports do not
#: share the two cores with the others' (the rest follow ``STAGGER_S`` later)
CRITICAL = frozenset(
    {
        "budgeter",
        "venue-replay",
        "book-maintainer",
        "features",
        "router",
        "risk-guards",
        "execution",
        "reporter",
        "gateway",
    }
)
STAGGER_S = 2.0
#: critical services that import scipy themselves (router: its bandit): forked after the fork
#: server has imported ``zygote.EXTENDED`` — behind the other critical ones, which do not wait
#: for that import — so they share it instead of holding a private copy
MATHS = frozenset({"router"})


@dataclass
class Child:
    name: str
    delay_s: float = 0.0
    proc: asyncio.subprocess.Process | ForkedProcess | None = None
    restarts: int = 0
    started_mono: float = 0.0
    log_path: Path = field(default_factory=Path)


def stack_env(opts: UpOptions, base: dict[str, str]) -> dict[str, str]:
    """Environment for the services: replay ports and venue URLs wired together."""
    env = dict(base)
    spot = int(env.setdefault("STEVIE_VENUE_REPLAY_SPOT_PORT", str(free_port())))
    usdm = int(env.setdefault("STEVIE_VENUE_REPLAY_USDM_PORT", str(free_port())))
    env.setdefault("STEVIE_VENUE_REPLAY_SPEED", str(opts.speed))
    env.setdefault("STEVIE_VENUE_REPLAY_WINDOW", opts.window)
    env.setdefault("STEVIE_VENUE_REPLAY_LOOP", "true" if opts.loop else "false")
    if "venue-replay" in opts.services:
        env.setdefault("STEVIE_ENV", "dev")  # a replay stack is a dev stack (chaos, flags POST; token still needed)
        env.setdefault("STEVIE_BOOK_MAINTAINER_BINANCE_REST_URL", f"http://127.0.0.1:{spot}")
        env.setdefault("STEVIE_BOOK_MAINTAINER_BINANCE_WS_URL", f"ws://127.0.0.1:{spot}")
        env.setdefault("STEVIE_BOOK_MAINTAINER_BINANCE_USDM_REST_URL", f"http://127.0.0.1:{usdm}")
        env.setdefault("STEVIE_BOOK_MAINTAINER_BINANCE_USDM_WS_URL", f"ws://127.0.0.1:{usdm}")
        env.setdefault("STEVIE_VOL_REST_URL", f"http://127.0.0.1:{usdm}")
        env.setdefault("STEVIE_ADAPTIVE_REST_URL", f"http://127.0.0.1:{usdm}")
        env.setdefault(
            "STEVIE_VENUES_REST_URLS", f"binance=http://127.0.0.1:{spot},binance-usdm=http://127.0.0.1:{usdm}"
        )
        env.setdefault("STEVIE_VENUES_WS_URLS", f"binance=ws://127.0.0.1:{spot},binance-usdm=ws://127.0.0.1:{usdm}")
    env.setdefault("STEVIE_GATEWAY_PORT", str(opts.gateway_port))
    env.setdefault("STEVIE_GATEWAY_SERVICES", ",".join(opts.services))
    return fork_server_env(env)


def fork_server_env(base: dict[str, str]) -> dict[str, str]:
    """The variables read when an interpreter starts (so the fork server needs them too):
    unbuffered output, at most two malloc arenas per process (glibc gives each thread that
    allocates its own, up to 8 per core, and the services' thread pools — asyncio.to_thread,
    onnxruntime, OpenBLAS — left each holding its own free memory) and a one-thread OpenBLAS
    (two cores shared by fifteen processes; and no BLAS thread pool started at import, which
    the fork server requires)."""
    env = dict(base)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MALLOC_ARENA_MAX", "2")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


class Supervisor:
    """Starts each service — forked from the fork server (``stevie.runtime.zygote``) when it
    runs, else as ``python -m stevie.runtime.cli run NAME`` — and keeps it running."""

    def __init__(
        self, names: tuple[str, ...], env: dict[str, str], log_dir: Path, grace_s: float, fork_server: bool = True
    ) -> None:
        order = sorted(names, key=lambda n: (n not in CRITICAL, n in MATHS))  # stable: registry order otherwise
        self.children = [Child(n, 0.0 if n in CRITICAL else STAGGER_S, log_path=log_dir / f"{n}.log") for n in order]
        self.env, self.grace_s = env, grace_s
        self.stopping = asyncio.Event()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.forks = ForkServer(env, log_dir / "zygote.log") if fork_server else None
        self._unstarted = {c.name for c in self.children}
        self._all_started = asyncio.Event()

    async def start_fork_server(self) -> int | None:
        """Start the fork server (from the main thread); its PID, or None when disabled."""
        if self.forks is None:
            return None
        await self.forks.start()
        assert self.forks.proc is not None
        log.info("fork_server_started", pid=self.forks.proc.pid)
        return self.forks.proc.pid

    async def _spawn(self, child: Child) -> None:
        if self.forks is not None and self.forks.alive:
            try:
                # the maths libraries only for those after the critical path (and MATHS, forked last)
                extended = child.name not in CRITICAL or child.name in MATHS
                child.proc = await self.forks.spawn(child.name, child.log_path, self.env, extended)
                child.started_mono = time.monotonic()
                log.info("service_started", name=child.name, pid=child.proc.pid, log=str(child.log_path), forked=True)
                return
            except RuntimeError as exc:  # started the plain way instead
                log.warning("fork_failed", name=child.name, error=str(exc)[:300])
        out = open(child.log_path, "ab")
        try:
            child.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "stevie.runtime.cli",
                "run",
                child.name,
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=pdeathsig(signal.SIGTERM),
            )
        finally:
            out.close()
        child.started_mono = time.monotonic()
        log.info("service_started", name=child.name, pid=child.proc.pid, log=str(child.log_path))

    async def _watch(self, child: Child) -> None:
        backoff = 0.5
        if child.delay_s:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), child.delay_s)
        while not self.stopping.is_set():
            await self._spawn(child)
            self._unstarted.discard(child.name)
            if not self._unstarted:
                self._all_started.set()
            assert child.proc is not None
            code = await child.proc.wait()
            if self.stopping.is_set():
                return
            child.restarts += 1
            if time.monotonic() - child.started_mono > 30:
                backoff = 0.5
            log.warning("service_exited", name=child.name, code=code, restart_in_s=backoff, restarts=child.restarts)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            backoff = min(backoff * 2, 10.0)

    async def _retire_fork_server(self) -> None:
        """Stop the fork server once every service has been started: from then on it only
        costs memory — each page a service writes is copied, and the fork server keeps the
        original, so its share of the stack's PSS grows (41 → 54 MB over 5 minutes) while the
        services keep sharing what they have not written. A restart after that starts a
        fresh interpreter (``python -m stevie.runtime.cli run NAME``)."""
        await self._all_started.wait()
        if self.forks is not None and self.forks.alive:
            await self.forks.stop()
            log.info("fork_server_stopped", reason="every service started")

    async def run(self) -> None:
        watchers = [asyncio.ensure_future(self._watch(c)) for c in self.children]
        if not self.children:
            self._all_started.set()
        watchers.append(asyncio.ensure_future(self._retire_fork_server()))
        await self.stopping.wait()
        await self.stop_all()
        for w in watchers:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await w

    async def stop_all(self) -> None:
        """SIGTERM every running service at once, wait ``grace_s`` for them together, then
        SIGKILL (and log) the ones still running."""
        running = [c for c in reversed(self.children) if c.proc and c.proc.returncode is None]
        for c in running:
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        t0 = time.monotonic()

        async def reap(c: Child) -> None:
            assert c.proc is not None
            try:
                await asyncio.wait_for(c.proc.wait(), max(0.0, self.grace_s - (time.monotonic() - t0)))
            except TimeoutError:
                log.warning("service_killed", name=c.name, after_s=self.grace_s)
                with contextlib.suppress(ProcessLookupError):
                    c.proc.kill()
                await c.proc.wait()

        await asyncio.gather(*(reap(c) for c in running))
        if self.forks is not None:
            await self.forks.stop()


class ServerKeeper:
    """Keeps one embedded server running: reaps it the moment it exits (a 0.1 s poll, so no
    ``<defunct>`` lingers) and starts it again — same port, same store — with backoff."""

    def __init__(self, name: str, server: NatsServer | PostgresServer, on_change: Callable[[], None]) -> None:
        self.name, self.server, self.on_change = name, server, on_change
        self.restarts = 0
        self.up_since = time.monotonic()

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = 0.2
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.1)
            if stopping.is_set() or self.server.alive():
                continue
            code = self.server.proc.returncode
            if time.monotonic() - self.up_since > 30:
                backoff = 0.2
            log.warning("server_exited", server=self.name, code=code, restart_in_s=backoff, restarts=self.restarts)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), backoff)
            if stopping.is_set():
                return
            backoff = min(backoff * 2, 5.0)
            try:
                if isinstance(self.server, PostgresServer):  # its orphaned backends
                    await asyncio.to_thread(kill_leftovers, self.server.pgdata)
                self.server.respawn()  # forked from the main thread: the parent-death signal holds
                await asyncio.to_thread(self.server.wait_ready)
            except (InfraError, OSError) as exc:
                log.error("server_restart_failed", server=self.name, error=str(exc)[:300])
                continue
            self.restarts += 1
            self.up_since = time.monotonic()
            log.warning("server_restarted", server=self.name, pid=self.server.proc.pid, restarts=self.restarts)
            self.on_change()


def _write_stack(path: Path, env: dict[str, str], keepers: list[ServerKeeper], fork_server: int | None) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "nats_url": env["STEVIE_NATS_URL"],
                "database_url": env["STEVIE_DATABASE_URL"],
                "gateway": f"http://127.0.0.1:{env['STEVIE_GATEWAY_PORT']}",
                "pid": os.getpid(),
                "restarts": {k.name: k.restarts for k in keepers},
                "servers": {k.name: k.server.proc.pid for k in keepers},
                "fork_server": fork_server,
            },
            indent=2,
        )
    )
    tmp.replace(path)


async def _start_servers(state_dir: Path, env: dict[str, str]) -> tuple[NatsServer | None, PostgresServer | None]:
    """Spawn NATS and PostgreSQL (from this, the main, thread) and wait for both in parallel."""
    nats = pg = None
    waits = []
    try:
        if not env.get("STEVIE_NATS_URL"):
            extra: tuple[str, ...] = ()
            if nats_auth.enabled(env):  # per-service NATS users (deploy/nats-cluster accounts)
                conf, env["STEVIE_NATS_PASSWORD"] = nats_auth.write_config(state_dir / "nats")
                extra = ("-c", str(conf))
            nats = NatsServer.spawn(state_dir / "nats", extra_args=extra)
            env["STEVIE_NATS_URL"] = nats.url
            waits.append(asyncio.to_thread(nats.wait_ready))
        if not env.get("STEVIE_DATABASE_URL"):
            await asyncio.to_thread(PostgresServer.prepare, state_dir / "postgres")
            pg = PostgresServer.spawn(state_dir / "postgres")
            env["STEVIE_DATABASE_URL"] = pg.url
            waits.append(asyncio.to_thread(pg.wait_ready))
        await asyncio.gather(*waits)
    except BaseException:
        for srv in (pg, nats):
            if srv is not None:
                await asyncio.to_thread(srv.stop)
        raise
    return nats, pg


async def run_up(opts: UpOptions) -> int:
    """Run the stack until SIGINT/SIGTERM. Returns the exit code."""
    env = dict(os.environ)
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    stack_file = opts.state_dir / "stack.json"
    nats = pg = None
    sup: Supervisor | None = None
    keepers: list[ServerKeeper] = []
    keeper_tasks: list[asyncio.Future[None]] = []
    servers_stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stop_mono = [0.0]

    def on_signal() -> None:
        stop_mono[0] = stop_mono[0] or time.monotonic()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    fork_pid: int | None = None
    try:
        servers = asyncio.ensure_future(_start_servers(opts.state_dir, env))
        # created before the services' env is known: the fork server imports while NATS and
        # PostgreSQL start, and each fork request carries the env (``sup.env``, set below)
        sup = Supervisor(opts.services, fork_server_env(env), opts.state_dir / "logs", opts.grace_s, opts.fork_server)
        try:
            fork_pid = await sup.start_fork_server()
        finally:
            nats, pg = await servers
        applied = await migrate(env["STEVIE_DATABASE_URL"])
        log.info(
            "infra_ready", nats=env["STEVIE_NATS_URL"], database=env["STEVIE_DATABASE_URL"], migrations_applied=applied
        )
        env = sup.env = stack_env(opts, env)
        keepers = [
            ServerKeeper(n, srv, lambda: _write_stack(stack_file, env, keepers, fork_pid))
            for n, srv in (("nats", nats), ("postgres", pg))
            if srv is not None
        ]
        keeper_tasks = [asyncio.ensure_future(k.run(servers_stopping)) for k in keepers]
        _write_stack(stack_file, env, keepers, fork_pid)
        task = asyncio.ensure_future(sup.run())
        log.info(
            "stack_up",
            gateway=f"http://127.0.0.1:{env['STEVIE_GATEWAY_PORT']}",
            logs=str(opts.state_dir / "logs"),
            services=list(opts.services),
        )
        await stop.wait()
        log.info("stack_stopping")
        sup.stopping.set()
        await task
        return 0
    finally:
        t0 = stop_mono[0] or time.monotonic()
        if sup is not None and not sup.stopping.is_set():
            sup.stopping.set()
            await sup.stop_all()
        log.info("services_stopped", elapsed_s=round(time.monotonic() - t0, 3))
        servers_stopping.set()
        for t in keeper_tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if pg is not None:
            await asyncio.to_thread(pg.stop)
        if nats is not None:
            await asyncio.to_thread(nats.stop)
        stack_file.unlink(missing_ok=True)
        log.info("stack_stopped", elapsed_s=round(time.monotonic() - t0, 3))


if __name__ == "__main__":
    main(sys.argv[1:])
