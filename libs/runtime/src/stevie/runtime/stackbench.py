"""``stevie bench`` stack rows: a real ``stevie up`` (fresh state directory, embedded NATS and
PostgreSQL, every service) measured from the outside.

- start → first LIVE book (``/api/l2``) and → first decision stored (``/api/audit/latest``);
- tick → decision latency (``exec_tick_to_decision_seconds``: the triggering book at the
  venue edge → its audit published; and ``exec_tick_to_stored_seconds``, → JetStream's ack of
  it), p50/p99 while the API is idle and while a
  load generator sends ``load_rps`` requests/s to the gateway (the achieved rate is reported);
  the decision clock runs every ``BENCH_DECISION_INTERVAL_S`` event seconds (the default is
  10 s) so a phase holds enough samples for a p99, and the decisions up to ``WARMUP_S`` after
  the first stored one (first vol/smile fetches) are a row of their own;
- ``/api/health`` latency at 32 concurrent connections: in the gateway
  (``gateway_request_duration_seconds``, handler and middlewares) and as the load generator
  sees it (which includes its own queueing: the generator shares the cores);
- one hop: the round trip of a trivial request/reply (``risk-guards.state``) from a client of
  our own while the API is idle — the floor under each step of a decision on this machine;
- RSS and PSS of every process of the stack at the end — the supervisor and all its
  descendants: services, the fork server, NATS, PostgreSQL and its backends (PSS shares the
  pages of common libraries, and of the fork server's imports, between processes, so the
  PSS total is the stack's real footprint; the RSS total counts shared pages once per
  process);
- SIGINT → every process gone (the supervisor reaped).

Quantiles of the histogram are read from the bucket counts (linear inside a bucket), over the
samples of one phase only (the difference of two scrapes).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import nats
import nats.errors
import numpy as np

from stevie.runtime.infra import free_port

BOOKS = [("binance", "BTCUSDT"), ("binance", "ETHUSDT"), ("binance-usdm", "BTCUSDT"), ("binance-usdm", "ETHUSDT")]
_BUCKET = re.compile(r"^(?P<name>\w+)_bucket\{(?P<labels>[^}]*)\} (?P<v>\S+)$")
TICK = "exec_tick_to_decision_seconds"
STORED = "exec_tick_to_stored_seconds"
STAGE = "exec_decision_stage_seconds"
#: steps of a decision, each as execution waits for it (p50/p99 of the idle phase)
STAGES = ("edge", "rewards", "rpc:router.decide", "rpc:risk-guards.check", "store")
HTTP = "gateway_request_duration_seconds"
#: seconds after the first stored decision counted as warm-up (first vol/smile fetches, caches)
WARMUP_S = 5.0
#: event seconds between decisions per book in the bench (the default is 10 s): 5x the samples
BENCH_DECISION_INTERVAL_S = 2.0


@dataclass
class StackBench:
    first_live_s: float = float("nan")
    first_decision_s: float = float("nan")
    stop_s: float = float("nan")
    tick_warmup_ms: tuple[float, float, int] = (float("nan"), float("nan"), 0)  # first WARMUP_S of decisions
    tick_idle_ms: tuple[float, float, int] = (float("nan"), float("nan"), 0)  # p50, p99, samples
    tick_load_ms: tuple[float, float, int] = (float("nan"), float("nan"), 0)
    stored_idle_ms: tuple[float, float, int] = (float("nan"), float("nan"), 0)  # tick → JetStream's ack
    stages_idle_ms: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    rpc_floor_ms: tuple[float, float, int] = (float("nan"), float("nan"), 0)  # one hop, API idle
    load_rps: float = 0.0
    health_p99_ms: float = float("nan")
    health_server_p99_ms: float = float("nan")
    health_rps: float = 0.0
    rss_mb: dict[str, float] = field(default_factory=dict)
    pss_mb: dict[str, float] = field(default_factory=dict)
    ran_s: float = 0.0


def _get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """(status, body); (0, b"") while nothing listens or on a timeout."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def histogram(metrics_text: str, name: str = TICK, having: str = "") -> dict[float, float]:
    """Cumulative bucket counts (upper bound → count) of histogram ``name``, summed over its
    label sets (those whose labels contain ``having``, e.g. ``route="/api/health"``)."""
    out: dict[float, float] = {}
    for line in metrics_text.splitlines():
        m = _BUCKET.match(line)
        if m is None or m["name"] != name or having not in m["labels"]:
            continue
        le = re.search(r'le="([^"]+)"', m["labels"])
        if le is None:
            continue
        bound = float("inf") if le[1] == "+Inf" else float(le[1])
        out[bound] = out.get(bound, 0.0) + float(m["v"])
    return out


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> tuple[float, int]:
    """The ``q`` quantile (seconds) of the samples observed between two scrapes, interpolated
    linearly inside its bucket; (nan, 0) without samples."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return float("nan"), 0
    rank = q * total
    lo_b, lo_c = 0.0, 0.0
    for b, c in zip(bounds, counts, strict=True):
        if c >= rank:
            if b == float("inf"):
                return lo_b, int(total)
            width = c - lo_c
            return lo_b + (b - lo_b) * ((rank - lo_c) / width if width > 0 else 1.0), int(total)
        lo_b, lo_c = b, c
    return bounds[-1], int(total)


async def _rpc_round_trips(nats_url: str, subject: str, n: int = 200, gap_s: float = 0.005) -> list[float]:
    """Round-trip times (ms) of ``n`` requests to ``subject`` from a client of our own, one at a
    time ``gap_s`` apart: what one hop between two processes costs on this machine while the
    stack runs (the floor under each step of a decision)."""
    nc = await nats.connect(nats_url)
    out: list[float] = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            await nc.request(subject, b"{}", timeout=2.0)
            out.append((time.perf_counter() - t0) * 1e3)
            await asyncio.sleep(gap_s)
    finally:
        await nc.close()
    return out


async def _hammer(urls: list[str], concurrency: int, seconds: float, rps: float | None) -> tuple[list[float], float]:
    """Latencies (ms) of GETs round-robin over ``urls`` from ``concurrency`` workers for
    ``seconds`` (open loop at ``rps`` in total when given); returns (latencies, achieved rps)."""
    lat: list[float] = []
    deadline = time.monotonic() + seconds
    interval = concurrency / rps if rps else 0.0
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def worker(i: int) -> None:
            n = i
            next_at = time.monotonic() + (interval * i / concurrency)
            while time.monotonic() < deadline:
                if interval:
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at += interval
                t0 = time.perf_counter()
                try:
                    async with http.get(urls[n % len(urls)]) as r:
                        await r.read()
                except (aiohttp.ClientError, TimeoutError):
                    pass
                lat.append((time.perf_counter() - t0) * 1e3)
                n += 1

        t0 = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return lat, len(lat) / max(1e-9, time.monotonic() - t0)


def _children(pid: int) -> list[int]:
    try:
        return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _stack_pids(state: Path, gateway: str, supervisor_pid: int) -> dict[str, int]:
    """Every process below the supervisor, named: services by their heartbeat's PID, the
    servers and the fork server from ``stack.json``; any other descendant as
    ``<its named ancestor>:<pid>`` (PostgreSQL's backends, a service's own children)."""
    names: dict[int, str] = {}
    _, raw = _get(f"{gateway}/api/health")
    try:
        for name, sv in json.loads(raw)["services"].items():
            if sv.get("pid"):
                names[int(sv["pid"])] = name
    except (ValueError, KeyError):
        pass
    try:
        stack = json.loads((state / "stack.json").read_text())
        names.update({int(pid): name for name, pid in stack["servers"].items()})
        if stack.get("fork_server"):
            names[int(stack["fork_server"])] = "fork-server"
    except (OSError, ValueError, KeyError):
        pass
    out: dict[str, int] = {}

    def walk(pid: int, group: str) -> None:
        for k in _children(pid):
            name = names.get(k, f"{group}:{k}")
            out[name] = k
            walk(k, names.get(k, group))

    walk(supervisor_pid, "supervisor")
    return out


def _mem_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB of ``pid`` (0, 0 if it is gone)."""
    try:
        rss = pss = 0.0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
        return rss, pss
    except OSError:
        return 0.0, 0.0


