"""The services' fork server: imports the libraries every service needs once, then forks
each service from that warm interpreter (``stevie up``; ``stevie run NAME`` does not use it).

Why: every service imported numpy, msgspec, nats-py, aiohttp, structlog, asyncpg, pydantic
and ``stevie.runtime`` on its own (≈ 1 s of CPU each, fifteen times, on two shared cores,
while the stack starts), and each kept a private copy of those modules' objects (≈ 35 MB).
A forked service starts with them imported, and their pages stay shared with the fork server
until written (``gc.freeze()`` keeps the collector from writing to every object it scans), so
PSS counts them once across the stack.

Protocol (one line of JSON per request on stdin, one reply line on stdout):
``{"name": "features", "log": "/path/features.log", "parent": 1234, "env": {...}}`` →
``{"pid": 5678}`` or ``{"error": "..."}`` (``env``: the service's ``os.environ``; with
``"extended": true`` the fork server imports ``EXTENDED`` first). The reply's
process is a grandchild: the fork server forks an intermediate that forks the service and exits
at once, so the service is re-parented to the
supervisor (``parent``, a child subreaper: ``PR_SET_CHILD_SUBREAPER``), which then waits for
it like for any child of its own. The service, once re-parented, sets its parent-death signal
(SIGTERM) and checks its parent again (the race of a supervisor dying in between), starts its
own session (a terminal's Ctrl-C reaches only the supervisor), points stdout and stderr at its
log file, names itself (``/proc/PID/comm``) and runs like ``stevie run NAME``.

Guarantees kept: no thread is alive in the fork server when it forks (checked before every
fork: a fork with threads would copy locks held by threads that do not exist in the child;
``OPENBLAS_NUM_THREADS=1`` keeps numpy's BLAS from starting its pool at import), so libraries
that start threads (polars, onnxruntime, scipy's BLAS) are imported by the service after the
fork. The fork server gets SIGKILL when the supervisor dies (its parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import signal
import sys
import time

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
#: how long a forked service waits to be re-parented to the supervisor before giving up
REPARENT_TIMEOUT_S = 2.0


def preload() -> None:
    """Import the common base of every service (not the libraries that start threads)."""
    import aiohttp  # noqa: F401
    import asyncpg  # noqa: F401
    import msgspec  # noqa: F401
    import nats  # noqa: F401
    import numpy  # noqa: F401
    import prometheus_client  # noqa: F401
    import pydantic  # noqa: F401
    import structlog  # noqa: F401
    import uvloop  # noqa: F401

    import stevie.bus
    import stevie.contracts
    import stevie.runtime.registry
    import stevie.runtime.service
    import stevie.store  # noqa: F401


#: imported before the first fork that asks for them (``"extended": true``): the maths the
#: vol, evidence and adaptive services share (≈ 60 MB, once instead of three times); none
#: starts a thread. Asked for only by the services started after the critical path's, so
#: the critical ones are forked without waiting for these imports.
EXTENDED = ("scipy.optimize", "scipy.signal", "scipy.special", "scipy.stats", "cvxpy")


def preload_extended() -> None:
    """Import ``EXTENDED`` (once: a no-op after the first call) and freeze the new objects."""
    if all(name in sys.modules for name in EXTENDED):
        return
    for name in EXTENDED:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def threads_alive() -> int:
    """Threads of this process (Linux ``/proc/self/task``)."""
    return len(os.listdir("/proc/self/task"))


def _prctl(option: int, arg: int | bytes) -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, arg, 0, 0, 0)


def _become_service(name: str, log_path: str, parent: int, env: dict[str, str]) -> None:  # pragma: no cover
    """In the forked service: wait for the re-parenting, then run ``name`` (never returns)."""
    deadline = time.monotonic() + REPARENT_TIMEOUT_S
    while os.getppid() != parent:
        if time.monotonic() > deadline:
            os._exit(1)  # the supervisor is gone (or is no subreaper): do not live on as an orphan
        time.sleep(0.0005)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)
    os.setsid()
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)
    _prctl(PR_SET_NAME, name.encode()[:15])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    gc.enable()
    code = 0
    try:
        from stevie.runtime.registry import load_spec
        from stevie.runtime.service import run
        from stevie.runtime.settings import SettingsError

        try:
            run(load_spec(name))
        except SettingsError as exc:
            sys.stderr.write(f"invalid settings: {exc}\n")
            code = 2
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def fork_service(name: str, log_path: str, parent: int, env: dict[str, str]) -> int:
    """Fork ``name`` as a grandchild (module doc) and return its PID. Raises RuntimeError when
    a thread is alive here or the intermediate fails, OSError when fork fails."""
    if threads_alive() != 1:
        raise RuntimeError(f"{threads_alive()} threads alive in the fork server: refusing to fork")
    r, w = os.pipe()
    mid = os.fork()
    if mid == 0:  # pragma: no cover - the intermediate
        try:
            os.close(r)
            pid = os.fork()
            if pid == 0:
                os.close(w)
                _become_service(name, log_path, parent, env)
            os.write(w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        raw = b""
        while chunk := os.read(r, 64):
            raw += chunk
    finally:
        os.close(r)
    os.waitpid(mid, 0)  # the service is re-parented to the supervisor once this returns
    if not raw:
        raise RuntimeError("the intermediate process failed to fork the service")
    return int(raw)


def serve(stdin: int = 0, stdout: int = 1) -> None:  # pragma: no cover - the fork server's loop
    """Answer fork requests (module doc) until stdin closes."""
    inp = os.fdopen(stdin, "rb", buffering=0)
    out = os.fdopen(stdout, "wb", buffering=0)
    for line in iter(inp.readline, b""):
        try:
            req = json.loads(line)
            env = {str(k): str(v) for k, v in dict(req["env"]).items()}
            if req.get("extended"):
                preload_extended()
            reply: dict[str, object] = {"pid": fork_service(str(req["name"]), str(req["log"]), int(req["parent"]), env)}
        except (ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError) as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply).encode() + b"\n")


def main() -> None:  # pragma: no cover - a process of its own
    """``python -m stevie.runtime.zygote``: preload, freeze, then serve (module doc)."""
    t0 = time.perf_counter()
    preload()
    gc.collect()
    gc.freeze()  # every object so far is permanent: the collector never touches (dirties) them
    gc.disable()  # no collection in the fork server itself: nothing to collect, no page written
    ready = {"event": "zygote_ready", "import_s": round(time.perf_counter() - t0, 3), "modules": len(sys.modules)}
    sys.stderr.write(json.dumps(ready) + "\n")
    serve()
    os._exit(0)  # stdin closed: the supervisor is done with us (no finalisation needed)


if __name__ == "__main__":
    main()
