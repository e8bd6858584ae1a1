"""``stevie events ...``: load an event file into a running stack, run the event study."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Events: ingestion and placebo-controlled event studies.", no_args_is_help=True)
console = Console(stderr=True)


@app.command()
def load(
    file: Annotated[
        Path, typer.Argument(help="A .csv or .jsonl event file (ts, title, source, body?, symbols?, kind?).")
    ],
    url: Annotated[str, typer.Option(help="Gateway of a running stack.")] = "http://127.0.0.1:5000",
    token: Annotated[
        str | None,
        typer.Option(help="Operator token (default: $STEVIE_OPERATOR_TOKEN, else STATE_DIR/operator-token)."),
    ] = None,
    state_dir: Annotated[Path, typer.Option(help="The stack's state folder (for its operator token).")] = Path(
        ".stevie"
    ),
    chunk: Annotated[int, typer.Option(help="Events per request (the service accepts at most 500).")] = 200,
    dry_run: Annotated[bool, typer.Option(help="Only parse and validate the file; send nothing.")] = False,
) -> None:
    """Post the file's events to ``POST /api/events/ingest`` in chunks (the service embeds,
    stores and publishes them)."""
    from stevie.services.events.core import prepare
    from stevie.services.events.files import EventFileError, read_events

    try:
        events = read_events(file)
        prepare(events, now_ns=2**62, max_batch=max(len(events), 1))  # shape checks only
    except (EventFileError, ValueError, OSError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if dry_run:
        console.print(f"{len(events)} events in {file}: valid")
        return
    tok = token or os.environ.get("STEVIE_OPERATOR_TOKEN")
    if tok is None and (state_dir / "operator-token").exists():
        tok = (state_dir / "operator-token").read_text().strip()
    import msgspec

    total = dup = 0
    for i in range(0, len(events), chunk):
        body = msgspec.json.encode({"events": events[i : i + chunk]})
        req = urllib.request.Request(f"{url}/api/events/ingest", data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                reply = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            console.print(f"[red]{exc.code}: {exc.read().decode('utf-8', 'replace')}[/red]")
            raise typer.Exit(1) from exc
        except OSError as exc:
            console.print(f"[red]{url}: {exc}[/red]")
            raise typer.Exit(1) from exc
        total += reply["ingested"]
        dup += reply["duplicates"]
    console.print(f"{total} events ingested, {dup} already stored")


@app.command()
def study(
    events: Annotated[Path, typer.Option(help="Event file (.csv/.jsonl).")] = Path(
        "data/samples/events/us_macro_2025-05_06.csv"
    ),
    klines: Annotated[Path, typer.Option(help="1-minute kline file (open_time_ms,open,high,low,close,volume).")] = Path(
        "data/samples/binance/usdm/klines_1m/BTCUSDT.csv.gz"
    ),
    pre: Annotated[int, typer.Option(help="Pre-event window, minutes.")] = 60,
    post: Annotated[int, typer.Option(help="Post-event window, minutes.")] = 60,
    est: Annotated[int, typer.Option(help="Estimation window, minutes (ends where the pre window starts).")] = 1440,
    placebos: Annotated[int, typer.Option(help="Placebo draws per event (>= 1000).")] = 2000,
    match: Annotated[str, typer.Option(help="Placebo calendar match: weekday | business_day.")] = "weekday",
    seed: Annotated[int, typer.Option(help="Placebo RNG seed.")] = 0,
    report: Annotated[Path, typer.Option(help="HTML report to write.")] = Path(".artefacts/event_study.html"),
) -> None:
    """CAR, abnormal realised vol and placebo p-values per event and per kind; writes the HTML report."""
    from stevie.quant.errors import QuantInputError
    from stevie.quant.events import Windows
    from stevie.services.events import study as st
    from stevie.services.events.files import EventFileError, read_events, read_klines

    if match not in ("weekday", "business_day"):
        raise typer.BadParameter("match must be weekday or business_day")
    try:
        evs = read_events(events)
        mr = read_klines(klines)
        res, skipped = st.run(evs, mr, Windows(pre, post, est), placebos, match, seed)  # type: ignore[arg-type]
    except (EventFileError, QuantInputError, OSError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    symbol = klines.name.split(".")[0]
    out = Console(width=None if sys.stdout.isatty() else 160)
    t = Table(*st.EVENT_HEADER, title=f"{symbol}: events (placebos: {placebos} draws, match={match})")
    for row in st.event_rows(res):
        t.add_row(*row)
    out.print(t)
    g = Table(*st.GROUP_HEADER, title="per kind (mean over the kind's events; one matched placebo per event)")
    for row in st.group_rows(res):
        g.add_row(*row)
    out.print(g)
    for s in skipped:
        out.print(f"skipped: {s}")
    out.print(st.verdict(res))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(st.render_html(res, symbol, skipped, {"events": str(events), "klines": str(klines)}), "utf-8")
    out.print(f"report: {report}")
