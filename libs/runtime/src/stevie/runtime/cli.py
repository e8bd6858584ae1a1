"""The ``stevie`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from stevie.contracts import subjects as subj
from stevie.runtime.registry import SERVICES, load_spec
from stevie.runtime.settings import CommonSettings, SettingsError, describe, load_settings
from stevie.services.events.cli import app as events_app
from stevie.services.evidence.cli import pbt as pbt_command
from stevie.services.gateway import cli as ops_cli

app = typer.Typer(help="Stevie — a math-first crypto trading cortex (paper trading only).", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.command("pbt")(pbt_command)
app.command("status")(ops_cli.status)
app.command("tail")(ops_cli.tail)
app.command("report")(ops_cli.report)
console = Console(stderr=True)


@app.command()
def up(
    state_dir: Annotated[Path, typer.Option(help="Where NATS and PostgreSQL keep their data.")] = Path(".stevie"),
    speed: Annotated[float, typer.Option(help="Replay speed factor (event times unchanged).")] = 1.0,
    window: Annotated[str, typer.Option(help="Capture window to replay.")] = "2024-08-08",
    loop: Annotated[bool, typer.Option(help="Restart the replay as a new session at its end.")] = True,
    gateway_port: Annotated[int, typer.Option(help="Gateway port on 127.0.0.1.")] = 5000,
    only: Annotated[list[str] | None, typer.Option(help="Start only these services (repeatable).")] = None,
    fork_server: Annotated[
        bool, typer.Option(help="Fork the services from one warm interpreter (else: one fresh interpreter each).")
    ] = True,
) -> None:
    """Start the whole stack: NATS (JetStream), PostgreSQL, migrations, every service.

    STEVIE_NATS_URL / STEVIE_DATABASE_URL switch to external servers. Ctrl-C stops all."""
    from stevie.runtime import operator
    from stevie.runtime.supervisor import UpOptions, exec_supervisor

    token, _ = operator.ensure_token(state_dir.resolve(), os.environ)
    os.environ["STEVIE_OPERATOR_TOKEN"] = token  # the gateway checks it; services inherit the env
    console.print(operator.usage(state_dir.resolve(), gateway_port))
    opts = UpOptions(
        state_dir=state_dir.resolve(),
        speed=speed,
        window=window,
        loop=loop,
        gateway_port=gateway_port,
        services=tuple(only or SERVICES),
        fork_server=fork_server,
    )
    for name in opts.services:
        if name not in SERVICES:
            raise typer.BadParameter(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    sys.stdout.flush()
    sys.stderr.flush()
    exec_supervisor(opts)  # this process becomes the supervisor (same PID): never returns


@app.command()
def run(service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")]) -> None:
    """Run one service in the foreground (settings from STEVIE_* env vars)."""
    from stevie.runtime.service import run as run_service

    try:
        spec = load_spec(service)
    except KeyError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        run_service(spec)
    except SettingsError as exc:
        console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def token(
    state_dir: Annotated[Path, typer.Option(help="The stack's state dir.")] = Path(".stevie"),
) -> None:
    """Print the operator token of the stack in STATE_DIR (written by `stevie up`)."""
    from stevie.runtime import operator

    try:
        print(operator.read_token(state_dir.resolve()))
    except FileNotFoundError as exc:
        console.print(f"[red]no operator token in {state_dir}: start the stack with `stevie up` first[/red]")
        raise typer.Exit(1) from exc


@app.command("check-config")
def check_config(service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")]) -> None:
    """Validate a service's settings from the environment and print them (secrets masked)."""
    try:
        spec = load_spec(service)
        settings = load_settings(spec.settings_cls, service)
    except (KeyError, SettingsError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    print(json.dumps(describe(settings), indent=2, default=str))


@app.command()
def subjects(root: Annotated[str, typer.Option(help="Subject root.")] = CommonSettings().subject_root) -> None:
    """List every NATS subject pattern Stevie uses."""
    table = Table("what", "subject")
    for what, s in subj.all_subjects(root).items():
        table.add_row(what, s)
    Console().print(table)


@app.command()
def bench(
    data_dir: Annotated[Path, typer.Option(help="The data/samples folder.")] = Path("data/samples"),
    rounds: Annotated[int, typer.Option(help="Round-robin passes (best time kept).")] = 3,
    events: Annotated[int, typer.Option(help="Events for the feature-kernel rows.")] = 1_000_000,
    stack_seconds: Annotated[int, typer.Option(help="Run a whole stack this long for its rows (0 skips).")] = 60,
    backtest: Annotated[bool, typer.Option(help="Also time the 18-symbol bar backtest (~1 min).")] = True,
) -> None:
    """Benchmark ratios on the real BTCUSDT spot capture, measured in one run (needs the native kernels)."""
    from stevie.quant.kernels import native_available
    from stevie.runtime import bench as b

    folder = next((data_dir / "binance/spot/btcusdt").glob("l2_*"), None)
    if folder is None:
        raise typer.BadParameter(f"no BTCUSDT capture under {data_dir}")
    if not native_available():
        console.print("[red]the native kernels (stevie_fastpath) are not installed: run `uv sync`[/red]")
        raise typer.Exit(2)
    with console.status("measuring (round-robin, best of each)..."):
        r = b.run(folder, events=events, rounds=rounds)
    table = Table("measure", "value", "target")
    table.add_row(
        "native book (bytes in, 1 thread) vs sortedcontainers book, apply + top-20", f"{r.book_ratio:.1f}x", ">= 30x"
    )
    table.add_row("  sortedcontainers book", f"{r.python_diffs_per_s:,.0f} diffs/s", "")
    table.add_row("native bytes-in replay (decode + apply + top-20), 1 thread", f"{r.native_msgs_per_s:,.0f} msg/s", "")
    table.add_row(
        "native bytes-in replay, decode on a 2nd thread",
        f"{r.native_2thread_msgs_per_s:,.0f} msg/s",
        ">= 1,000,000 msg/s",
    )
    table.add_row(f"feature kernel vs numpy twin ({r.events:,} events)", f"{r.features_vs_numpy:.1f}x", ">= 5x")
    table.add_row("feature kernel vs per-update Python loop", f"{r.features_vs_python_loop:.1f}x", ">= 40x")
    table.add_row("  native feature kernel", f"{r.native_events_per_s:,.0f} events/s", "")
    with console.status("embedding headlines..."):
        eps = b.embedding_headlines_per_s(rounds=rounds)
    table.add_row("event embeddings (MiniLM int8 ONNX, 1 thread, 240 headlines)", f"{eps:,.0f} headlines/s", "")
    from stevie.services.features import bench as fb

    with console.status("feature store: writes into an embedded PostgreSQL, offline recomputation..."):
        store_rate, recompute = fb.store_write_rate(), fb.recompute_rate(folder)
    table.add_row("feature store writes (500-vector batches, embedded PostgreSQL)", f"{store_rate:,.0f} values/s", "")
    table.add_row("offline feature recomputation from the capture (parity path)", f"{recompute:,.0f} vectors/s", "")
    if stack_seconds > 0:
        from stevie.runtime import stackbench

        with console.status(f"a whole stevie up for {stack_seconds} s (start, latency, load, memory, stop)..."):
            sr = stackbench.summary(stackbench.run(float(stack_seconds)))
        targets = ["<= 8 s", "<= 15 s", "<= 2 s", "p99 <= 3 ms", "p99 <= 10 ms at 2,000 req/s", "p99 <= 5 ms"]
        targets += ["<= 1,000 MB after 600 s", ""]
        for (label, value), target in zip(sr.items(), targets, strict=True):
            table.add_row(label, value, target)
    if backtest:
        with console.status("bar backtest, all symbols, full history..."):
            bt = b.bar_backtest(data_dir / "binance/usdm/klines_1m", data_dir / "binance/usdm/funding_rate_8h.csv.gz")
        table.add_row(
            f"bar backtest end to end ({bt.bars:,} bars, {bt.decisions:,} decisions)",
            f"{bt.bars_per_s:,.0f} bars/s ({bt.decisions_per_s:,.0f} decisions/s)",
            ">= 20,000 bars/s",
        )
        from stevie.backtest import l2

        with console.status("L2 backtest, the six captures..."):
            n_depth, run_s, total_s = l2.bench(data_dir, rounds)
        table.add_row(
            f"L2 backtest, book → features → router → execution ({n_depth:,} depth msgs; with decoding)",
            f"{n_depth / run_s:,.0f} msg/s ({n_depth / total_s:,.0f} msg/s)",
            ">= 200,000 msg/s",
        )
    Console().print(table)


from stevie.backtest.cli import backtest  # noqa: E402  (imports nothing heavy)

app.command("backtest")(backtest)

if __name__ == "__main__":
    app()
