"""``stevie up``: embedded servers, migrations, one OS process per service, supervised.

While it runs, ``<state_dir>/stack.json`` names the NATS and PostgreSQL URLs and the gateway.
A service that exits is restarted with backoff (and logged). SIGINT/SIGTERM stops every
process this supervisor started — services first (SIGTERM, then SIGKILL after a grace
period), then PostgreSQL and NATS — by PID, leaving no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from stevie.runtime.infra import NatsServer, PostgresServer, _pdeathsig, free_port
from stevie.runtime.logs import get_logger
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
    grace_s: float = 10.0


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process | None = None
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
        env.setdefault(
            "STEVIE_VENUES_REST_URLS", f"binance=http://127.0.0.1:{spot},binance-usdm=http://127.0.0.1:{usdm}"
        )
        env.setdefault("STEVIE_VENUES_WS_URLS", f"binance=ws://127.0.0.1:{spot},binance-usdm=ws://127.0.0.1:{usdm}")
    env.setdefault("STEVIE_GATEWAY_PORT", str(opts.gateway_port))
    env.setdefault("STEVIE_GATEWAY_SERVICES", ",".join(opts.services))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Supervisor:
    """Starts each service as ``python -m stevie.runtime.cli run NAME`` and keeps it running."""

    def __init__(self, names: tuple[str, ...], env: dict[str, str], log_dir: Path, grace_s: float) -> None:
        self.children = [Child(n, log_path=log_dir / f"{n}.log") for n in names]
        self.env, self.grace_s = env, grace_s
        self.stopping = asyncio.Event()
        log_dir.mkdir(parents=True, exist_ok=True)

    async def _spawn(self, child: Child) -> None:
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
                preexec_fn=_pdeathsig,
            )
        finally:
            out.close()
        child.started_mono = time.monotonic()
        log.info("service_started", name=child.name, pid=child.proc.pid, log=str(child.log_path))

    async def _watch(self, child: Child) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            await self._spawn(child)
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

    async def run(self) -> None:
        watchers = [asyncio.ensure_future(self._watch(c)) for c in self.children]
        await self.stopping.wait()
        await self.stop_all()
        for w in watchers:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await w

    async def stop_all(self) -> None:
        running = [c.proc for c in reversed(self.children) if c.proc and c.proc.returncode is None]
        for p in running:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in running:
            try:
                await asyncio.wait_for(p.wait(), self.grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()


async def run_up(opts: UpOptions) -> int:
    """Run the stack until SIGINT/SIGTERM. Returns the exit code."""
    env = dict(os.environ)
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    nats = pg = None
    sup: Supervisor | None = None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if not env.get("STEVIE_NATS_URL"):
            nats = await asyncio.to_thread(NatsServer.start, opts.state_dir / "nats")
            env["STEVIE_NATS_URL"] = nats.url
        if not env.get("STEVIE_DATABASE_URL"):
            pg = await asyncio.to_thread(PostgresServer.start, opts.state_dir / "postgres")
            env["STEVIE_DATABASE_URL"] = pg.url
        applied = await migrate(env["STEVIE_DATABASE_URL"])
        log.info(
            "infra_ready", nats=env["STEVIE_NATS_URL"], database=env["STEVIE_DATABASE_URL"], migrations_applied=applied
        )
        env = stack_env(opts, env)
        (opts.state_dir / "stack.json").write_text(
            json.dumps(
                {
                    "nats_url": env["STEVIE_NATS_URL"],
                    "database_url": env["STEVIE_DATABASE_URL"],
                    "gateway": f"http://127.0.0.1:{env['STEVIE_GATEWAY_PORT']}",
                    "pid": os.getpid(),
                },
                indent=2,
            )
        )
        sup = Supervisor(opts.services, env, opts.state_dir / "logs", opts.grace_s)
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
        if sup is not None and not sup.stopping.is_set():
            sup.stopping.set()
            await sup.stop_all()
        if pg is not None:
            await asyncio.to_thread(pg.stop)
        if nats is not None:
            await asyncio.to_thread(nats.stop)
        (opts.state_dir / "stack.json").unlink(missing_ok=True)
        log.info("stack_stopped")