def run(seconds: float = 60.0, speed: float = 4.0, load_rps: float = 2000.0, window: str = "2024-08-08") -> StackBench:
    """Boot a stack, measure (see the module doc), stop it. ``seconds``: how long it runs
    before the RSS is read (the idle phase takes what the load and health phases leave)."""
    res = StackBench()
    state = Path(tempfile.mkdtemp(prefix="stevie-bench-"))
    port = free_port()
    gw = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEVIE_")}
    env["STEVIE_LOG_LEVEL"] = "warning"
    env["STEVIE_EXECUTION_DECISION_INTERVAL_S"] = str(BENCH_DECISION_INTERVAL_S)
    cmd = [sys.executable, "-m", "stevie.runtime.cli", "up", "--state-dir", str(state), "--gateway-port", str(port)]
    cmd += ["--speed", str(speed), "--window", window]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=open(state / "up.log", "wb"), stderr=subprocess.STDOUT)
    try:
        while time.monotonic() - t0 < 120 and proc.poll() is None:
            if any(b'"LIVE"' in _get(f"{gw}/api/l2/{v}/{s}?depth=1", 1)[1] for v, s in BOOKS):
                res.first_live_s = time.monotonic() - t0
                break
            time.sleep(0.05)
        while time.monotonic() - t0 < 120 and proc.poll() is None:
            code, raw = _get(f"{gw}/api/audit/latest?limit=1", 2)
            if code == 200 and raw.strip() not in (b"[]", b""):
                res.first_decision_s = time.monotonic() - t0
                break
            time.sleep(0.1)
        time.sleep(WARMUP_S)
        text0 = _get(f"{gw}/metrics")[1].decode()
        h0 = histogram(text0)  # since start: the warm-up decisions
        p50, _ = quantile({}, h0, 0.5)
        p99, n = quantile({}, h0, 0.99)
        res.tick_warmup_ms = (p50 * 1e3, p99 * 1e3, n)
        phase = max(10.0, (seconds - (time.monotonic() - t0) - 15) / 2)
        time.sleep(phase)
        text1 = _get(f"{gw}/metrics")[1].decode()
        h1 = histogram(text1)
        p50, _ = quantile(h0, h1, 0.5)
        p99, n = quantile(h0, h1, 0.99)
        res.tick_idle_ms = (p50 * 1e3, p99 * 1e3, n)
        st0, st1 = histogram(text0, STORED), histogram(text1, STORED)
        (p50, _), (p99, n) = quantile(st0, st1, 0.5), quantile(st0, st1, 0.99)
        res.stored_idle_ms = (p50 * 1e3, p99 * 1e3, n)
        for st in STAGES:
            s0, s1 = histogram(text0, STAGE, f'stage="{st}"'), histogram(text1, STAGE, f'stage="{st}"')
            (sp50, _), (sp99, sn) = quantile(s0, s1, 0.5), quantile(s0, s1, 0.99)
            res.stages_idle_ms[st] = (sp50 * 1e3, sp99 * 1e3, sn)
        try:  # a trivial request/reply (risk-guards.state) from outside, API idle
            stack = json.loads((state / "stack.json").read_text())
            rtt = asyncio.run(_rpc_round_trips(stack["nats_url"], "stevie.rpc.risk-guards.state"))
            res.rpc_floor_ms = (float(np.percentile(rtt, 50)), float(np.percentile(rtt, 99)), len(rtt))
        except (OSError, ValueError, KeyError, TimeoutError, nats.errors.Error) as exc:
            print(f"rpc floor not measured: {exc!r}", file=sys.stderr)
        urls = [f"{gw}/api/health", f"{gw}/api/l2/binance/BTCUSDT", f"{gw}/api/microstructure/BTCUSDT"]
        _, res.load_rps = asyncio.run(_hammer(urls, 64, phase, load_rps))
        h2 = histogram(_get(f"{gw}/metrics")[1].decode())
        p50, _ = quantile(h1, h2, 0.5)
        p99, n = quantile(h1, h2, 0.99)
        res.tick_load_ms = (p50 * 1e3, p99 * 1e3, n)
        route = 'route="/api/health"'
        g0 = histogram(_get(f"{gw}/metrics")[1].decode(), HTTP, route)
        lat, res.health_rps = asyncio.run(_hammer([f"{gw}/api/health"], 32, 5.0, None))
        g1 = histogram(_get(f"{gw}/metrics")[1].decode(), HTTP, route)
        res.health_p99_ms = float(np.percentile(lat, 99)) if lat else float("nan")
        res.health_server_p99_ms = quantile(g0, g1, 0.99)[0] * 1e3
        remaining = seconds - (time.monotonic() - t0)
        if remaining > 0:
            time.sleep(remaining)
        for name, pid in sorted(_stack_pids(state, gw, proc.pid).items()):
            rss, pss = _mem_mb(pid)
            group = name.split(":")[0]  # a server's children (PostgreSQL backends) count with it
            res.rss_mb[group] = res.rss_mb.get(group, 0.0) + rss
            res.pss_mb[group] = res.pss_mb.get(group, 0.0) + pss
        sup_rss, sup_pss = _mem_mb(proc.pid)
        res.rss_mb["supervisor"], res.pss_mb["supervisor"] = sup_rss, sup_pss
        res.ran_s = time.monotonic() - t0
    finally:
        t_stop = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        res.stop_s = time.monotonic() - t_stop
        if proc.returncode == 0:
            shutil.rmtree(state, ignore_errors=True)  # kept (with its logs) when the stack failed
    return res


