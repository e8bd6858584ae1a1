"""The supervisor's side of the fork server (``stevie.runtime.zygote``): start it, ask it for
a service, and wait for that service as for a child of its own (it is one: re-parented to
the supervisor, a child subreaper while it asks).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from pathlib import Path

from stevie.runtime.infra import pdeathsig

PR_SET_CHILD_SUBREAPER = 36
#: a fork request taking longer than this (the fork server still importing, or stuck) fails
REQUEST_TIMEOUT_S = 30.0


def set_subreaper(on: bool) -> bool:
    """Make this process a child subreaper (orphaned descendants are re-parented to it, not to
    init) or stop being one. False where prctl is not available or refuses (not Linux)."""
    try:
        return int(ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class ForkedProcess:
    """A child re-parented to this process, waited for through a pidfd on the running loop
    (no thread). The subset of ``asyncio.subprocess.Process`` the supervisor uses: ``pid``,
    ``returncode`` (negative: killed by that signal), ``wait``, ``send_signal``, ``kill``.
    Raises ChildProcessError at construction when ``pid`` is not a child of this process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._done = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        done, status = os.waitpid(pid, os.WNOHANG)  # ChildProcessError: not ours
        if done:
            self._finish(status)
            return
        self._fd = os.pidfd_open(pid)
        self._loop.add_reader(self._fd, self._on_ready)

    def _finish(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        self._done.set()

    def _on_ready(self) -> None:
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: the exit code is lost
            done, status = self.pid, 255 << 8
        if done:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._finish(status)

    async def wait(self) -> int:
        """The exit code, once the process has exited (and been reaped)."""
        await self._done.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal the process; a no-op once it is reaped (its PID may belong to another by
        then). ProcessLookupError cannot happen before it is reaped (a zombie keeps its PID)."""
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The running fork server: ``start`` it (from the main thread: its parent-death signal,
    SIGKILL, follows the forking thread), ``spawn`` services, ``stop`` it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = dict(env), log_path
        self.proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        """Start ``python -m stevie.runtime.zygote`` (it imports while the servers start)."""
        out = open(self.log_path, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "stevie.runtime.zygote",
                env=self.env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=out,
                start_new_session=True,
                preexec_fn=pdeathsig(signal.SIGKILL),
            )
        finally:
            out.close()

    async def spawn(self, name: str, log_path: Path, env: dict[str, str], extended: bool = False) -> ForkedProcess:
        """Fork service ``name`` with environment ``env`` (its ``os.environ``; the variables
        read at interpreter start come from the fork server's own), logging to ``log_path``;
        ``extended``: fork it after the fork server imported ``zygote.EXTENDED``.
        Raises RuntimeError when the fork server is away, refuses or does not answer within
        ``REQUEST_TIMEOUT_S``."""
        if not self.alive:
            raise RuntimeError("the fork server is not running")
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            if not set_subreaper(True):
                raise RuntimeError("cannot become a child subreaper (PR_SET_CHILD_SUBREAPER)")
            try:
                req = {"name": name, "log": str(log_path), "parent": os.getpid(), "env": env, "extended": extended}
                self.proc.stdin.write(json.dumps(req).encode() + b"\n")
                await self.proc.stdin.drain()
                line = await asyncio.wait_for(self.proc.stdout.readline(), REQUEST_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise RuntimeError(f"the fork server did not answer: {type(exc).__name__}: {exc}") from exc
            finally:
                set_subreaper(False)  # later orphans (a service's own children) go to init as before
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise RuntimeError(f"the fork server answered {line[:200]!r}") from exc
        if "pid" not in reply:
            raise RuntimeError(str(reply.get("error", reply))[:300])
        pid = int(reply["pid"])
        try:
            return ForkedProcess(pid)
        except ChildProcessError as exc:  # not re-parented to us: do not leave it running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            raise RuntimeError(f"forked service {name} (pid {pid}) is not a child of the supervisor") from exc

    async def stop(self, timeout_s: float = 1.0) -> None:
        """Close its stdin (it exits) and reap it; SIGKILL after ``timeout_s``."""
        if self.proc is None or self.proc.returncode is not None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
