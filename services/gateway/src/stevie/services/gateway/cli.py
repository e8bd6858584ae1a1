"""Operator commands: ``stevie status`` (health table), ``stevie tail SUBJECT`` (decoded bus
messages, like ``nats sub``), ``stevie report [RUN]`` (the latest backtest report).

Where the stack is: ``--url`` / ``--nats-url``, else ``<state-dir>/stack.json`` (written by
``stevie up`` while it runs), else the defaults (gateway ``http://127.0.0.1:5000``)."""

from __future__ import annotations

import asyncio
import importlib
import json
import urllib.error
import urllib.request
import webbrowser
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from stevie.contracts.rpc import BudgetStatus, GuardsState, RouterSnapshot
from stevie.contracts.venues import VenueInfo
from stevie.services.gateway.api import HealthResponse, L2Response

T = TypeVar("T")
out = Console()
err = Console(stderr=True)

StateDir = Annotated[Path, typer.Option(help="The stack's state dir (its stack.json names the URLs).")]
_CONTRACT_MODULES = ("market", "service", "rpc", "venues", "ops", "evidence", "featstore", "events", "adaptive")


def _stack(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / "stack.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def gateway_url(url: str | None, state_dir: Path) -> str:
    return (url or str(_stack(state_dir).get("gateway") or "http://127.0.0.1:5000")).rstrip("/")


def _get(base: str, path: str, tp: type[T], timeout_s: float = 5.0) -> T | None:
    """GET ``path`` decoded as ``tp``; None when the route answers an error or is absent.
    Raises ConnectionError when the gateway is not reachable at all."""
    try:
        with urllib.request.urlopen(base + path, timeout=timeout_s) as r:
            raw = r.read()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"gateway not reachable at {base}: {exc}") from exc
    try:
        return msgspec.json.decode(raw, type=tp)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


@dataclass(frozen=True)
class StatusView:
    """Everything ``stevie status`` shows (None: that route did not answer)."""

    health: HealthResponse
    books: list[L2Response]
    router: RouterSnapshot | None
    guards: GuardsState | None
    budget: BudgetStatus | None
    venues: list[VenueInfo] | None


def collect(base: str, books: list[tuple[str, str]]) -> StatusView:
    """Ask the gateway. Raises ConnectionError (not reachable) or RuntimeError (no health)."""
    health = _get(base, "/api/health", HealthResponse)
    if health is None:
        raise RuntimeError(f"{base}/api/health did not answer a health document")
    l2 = [b for v, s in books if (b := _get(base, f"/api/l2/{v}/{s}?depth=1", L2Response)) is not None]
    return StatusView(
        health,
        l2,
        _get(base, "/api/router/snapshot", RouterSnapshot),
        _get(base, "/api/guards/state", GuardsState),
        _get(base, "/api/budget/status", BudgetStatus),
        _get(base, "/api/venues/registry", list[VenueInfo]),
    )


def _mark(ok: bool | None) -> str:
    return "[green]up[/green]" if ok else ("[red]down[/red]" if ok is False else "[dim]?[/dim]")


