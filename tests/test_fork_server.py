"""The fork server (``stevie.runtime.zygote``) and the supervisor's side of it
(``stevie.runtime.forked``): a forked service is the supervisor's own child, in its own
session, named, with the environment of the request; it stops on SIGTERM; it dies with the
supervisor; the fork server refuses to fork while a thread is alive."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from stevie.runtime import zygote
from stevie.runtime.forked import ForkServer
from stevie.runtime.infra import free_port
from stevie.runtime.supervisor import fork_server_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl, pidfd: Linux")


def _service_env(nats_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEVIE_")}
    env["STEVIE_NATS_URL"] = f"nats://127.0.0.1:{nats_port}"  # nothing listens: it keeps connecting
    return env


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


async def test_forked_service_is_our_child_in_its_own_session_and_stops_on_sigterm(tmp_path: Path) -> None:
    server = ForkServer(fork_server_env(dict(os.environ)), tmp_path / "zygote.log")
    await server.start()
    try:
        port = free_port()
        log = tmp_path / "budgeter.log"
        proc = await server.spawn("budgeter", log, _service_env(port))
        stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[1]) == os.getpid()  # ppid: re-parented to us (before the reply)
        deadline = time.monotonic() + 20
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "budgeter" and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # it names itself once re-parented
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "budgeter"
        assert os.getsid(proc.pid) == proc.pid  # its own session (started before it named itself)
        while b'"starting"' not in log.read_bytes() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert f"127.0.0.1:{port}".encode() in log.read_bytes()  # the request's environment
        assert proc.returncode is None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        assert time.monotonic() - t0 < 1.5
        proc.send_signal(signal.SIGTERM)  # reaped: a no-op, never a signal to a reused PID
    finally:
        await server.stop()
    assert server.proc is not None and server.proc.returncode is not None


SUPERVISOR = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from stevie.runtime.forked import ForkServer
    from stevie.runtime.supervisor import fork_server_env

    async def main():
        tmp, port = Path(sys.argv[1]), sys.argv[2]
        server = ForkServer(fork_server_env(dict(os.environ)), tmp / "zygote.log")
        await server.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEVIE_")}
        env["STEVIE_NATS_URL"] = f"nats://127.0.0.1:{port}"
        proc = await server.spawn("budgeter", tmp / "budgeter.log", env)
        print(server.proc.pid, proc.pid, flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
    """
)


def test_a_killed_supervisor_takes_the_fork_server_and_the_services_with_it(tmp_path: Path) -> None:
    sup = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(tmp_path), str(free_port())], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sup.stdout is not None
        fork_pid, service_pid = (int(x) for x in sup.stdout.readline().split())
        assert not _gone_within(service_pid, 0.5)
        sup.kill()
        sup.wait()
        assert _gone_within(fork_pid, 2.0)
        assert _gone_within(service_pid, 2.0)  # parent-death signal (SIGTERM), exit within 1 s
    finally:
        if sup.poll() is None:
            sup.kill()


def test_the_fork_server_refuses_to_fork_while_a_thread_is_alive() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        assert zygote.threads_alive() >= 2
        with pytest.raises(RuntimeError, match="threads alive"):
            zygote.fork_service("budgeter", os.devnull, os.getpid(), {})
    finally:
        stop.set()
        t.join()


def test_preloads_start_no_thread() -> None:
    code = "from stevie.runtime import zygote as z; z.preload(); z.preload_extended(); print(z.threads_alive())"
    env = fork_server_env(dict(os.environ))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "1"


def test_up_options_survive_the_exec_into_the_supervisor(tmp_path: Path) -> None:
    from stevie.runtime.supervisor import UpOptions

    opts = UpOptions(tmp_path, speed=4.0, loop=False, gateway_port=1234, services=("budgeter", "gateway"))
    back = UpOptions.from_json(opts.to_json())
    assert back == opts and isinstance(back.state_dir, Path) and isinstance(back.services, tuple)
    with pytest.raises(TypeError):
        UpOptions.from_json('{"state_dir": "/x", "services": [], "colour": "red"}')


async def test_the_supervisor_forks_then_retires_the_fork_server(tmp_path: Path) -> None:
    from stevie.runtime.forked import ForkedProcess
    from stevie.runtime.supervisor import Supervisor

    env = fork_server_env(_service_env(free_port()))
    sup = Supervisor(("budgeter", "risk-guards"), env, tmp_path / "logs", grace_s=3.0, fork_server=True)
    await sup.start_fork_server()
    assert sup.forks is not None and sup.forks.proc is not None
    fork_proc = sup.forks.proc
    task = asyncio.ensure_future(sup.run())
    try:
        await asyncio.wait_for(fork_proc.wait(), 30)  # retired once both services were started
        assert all(isinstance(c.proc, ForkedProcess) and c.proc.returncode is None for c in sup.children)
    finally:
        sup.stopping.set()
        await asyncio.wait_for(task, 10)
    assert all(c.proc is not None and c.proc.returncode is not None for c in sup.children)
