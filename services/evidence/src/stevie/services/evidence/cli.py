"""``stevie pbt``: population-based tuning of a bar policy's hyper-parameters over the
recorded 1-minute history (walk-forward), with its lineage, trials and best member written
to PostgreSQL (see ``tuning`` for the scoring and ``stevie.quant.pbt`` for the algorithm)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from stevie.quant.pbt import Version

console = Console(stderr=True)
DATA = Path("data/samples/binance/usdm/klines_1m")


def _database_url(database_url: str, state_dir: Path) -> str:
    if database_url:
        return database_url
    if os.environ.get("STEVIE_DATABASE_URL"):
        return os.environ["STEVIE_DATABASE_URL"]
    stack = state_dir / "stack.json"
    if stack.is_file():
        return str(json.loads(stack.read_text())["database_url"])
    raise typer.BadParameter(
        f"no database: pass --database-url, set STEVIE_DATABASE_URL, or run `stevie up` (reads {stack})"
    )


def pbt(
    generations: Annotated[int, typer.Option(help="Generations (each scored on the next block of windows).")] = 3,
    population: Annotated[int, typer.Option(help="Members.")] = 8,
    policy: Annotated[str, typer.Option(help="Tunable bar policy (p_sma, p_breakout, p_mean_reversion).")] = "p_sma",
    symbols: Annotated[str, typer.Option(help="Comma-separated symbols.")] = "BTCUSDT,ETHUSDT",
    data: Annotated[Path, typer.Option(help="Folder of <SYMBOL>.csv.gz 1-minute klines.")] = DATA,
    interval: Annotated[int, typer.Option(help="Minutes between decisions (= reward horizon).")] = 5,
    window_days: Annotated[float, typer.Option(help="Days per walk-forward window.")] = 3.0,
    windows_per_generation: Annotated[int, typer.Option(help="Windows scored per generation (K).")] = 1,
    fee_bps: Annotated[float, typer.Option(help="Taker fee per change of position (bps).")] = 5.0,
    seed: Annotated[int, typer.Option(help="PBT random seed.")] = 0,
    database_url: Annotated[str, typer.Option(help="PostgreSQL URL (default: env, or the stack's).")] = "",
    state_dir: Annotated[Path, typer.Option(help="A running stack's state folder.")] = Path(".stevie"),
) -> None:
    """Population-based tuning (Jaderberg et al. 2017) of POLICY over walk-forward windows;
    writes the lineage (GET /api/pbt/lineage), one DSR trial per member version, and the best
    member of the last generation as a registered model (kind 'pbt')."""
    from rich.progress import Progress

    from stevie.backtest.data import BacktestInputError, discover, load_klines
    from stevie.quant import pbt as algo
    from stevie.quant.errors import QuantInputError
    from stevie.services.evidence import tuning

    url = _database_url(database_url, state_dir)
    try:
        space = tuning.space_of(policy)
        cfg = algo.PBTConfig(population, generations, windows_per_generation, seed=seed, space=space)
        walk = tuning.default_walk(space, interval, int(window_days * 1440), fee_bps)
        syms = [s.strip().upper() for s in symbols.split(",") if s.strip()]
        kl = load_klines(discover(data), syms, None, None)
    except (KeyError, QuantInputError, BacktestInputError) as exc:
        console.print(f"[red]{str(exc).strip(chr(39))}[/red]")
        raise typer.Exit(2) from exc
    series = [tuning.Series(s, k.open_time_ms, k.close) for s, k in kl.items()]
    have = min(walk.windows(s.close.size) for s in series)
    need = generations * windows_per_generation
    if have < need:
        console.print(f"[red]{need} windows of {window_days} days needed, the history holds {have}[/red]")
        raise typer.Exit(2)
    run_id = f"pbt-{policy}-s{seed}-{uuid.uuid4().hex[:8]}"
    versions: list[algo.Version] = []
    with Progress(console=console) as bar:
        task = bar.add_task(f"{run_id}", total=population * generations)

        def on_version(v: algo.Version) -> None:
            versions.append(v)
            bar.update(task, advance=1, description=f"gen {v.generation} {v.id} score {v.score:+.4f}")

        algo.run_pbt(cfg, lambda p, w0, w1: tuning.score(policy, p, series, walk, w0, w1), on_version)
    best = algo.best(versions)
    first = series[0].open_time_ms[walk.start] if series[0].open_time_ms.size > walk.start else 0
    described = f"{policy} on {','.join(s.symbol for s in series)} 1m klines from {first} ms, {interval}-min decisions"
    n_decisions = len(series) * windows_per_generation * walk.window_bars // walk.interval
    asyncio.run(_store(url, run_id, policy, versions, best, described, seed, n_decisions))
    table = Table("generation", "best", "score (Sharpe/decision)", "params", "mean score")
    for g in range(generations):
        gen = [v for v in versions if v.generation == g]
        top = max(gen, key=lambda v: v.score)
        mean = sum(v.score for v in gen if math.isfinite(v.score)) / max(1, sum(math.isfinite(v.score) for v in gen))
        table.add_row(str(g), top.id, f"{top.score:+.4f}", json.dumps(top.params), f"{mean:+.4f}")
    Console().print(table)
    console.print(f"lineage {run_id}: {len(versions)} versions; best {best.id} registered as model {run_id}-best")
    # the best member was chosen on the windows above: its honest test is on the bars after them
    end = walk.start + need * walk.window_bars
    later = [s for s in series if s.open_time_ms.size > end]
    tuned = ",".join(f"{policy}.{k}={float(x):g}" for k, x in best.params.items())
    if later:
        start = datetime.fromtimestamp(max(int(s.open_time_ms[end]) for s in later) / 1000, UTC)
        console.print(
            "out of sample (the bars after the tuning windows): uv run stevie backtest "
            f"--symbols {','.join(s.symbol for s in series)} --start {start:%Y-%m-%dT%H:%M} --params {tuned}",
            soft_wrap=True,  # one line to copy
        )
    else:
        console.print(f"no bars after the tuning windows to test {tuned} on: use fewer generations or windows")


async def _store(
    url: str, run_id: str, policy: str, versions: list[Version], best: Version, data: str, seed: int, n: int
) -> None:
    """Lineage rows, one trial per scored version (``n`` decisions each), the best member."""
    from stevie.contracts.evidence import LineageRow
    from stevie.store import connect_pool, migrate
    from stevie.store import evidence as repo

    await migrate(url)
    pool = await connect_pool(url)
    try:
        for v in versions:
            score = v.score if math.isfinite(v.score) else None
            await repo.add_lineage(
                pool,
                LineageRow(
                    run_id,
                    v.id,
                    v.member,
                    v.parent,
                    v.generation,
                    v.params,
                    score,
                    v.windows[0],
                    v.windows[1],
                    v.exploited,
                    0,
                ),
            )
            if score is not None:
                await repo.add_trial(pool, f"{run_id}:{v.id}", "pbt", score, n, {**v.params})
        # the best member of the last generation: parameters only (no router posterior to load)
        await repo.register_model(
            pool,
            f"{run_id}-best",
            "pbt",
            f"stevie pbt {run_id}",
            None,
            seed=seed,
            data=data,
            params={f"{policy}.{k}": float(x) for k, x in best.params.items()},
            metrics={"sharpe": float(best.score), "generation": float(best.generation)},
            actor="stevie pbt",
        )
    finally:
        await pool.close()