def tables(v: StatusView) -> list[Table]:
    """The rich tables of a status view (pure: no I/O)."""
    h = v.health
    top = Table(title=f"Stevie — {h.status}", show_header=False)
    top.add_row("database", f"{h.db.latencyMs} ms" if h.db.latencyMs is not None else f"[red]{h.db.error}[/red]")
    top.add_row("nats", _mark(h.nats.connected))
    top.add_row("venue streams connected", str(h.ws.clients))
    top.add_row("decisions / last min", str(h.router.decisionsLastMin))
    top.add_row("blocked / last min", str(h.exec.blockedLastMin))
    if h.lastOHLCVSync:
        top.add_row(
            "last OHLCV sync", datetime.fromtimestamp(h.lastOHLCVSync / 1e3, tz=UTC).isoformat(timespec="seconds")
        )
    svc = Table("service", "state", "last beat (ms ago)", "pid", "backend", title="Services")
    for name, s in sorted(h.services.items()):
        svc.add_row(
            name,
            _mark(s.up),
            f"{s.lastBeatAgoMs:.0f}" if s.lastBeatAgoMs is not None else "—",
            str(s.pid or "—"),
            s.backend,
        )
    books = Table("venue", "symbol", "state", "seq", "bid", "ask", title="Books")
    for b in v.books:
        colour = "green" if b.state == "LIVE" else "yellow"
        bid = f"{b.bids[0][0]:,.2f}" if b.bids else "—"
        ask = f"{b.asks[0][0]:,.2f}" if b.asks else "—"
        books.add_row(b.venue, b.symbol, f"[{colour}]{b.state}[/{colour}]", str(b.seq), bid, ask)
    out_ = [top, svc, books]
    if v.router is not None:
        r = Table("decisions", "last min", "last choice", "propensity", title="Router")
        c = v.router.lastChoice
        r.add_row(
            str(v.router.decisions),
            str(v.router.decisionsLastMin),
            c.policyId if c else "—",
            f"{c.propensity:.3f}" if c else "—",
        )
        out_.append(r)
    if v.guards is not None:
        g = Table("kill switch", "breaker", title="Risk")
        tripped = v.guards.breaker.get("tripped")
        g.add_row(
            "[red]ON[/red]" if v.guards.killSwitch else "off",
            "[red]tripped[/red]" if tripped else "ok",
        )
        out_.append(g)
    if v.budget is not None:
        bt = Table("provider", "weight used", "limit", "rate remaining", "deferred", "denied", title="Budget")
        for p in v.budget.providers:
            bt.add_row(
                p.provider, str(p.weightUsed), str(p.weightLimit), str(p.rateRemaining), str(p.deferred), str(p.denied)
            )
        out_.append(bt)
    if v.venues:
        t = Table("venue", "symbol", "state", "latency ms", "spread bps", "fee bps", "reliability", title="Venues")
        for x in v.venues:
            t.add_row(
                x.venue,
                x.symbol,
                x.state,
                f"{x.latencyMs:.2f}" if x.latencyMs is not None else "—",
                f"{x.spread_bps:.3f}" if x.spread_bps is not None else "—",
                f"{x.feeBps:g}",
                f"{x.reliabilityScore:.3f}",
            )
        out_.append(t)
    return out_


