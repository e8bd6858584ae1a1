"""One backtest command end to end: inputs → engine → outputs (folder, then database).

The output folder is assembled under ``<out>.partial-<pid>`` and renamed into place when all
three files exist; the database write is one transaction (``stevie.backtest.store``).
"""

from __future__ import annotations

import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from stevie.backtest import output, report
from stevie.backtest.bars import DEFAULT_LOOKBACK_BARS, VENUE, BarSettings, run_bars
from stevie.backtest.data import BacktestInputError, discover, load_funding, load_klines
from stevie.backtest.quality import screen
from stevie.quant.policies import lookback_of, tuned_params


class RateColumn(ProgressColumn):
    """Items per second (``bars/s`` or ``msgs/s``)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else f"- {self.unit}/s", style="cyan")


def progress_bar(console: Console, unit: str) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} " + unit),
        RateColumn(unit),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@dataclass(frozen=True)
class BarCommand:
    data_dir: Path
    funding: Path | None
    symbols: list[str]
    start_ms: int | None
    end_ms: int | None
    interval_min: int
    seed: int
    out: Path | None
    database_url: str
    workers: int
    refit_every: int
    data_quality: str = "strict"
    policy_params: dict[str, float] = field(default_factory=dict)  # POLICY.PARAM → value (``--params``)


def finish(
    out_dir: Path, rid: str, summary: dict[str, object], cols: dict[str, list[object]], figs: dict[str, str]
) -> Path:
    """Write the three files into a partial folder, then move it to ``out_dir``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.partial-{rid}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    output.write_parquet(output.table(cols), tmp / "decisions.parquet")
    output.write_json(summary, tmp / "summary.json")
    report.write_report(tmp / "report.html", summary, figs)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def run_bar_command(cmd: BarCommand, console: Console) -> str:
    """Validate, run, write. Raises BacktestInputError on bad input (before anything is written)."""
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    kids0 = k0.ru_utime + k0.ru_stime
    if cmd.start_ms is not None and cmd.end_ms is not None and cmd.start_ms >= cmd.end_ms:
        raise BacktestInputError("--start must be before --end")
    files = discover(cmd.data_dir)
    symbols = cmd.symbols or sorted(files)
    klines = load_klines(files, symbols, cmd.start_ms, cmd.end_ms)
    for sym, k in klines.items():
        if k.n == 0:
            raise BacktestInputError(f"{sym}: no bars in the window (empty window)")
    fund = load_funding(cmd.funding)
    try:
        tuned = tuned_params(cmd.policy_params)
    except (KeyError, ValueError) as exc:
        raise BacktestInputError(f"--params: {str(exc).strip(chr(39))}") from exc
    settings = BarSettings(
        symbols=symbols,
        start_ms=cmd.start_ms,
        end_ms=cmd.end_ms,
        seed=cmd.seed,
        decision_interval_min=cmd.interval_min,
        refit_every_bars=cmd.refit_every,
        data_quality=cmd.data_quality,
        lookback_bars=max([DEFAULT_LOOKBACK_BARS, *(lookback_of(p) for p in tuned.values())]),
        policy_params=dict(cmd.policy_params),
    )
    raw_klines = klines
    klines, dq = screen(raw_klines, settings.data_quality, VENUE, settings.spike_window, settings.spike_z_cap)
    data_desc: dict[str, object] = {
        "klines": {
            s: {
                "file": k.path.name,
                "sha256": k.sha256,
                "bars": k.n,
                "first_open_ms": int(k.open_time_ms[0]),
                "last_open_ms": int(k.open_time_ms[-1]),
            }
            for s, k in raw_klines.items()
        },
        "funding": {"file": cmd.funding.name if cmd.funding else None, "sha256": fund.sha256},
    }
    rid = output.run_id("bars", data_desc, settings)
    t_load = time.perf_counter() - t0
    total = sum(k.n for k in klines.values())
    with progress_bar(console, "bars") as bar:
        task = bar.add_task(f"backtest {rid}", total=total)
        res = run_bars(klines, fund, settings, cmd.workers, lambda n: bar.update(task, completed=n))
    t_run = time.perf_counter() - t0 - t_load
    m = output.metrics(
        res.decisions,
        res.equity_ts_ns,
        res.equity_quote,
        settings.capital_quote,
        settings.decision_interval_min,
        settings.policies,
        {
            "bars": res.bars,
            "warmup_bars_per_symbol": res.warmup_bars,
            "vol_fits": res.fits,
            "funding_settlements": res.funding_events,
        },
    )
    summary: dict[str, object] = {
        "runId": rid,
        "mode": "bars",
        "gitRevision": output.git_revision(),
        "seed": cmd.seed,
        "settings": _plain(settings),
        "data": data_desc,
        "metrics": m,
        "quality": dq.summary(),
    }
    figs = report.figures(res.decisions, res.equity_ts_ns, res.equity_quote, settings.policies)
    elapsed = time.perf_counter() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary["timing"] = {
        "load_s": round(t_load, 3),
        "run_s": round(t_run, 3),
        "total_s": round(elapsed, 3),
        "cpu_main_s": round(time.process_time() - cpu0, 3),
        "cpu_workers_s": round(kids.ru_utime + kids.ru_stime - kids0, 3),
        "bars_per_s": round(total / elapsed, 1),
        "decisions_per_s": round(len(res.decisions["symbol"]) / elapsed, 1),
    }
    out_dir = cmd.out or Path(".stevie/backtests") / rid
    if cmd.database_url:
        from stevie.backtest.store import save_run

        save_run(cmd.database_url, rid, summary, res.decisions, dq.rows)
    finish(out_dir, rid, summary, res.decisions, figs)
    tm = summary["timing"]
    assert isinstance(tm, dict)
    return (
        f"run {rid}: {total:,} bars, {m['decisions']:,} decisions in {elapsed:.1f} s "
        f"({tm['bars_per_s']:,.0f} bars/s, {tm['decisions_per_s']:,.0f} decisions/s); "
        f"return {m['total_return']}, max drawdown {m['max_drawdown_fraction']} → {out_dir}"
    )


def _plain(s: object) -> object:
    import msgspec

    return msgspec.to_builtins(s)
