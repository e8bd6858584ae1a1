"""``stevie backtest``: the typer command (registered in ``stevie.runtime.cli``).

Bad input (unknown symbol, empty window, start ≥ end, corrupt kline row, …) prints one line
and exits with status 2; outputs are written to a temporary folder and moved into place only
when complete, and the database gets one transaction per run, so nothing is half-written.
Heavy imports happen inside the command (``stevie --help`` stays fast).
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

DEFAULT_DATA = Path("data/samples/binance/usdm/klines_1m")
DEFAULT_FUNDING = Path("data/samples/binance/usdm/funding_rate_8h.csv.gz")
console = Console(stderr=True)


def parse_time_ms(text: str, what: str) -> int:
    """``2025-05-10`` or an ISO date-time (UTC unless it names an offset) → ms since the epoch."""
    from stevie.backtest.data import BacktestInputError

    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BacktestInputError(f"--{what} {text!r}: want a date like 2025-05-10 or 2025-05-10T12:00") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def parse_interval_min(text: str) -> int:
    """``5m``, ``15m``, ``1h`` → minutes (≥ 1)."""
    from stevie.backtest.data import BacktestInputError

    m = re.fullmatch(r"\s*(\d+)\s*([mh])\s*", text)
    if not m or int(m.group(1)) < 1:
        raise BacktestInputError(f"--decision-interval {text!r}: want minutes or hours, e.g. 5m or 1h")
    return int(m.group(1)) * (60 if m.group(2) == "h" else 1)


def parse_params(text: str) -> dict[str, float]:
    """``"p_sma.fast=12,p_sma.slow=40"`` → ``{"p_sma.fast": 12.0, "p_sma.slow": 40.0}`` ('' → {}).
    Raises BacktestInputError for an item that is not NAME=NUMBER or a name given twice (the
    names and values are checked by ``stevie.quant.policies.tuned_params``)."""
    from stevie.backtest.data import BacktestInputError

    out: dict[str, float] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, eq, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not eq or not name.strip() or not math.isfinite(number):
            raise BacktestInputError(f"--params: {item[:80]!r} is not POLICY.PARAM=NUMBER")
        if name.strip() in out:
            raise BacktestInputError(f"--params: {name.strip()[:80]} is given twice")
        out[name.strip()] = number
    return out


def backtest(
    symbols: Annotated[
        list[str] | None, typer.Option(help="Symbols (comma-separated or repeated); default every file in --data.")
    ] = None,
    start: Annotated[str | None, typer.Option(help="First bar (UTC date or date-time), inclusive.")] = None,
    end: Annotated[str | None, typer.Option(help="End (UTC date or date-time), exclusive.")] = None,
    decision_interval: Annotated[str, typer.Option(help="Decision interval per symbol (e.g. 5m, 1h).")] = "5m",
    data: Annotated[
        Path | None, typer.Option(help="Folder of <SYMBOL>.csv(.gz) 1-minute klines; default: the recorded 18.")
    ] = None,
    funding: Annotated[
        Path | None, typer.Option(help="Funding file (symbol,funding_time_ms,funding_rate); default with default data.")
    ] = None,
    l2: Annotated[
        bool, typer.Option("--l2", help="Run the six L2 captures instead of bars (--data: the data/samples folder).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Router RNG seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Output folder; default .stevie/backtests/<run-id>/.")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="PostgreSQL URL for backtest_runs/_decisions (default $STEVIE_DATABASE_URL).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes for the vol refits.")] = 2,
    refit_every: Annotated[int, typer.Option(help="Bars per walk-forward refit of HAR/GARCH.")] = 10_080,
    data_quality: Annotated[
        str,
        typer.Option(help="Kline guards: strict quarantines and replaces bad candles, relaxed only counts them."),
    ] = "strict",
    params: Annotated[
        str,
        typer.Option(
            help="Tuned bar-policy hyper-parameters, POLICY.PARAM=VALUE comma-separated (as `stevie pbt` "
            "prints its best member), e.g. p_sma.fast=12,p_sma.slow=40; the rest keep their defaults."
        ),
    ] = "",
) -> None:
    """Run the live decision cores over recorded data, deterministically; write report.html,
    decisions.parquet and summary.json (and the run to PostgreSQL when configured)."""
    from stevie.backtest.data import BacktestInputError
    from stevie.quant.errors import QuantInputError

    db = database_url if database_url is not None else os.environ.get("STEVIE_DATABASE_URL", "")
    try:
        if params and l2:
            raise BacktestInputError("--params tunes the bar policies; the L2 backtest has none")
        if l2:
            from stevie.backtest.l2 import L2Command, run_l2_command

            syms = [s.strip().upper() for item in (symbols or []) for s in item.split(",") if s.strip()]
            result = run_l2_command(L2Command(data or Path("data/samples"), syms, [], seed, out, db), console)
        else:
            from stevie.backtest.run import BarCommand, run_bar_command

            syms = [s.strip().upper() for item in (symbols or []) for s in item.split(",") if s.strip()]
            cmd = BarCommand(
                data_dir=data or DEFAULT_DATA,
                funding=funding if funding is not None else (DEFAULT_FUNDING if data is None else None),
                symbols=syms,
                start_ms=parse_time_ms(start, "start") if start else None,
                end_ms=parse_time_ms(end, "end") if end else None,
                interval_min=parse_interval_min(decision_interval),
                seed=seed,
                out=out,
                database_url=db,
                workers=workers,
                refit_every=refit_every,
                data_quality=data_quality,
                policy_params=parse_params(params),
            )
            result = run_bar_command(cmd, console)
    except (BacktestInputError, QuantInputError) as exc:
        console.print(
            f"[red]error:[/red] {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", soft_wrap=True
        )
        raise typer.Exit(2) from None
    except RuntimeError as exc:  # the database refused the run (BacktestStoreError): nothing written
        console.print(f"[red]error:[/red] {str(exc).splitlines()[0]}", soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(result)