def status(
    url: Annotated[str | None, typer.Option(help="Gateway URL (default: from stack.json).")] = None,
    state_dir: StateDir = Path(".stevie"),
    venues: Annotated[str, typer.Option(help="Books to show: comma-separated venues.")] = "binance,binance-usdm",
    symbols: Annotated[str, typer.Option(help="Books to show: comma-separated symbols.")] = "BTCUSDT,ETHUSDT",
) -> None:
    """Health table: services, books, decisions, breaker and kill switch, budget, venues."""
    base = gateway_url(url, state_dir)
    books = [(v, s) for v in venues.split(",") if v for s in symbols.split(",") if s]
    try:
        view = collect(base, books)
    except (ConnectionError, RuntimeError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    for t in tables(view):
        out.print(t)
    if view.health.status != "ok":
        raise typer.Exit(3)


# -- tail -----------------------------------------------------------------------------------


def tagged_types() -> dict[str, type]:
    """Every tagged Struct of ``stevie.contracts`` by tag (its class name), for decoding any
    bus message by its ``type`` tag. Tags defined twice are left out (ambiguous)."""
    found: dict[str, list[type]] = {}
    for mod in _CONTRACT_MODULES:
        try:
            m = importlib.import_module(f"stevie.contracts.{mod}")
        except ImportError:
            continue
        for obj in vars(m).values():
            tag = getattr(getattr(obj, "__struct_config__", None), "tag", None)
            if isinstance(obj, type) and isinstance(tag, str) and obj.__module__ == m.__name__:
                found.setdefault(tag, []).append(obj)
    return {tag: tps[0] for tag, tps in found.items() if len(tps) == 1}


def describe_message(data: bytes, types: dict[str, type]) -> tuple[str, str]:
    """(type name, one-line JSON) of a bus payload: decoded and re-encoded with its msgspec
    type when its tag is known (so a malformed message shows as ``invalid``), else raw."""
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return "undecodable", data[:200].decode("utf-8", "replace")
    tag = obj.get("type") if isinstance(obj, dict) else None
    tp = types.get(tag) if isinstance(tag, str) else None
    if tp is None:
        return "raw", msgspec.json.encode(obj).decode()
    try:
        decoded: object = msgspec.json.decode(data, type=tp)
    except msgspec.ValidationError as exc:
        return f"invalid {tag}", str(exc)[:200]
    return tp.__name__, msgspec.json.encode(decoded).decode()


def tail(
    subject: Annotated[
        str, typer.Argument(help="NATS subject or pattern, e.g. stevie.md.book.binance.BTCUSDT or stevie.md.>")
    ],
    nats_url: Annotated[str | None, typer.Option(help="NATS URL (default: from stack.json).")] = None,
    state_dir: StateDir = Path(".stevie"),
    count: Annotated[int, typer.Option(help="Stop after this many messages (0: never).")] = 0,
    width: Annotated[int, typer.Option(help="Truncate each message to this many characters (0: no limit).")] = 400,
) -> None:
    """Print bus messages as they arrive, decoded with their msgspec contract types."""
    from stevie.bus import NatsBus

    url = nats_url or str(_stack(state_dir).get("nats_url") or "nats://127.0.0.1:4322")
    types = tagged_types()

    async def go() -> None:
        try:
            bus = await NatsBus.connect(url, name="stevie-tail")
        except Exception as exc:  # nats raises several unrelated types for "no server"
            raise ConnectionError(f"NATS not reachable at {url}: {exc}") from exc
        done = asyncio.Event()
        seen = 0

        async def on(msg: Any) -> None:
            nonlocal seen
            name, body = describe_message(msg.data, types)
            body = body if not width or len(body) <= width else body[:width] + "…"
            out.print(f"[cyan]{msg.subject}[/cyan] [magenta]{name}[/magenta] {body}", highlight=False, soft_wrap=True)
            seen += 1
            if count and seen >= count:
                done.set()

        await bus.subscribe(subject, on)
        err.print(f"[dim]listening on {subject} at {url} (Ctrl-C to stop)[/dim]")
        try:
            await done.wait()
        finally:
            await bus.close()

    try:
        asyncio.run(go())
    except ConnectionError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


# -- report ---------------------------------------------------------------------------------


def find_report(root: Path, run: str | None) -> Path:
    """The report of ``run`` (a run id, or a unique prefix of one) or of the newest run under
    ``root``. Raises FileNotFoundError with what exists."""
    runs = sorted(
        (d for d in root.glob("*") if d.is_dir() and (d / "report.html").is_file()),
        key=lambda d: (d / "report.html").stat().st_mtime,
    )
    if not runs:
        raise FileNotFoundError(f"no backtest reports under {root} (run `stevie backtest` first)")
    if run is None:
        return runs[-1] / "report.html"
    hits = [d for d in runs if d.name == run] or [d for d in runs if d.name.startswith(run)]
    if len(hits) != 1:
        names = ", ".join(d.name for d in runs[-10:])
        what = "no run" if not hits else "more than one run"
        raise FileNotFoundError(f"{what} matches {run!r} under {root}; latest: {names}")
    return hits[0] / "report.html"


def report(
    run: Annotated[str | None, typer.Argument(help="Run id (or a unique prefix); default: the newest.")] = None,
    root: Annotated[Path, typer.Option(help="Where backtests write their runs.")] = Path(".stevie/backtests"),
    open_: Annotated[bool, typer.Option("--open", help="Open the report in a browser.")] = False,
) -> None:
    """Print (or open) the path of a backtest report."""
    try:
        path = find_report(root, run)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    print(path.resolve())
    if open_:
        webbrowser.open(path.resolve().as_uri())