def summary(r: StackBench) -> dict[str, str]:
    """Row label → value, for the ``stevie bench`` table."""
    pg = sum(v for k, v in r.rss_mb.items() if k.startswith("postgres"))
    pg_pss = sum(v for k, v in r.pss_mb.items() if k.startswith("postgres"))
    top = sorted(((v, k) for k, v in r.pss_mb.items() if not k.startswith("postgres")), reverse=True)[:4]
    warm, idle, load = r.tick_warmup_ms, r.tick_idle_ms, r.tick_load_ms
    pss, rss = sum(r.pss_mb.values()), sum(r.rss_mb.values())
    return {
        "stack: start → first LIVE book": f"{r.first_live_s:.1f} s",
        "stack: start → first decision stored": f"{r.first_decision_s:.1f} s",
        "stack: SIGINT → every process gone": f"{r.stop_s:.2f} s",
        f"tick → decision, warm-up (to first + {WARMUP_S:.0f} s)": f"{warm[0]:.1f} / {warm[1]:.1f} ms ({warm[2]})",
        "tick → decision, API idle (p50 / p99, samples)": f"{idle[0]:.1f} / {idle[1]:.1f} ms ({idle[2]})",
        f"tick → decision under {r.load_rps:,.0f} req/s": f"{load[0]:.1f} / {load[1]:.1f} ms ({load[2]})",
        "tick → audit stored (JetStream ack), API idle": "{:.1f} / {:.1f} ms ({})".format(*r.stored_idle_ms),
        "one hop: a trivial request/reply from outside, API idle": "{:.2f} / {:.2f} ms ({})".format(*r.rpc_floor_ms),
        "  idle: steps p50 / p99 ms (samples)": ", ".join(
            f"{k} {v[0]:.1f} / {v[1]:.1f} ({v[2]})" for k, v in r.stages_idle_ms.items()
        ),
        "/api/health at 32 connections, p99 in the gateway (seen by the client)": (
            f"{r.health_server_p99_ms:.2f} ms ({r.health_p99_ms:.1f} ms, {r.health_rps:,.0f} req/s)"
        ),
        f"stack memory after {r.ran_s:.0f} s: PSS total (RSS total)": f"{pss:,.0f} MB ({rss:,.0f} MB)",
        "  largest PSS (MB)": ", ".join(f"{k} {v:.0f}" for v, k in top) + f", postgres {pg_pss:.0f} ({pg:.0f} RSS)",
    }


def main(argv: list[str]) -> int:
    """``python -m stevie.runtime.stackbench [SECONDS] [SPEED]``: the rows and per-process
    memory as JSON."""
    seconds = float(argv[0]) if argv else 60.0
    speed = float(argv[1]) if len(argv) > 1 else 4.0
    r = run(seconds, speed)
    mem = {k: f"{r.pss_mb[k]:.0f} PSS / {r.rss_mb[k]:.0f} RSS" for k in sorted(r.pss_mb, key=lambda k: -r.pss_mb[k])}
    print(json.dumps({"memory_mb": mem, "rows": summary(r)}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
