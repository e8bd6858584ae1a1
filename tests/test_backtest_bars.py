"""stevie backtest (bars): determinism, bad input, the report in headless Chromium, bar policies.

Small on purpose (CI): two symbols over three days of the recorded klines; the full
18-symbol history runs in ``stevie bench``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stevie.quant import policies as P
from stevie.runtime.cli import app
from tests.helpers.capture import SAMPLES

KLINES = SAMPLES / "binance/usdm/klines_1m"
FUNDING = SAMPLES / "binance/usdm/funding_rate_8h.csv.gz"
ARGS = ["backtest", "--symbols", "BTCUSDT,ETHUSDT", "--start", "2025-05-06", "--end", "2025-05-09"]
ARGS += ["--data", str(KLINES), "--funding", str(FUNDING), "--seed", "3"]


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bt") / "a"
    code, text = run(*ARGS, "--out", str(out), "--workers", "1")
    assert code == 0, text
    return out


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_outputs_and_columns(first_run):
    import pyarrow.parquet as pq

    assert {p.name for p in first_run.iterdir()} == {"decisions.parquet", "summary.json", "report.html"}
    t = pq.read_table(first_run / "decisions.parquet")
    need = {"ts_event_ns", "symbol", "policy_id", "propensity", "signal", "target_size", "fill_price", "cost_bps"}
    need |= {"reward", "ctx_sigmaHAR", "ctx_sigmaGARCH", "ctx_funding", "ctx_regime"}
    need |= {f"shadow_{p}" for p in P.BAR_POLICIES}
    assert need <= set(t.column_names)
    d = t.to_pydict()
    assert t.num_rows > 500 and set(d["symbol"]) == {"BTCUSDT", "ETHUSDT"}
    assert set(d["policy_id"]) <= set(P.BAR_POLICIES) and all(0 < p <= 1 for p in d["propensity"])
    # the regime is the BOCPD label of the symbol's decision-grid closes (causal: the look-ahead test)
    from stevie.quant.regime import REGIME_LABELS

    assert set(d["ctx_regime"]) <= set(REGIME_LABELS) and len(set(d["ctx_regime"]) - {"unknown"}) >= 2
    # the chosen policy's signal is its shadow signal; a fill is at the next bar's open ± cost
    for i in range(t.num_rows):
        assert d["signal"][i] == d[f"shadow_{d['policy_id'][i]}"][i]
    ts = np.array(d["ts_event_ns"])
    assert np.all(np.diff(ts) >= 0) and np.all(ts % (300 * 10**9) == 0)
    s = json.loads((first_run / "summary.json").read_text())
    assert s["runId"] in str(first_run / "x") or len(s["runId"]) == 16
    assert s["data"]["klines"]["BTCUSDT"]["sha256"] == sha(KLINES / "BTCUSDT.csv.gz")
    assert s["metrics"]["decisions"] == t.num_rows and s["metrics"]["vol_fits"] >= 2


def test_fill_prices_are_next_open_plus_cost(first_run):
    import pyarrow.parquet as pq

    d = pq.read_table(first_run / "decisions.parquet").to_pydict()
    with gzip.open(KLINES / "BTCUSDT.csv.gz", "rt") as f:
        next(f)
        opens = {int(r.split(",")[0]): float(r.split(",")[1]) for r in f}
    checked = 0
    for i in range(len(d["symbol"])):
        if d["symbol"][i] != "BTCUSDT" or d["fill_price"][i] != d["fill_price"][i]:
            continue
        side = 1 if d["order_size"][i] > 0 else -1
        o = opens[d["ts_event_ns"][i] // 1_000_000]  # the bar opening at the decision time
        assert d["fill_price"][i] == pytest.approx(o * (1 + side * d["cost_bps"][i] / 1e4), rel=1e-12)
        checked += 1
    assert checked > 0


def test_same_command_twice_is_byte_identical(first_run, tmp_path):
    out = tmp_path / "b"
    code, text = run(*ARGS, "--out", str(out), "--workers", "2")  # fits in worker processes this time
    assert code == 0, text
    assert sha(out / "decisions.parquet") == sha(first_run / "decisions.parquet")
    a, b = (json.loads((p / "summary.json").read_text()) for p in (first_run, out))
    assert a["metrics"] == b["metrics"] and a["runId"] == b["runId"] and a["settings"] == b["settings"]
    # the seed is part of the run id (checked on the hash itself: a third run would only repeat it)
    import msgspec

    from stevie.backtest.bars import BarSettings
    from stevie.backtest.output import run_id

    s3, s4 = (msgspec.convert({**a["settings"], "seed": seed}, BarSettings) for seed in (3, 4))
    assert run_id("bars", a["data"], s3) == a["runId"] != run_id("bars", a["data"], s4)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--symbols", "NOPEUSDT"], "unknown symbol"),
        (["--start", "2030-01-01"], "empty window"),
        (["--start", "2025-05-08", "--end", "2025-05-07"], "before --end"),
        (["--decision-interval", "5x"], "decision-interval"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, extra, message):
    out = tmp_path / "out"
    args = ["backtest", "--data", str(KLINES), "--symbols", "BTCUSDT", *extra, "--out", str(out)]
    code, text = run(*args)
    assert code == 2 and message in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1
    assert not out.exists()


def test_corrupt_kline_row(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = ["open_time_ms,open,high,low,close,volume"]
    rows += [f"{1746403200000 + i * 60000},100,101,99,100.5,3" for i in range(50)]
    rows[20] = "1746404340000,100,1e,99,100.5,3"
    (data / "FOOUSDT.csv").write_text("\n".join(rows) + "\n")
    code, text = run("backtest", "--data", str(data), "--out", str(tmp_path / "out"))
    assert code == 2 and "FOOUSDT.csv:21" in text.replace("\n", "") and "Traceback" not in text
    assert not (tmp_path / "out").exists()


def test_report_opens_in_headless_chromium(first_run, tmp_path):
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("chromium not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    from stevie.backtest.report import PLOTS

    shot = tmp_path / "report.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.route("**/*", lambda r: r.abort() if not r.request.url.startswith(("file:", "data:")) else r.continue_())
        page.goto((first_run / "report.html").as_uri())
        sizes = page.eval_on_selector_all(
            "img.plot", "els => els.map(e => [e.id, e.complete, e.naturalWidth, e.naturalHeight])"
        )
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert [s[0] for s in sizes] == list(PLOTS)
    assert all(ok and w > 200 and h > 100 for _, ok, w, h in sizes)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape[0] > 1500 and img.std() > 10  # a long page with drawn plots, not blank


def test_bar_policies_by_hand():
    up = np.linspace(100, 110, 200)
    x = P.PolicyInputs(closes=up)
    assert P.sma_crossover(x) == 1 and P.sma_crossover(P.PolicyInputs(closes=up[::-1])) == -1
    assert P.sma_crossover(P.PolicyInputs(closes=up[:50])) == 0  # too little history
    assert P.donchian_breakout(x) == 1 and P.donchian_breakout(P.PolicyInputs(closes=up[::-1])) == -1
    flat = np.full(200, 100.0)
    assert P.donchian_breakout(P.PolicyInputs(closes=flat)) == 0
    spike = flat.copy()
    spike[-1] = 103
    spike[:-1] += np.sin(np.arange(199))  # std ≈ 0.7: the last close is z ≈ 3.6 above
    assert P.mean_reversion(P.PolicyInputs(closes=spike)) == -1
    assert P.funding_carry(P.PolicyInputs(funding=3e-4)) == -1 and P.funding_carry(P.PolicyInputs(funding=-1e-4)) == 1
    assert P.funding_carry(P.PolicyInputs(funding=1e-5)) == 0
    tuned = P.with_params("p_sma", P.SmaParams(fast=5, slow=10))
    assert tuned(P.PolicyInputs(closes=up[:12])) == 1
    with pytest.raises(TypeError):
        P.with_params("p_sma", P.BreakoutParams())
    assert set(P.BAR_POLICIES) | set(P.L2_POLICIES) == set(P.POLICIES)


def test_donchian_equals_the_sliding_window_definition():
    rng = np.random.default_rng(5)
    for _ in range(500):
        c = np.cumsum(rng.normal(size=150)) + 100
        p = P.BreakoutParams(window=int(rng.integers(1, 60)), hold=int(rng.integers(1, 60)))
        n = p.window + p.hold
        tail = c[-n:]
        win = np.lib.stride_tricks.sliding_window_view(tail[:-1], p.window)
        now = tail[p.window :]
        want = 0
        for j in range(p.hold):
            if now[j] > win[j].max():
                want = 1
            elif now[j] < win[j].min():
                want = -1
        assert P.donchian_breakout(P.PolicyInputs(closes=c), p) == want


def test_batch_signals_equal_the_live_policies():
    """The backtest evaluates the bar policies in batch (``stevie.backtest.signals``); at every
    decision of a symbol's recorded history they give the live function's signal exactly
    (including tick-bound stretches where SMA/z ties are decided by the summation order)."""
    from stevie.backtest.bars import decision_index
    from stevie.backtest.data import discover, load_funding, load_klines
    from stevie.backtest.signals import batch_signals

    files = discover(KLINES)
    fund = load_funding(FUNDING)
    for sym in ("BTCUSDT", "DOGEUSDT"):
        k = load_klines(files, [sym], None, None)[sym]
        idx = decision_index(k, 5)[:2000]  # the first week
        upto = idx + 1
        ft, fr = fund.of(sym)
        fi = np.searchsorted(ft, k.open_time_ms[idx] + 60_000, side="right") - 1
        f = np.where(fi >= 0, fr[np.maximum(fi, 0)], 0.0) if fr.size else np.zeros(idx.size)
        for pid in P.BAR_POLICIES:
            got = batch_signals(pid, k.close, upto, f, 240)
            want = [
                P.POLICIES[pid](P.PolicyInputs(closes=k.close[max(0, u - 240) : u], funding=float(fu)))
                for u, fu in zip(upto.tolist(), f.tolist(), strict=True)
            ]
            assert got.tolist() == want, pid
            assert pid in ("p_flat", "p_funding_carry") or len(set(want)) == 3  # all signs occur
    # a flat (tick-bound) stretch and the very start of the history
    c = np.r_[np.full(300, 0.1234), np.linspace(0.1234, 0.2, 100)]
    upto = np.arange(1, c.size + 1)
    for pid in P.BAR_POLICIES:
        want = [P.POLICIES[pid](P.PolicyInputs(closes=c[max(0, u - 240) : u])) for u in upto.tolist()]
        assert batch_signals(pid, c, upto, np.zeros(c.size), 240).tolist() == want, pid


def test_tuned_batch_signals_equal_the_live_policy_with_those_params():
    """``--params`` reaches the batch twins: with tuned hyper-parameters (as ``stevie pbt``
    registers them) every decision's signal is the live function's with the same parameters,
    and differs from the defaults'."""
    from stevie.backtest.bars import decision_index
    from stevie.backtest.data import discover, load_klines
    from stevie.backtest.signals import batch_signals

    k = load_klines(discover(KLINES), ["BTCUSDT"], None, None)["BTCUSDT"]
    upto = decision_index(k, 5)[:2000] + 1
    tuned = P.tuned_params(
        {"p_sma.fast": 7, "p_sma.slow": 45, "p_breakout.window": 20, "p_mean_reversion.entry_z": 1.2}
    )
    assert tuned["p_breakout"] == P.BreakoutParams(window=20, hold=15)  # unnamed: the default
    zeros = np.zeros(upto.size)
    for pid, params in tuned.items():
        got = batch_signals(pid, k.close, upto, zeros, 240, params)
        fn = P.with_params(pid, params)
        want = [fn(P.PolicyInputs(closes=k.close[max(0, u - 240) : u])) for u in upto.tolist()]
        assert got.tolist() == want, pid
        assert got.tolist() != batch_signals(pid, k.close, upto, zeros, 240).tolist(), pid


@pytest.mark.parametrize(
    ("flat", "message"),
    [
        ({"p_sma.fast": 40, "p_sma.slow": 20}, "fast < slow"),
        ({"p_sma.fast": 7.5}, "whole number"),
        ({"p_sma.fats": 7}, "no parameter fats"),
        ({"p_obi_momentum.threshold": 0.2}, "no hyper-parameters"),
        ({"fast": 7}, "POLICY.PARAM"),
        ({"p_mean_reversion.entry_z": -1}, "> 0"),
        ({"p_funding_carry.threshold": float("inf")}, "finite"),
    ],
)
def test_tuned_params_refuse_what_a_policy_cannot_take(flat, message):
    with pytest.raises((KeyError, ValueError), match=message):
        P.tuned_params(flat)


def test_backtest_with_tuned_params_is_its_own_run(first_run, tmp_path):
    """``stevie backtest --params``: the tuned values are in the settings (and so in the run id),
    the lookback grows to what they read, and p_sma's signals change; bad values exit 2."""
    import pyarrow.parquet as pq

    out = tmp_path / "tuned"
    code, text = run(*ARGS, "--out", str(out), "--workers", "1", "--params", "p_sma.fast=10,p_sma.slow=300")
    assert code == 0, text
    a, b = (json.loads((d / "summary.json").read_text()) for d in (first_run, out))
    assert b["settings"]["policy_params"] == {"p_sma.fast": 10.0, "p_sma.slow": 300.0}
    assert b["settings"]["lookback_bars"] == 300 and a["settings"]["lookback_bars"] == 240
    assert a["runId"] != b["runId"]
    da, db = (pq.read_table(d / "decisions.parquet").to_pydict() for d in (first_run, out))
    assert da["shadow_p_sma"] != db["shadow_p_sma"] and da["shadow_p_breakout"] == db["shadow_p_breakout"]
    for bad, message in (("p_sma.fast=ten", "POLICY.PARAM=NUMBER"), ("p_sma.fast=50,p_sma.slow=20", "fast < slow")):
        code, text = run(*ARGS, "--out", str(tmp_path / "bad"), "--params", bad)
        assert code == 2 and message in text and len(text.strip().splitlines()) == 1, text
    assert not (tmp_path / "bad").exists()


def test_batch_alpha_signals_equal_the_live_registry(first_run):
    """The report's per-alpha attribution evaluates the alphas in batch
    (``stevie.backtest.adaptive.batch_signals``): at every decision of a real run they give
    ``AlphaRegistry.signals`` on the same inputs exactly (the symbol's last 10 decision prices,
    σ GARCH/HAR, funding), and every default alpha that can move does move."""
    import pyarrow.parquet as pq

    from stevie.backtest import adaptive
    from stevie.quant.alpha import AlphaInputs, AlphaRegistry

    d = pq.read_table(first_run / "decisions.parquet").to_pydict()
    reg = AlphaRegistry()
    sym = [str(s) for s in d["symbol"]]
    price, sg, sh, fu = (
        np.nan_to_num(np.asarray(d[c], dtype=float)) for c in ("price", "ctx_sigmaGARCH", "ctx_sigmaHAR", "ctx_funding")
    )
    got = adaptive.batch_signals(reg, sym, price, sg, sh, fu)
    recent: dict[str, list[float]] = {}
    want = []
    for i, s in enumerate(sym):
        past = recent.setdefault(s, [])
        past.append(float(price[i]))
        del past[:-10]
        x = AlphaInputs(sigma_garch=float(sg[i]), sigma_har=float(sh[i]), funding=float(fu[i]), mids=tuple(past))
        want.append(reg.signals(x))
    np.testing.assert_array_equal(got, np.asarray(want))
    moving = {a.id for j, a in enumerate(reg.alphas) if np.unique(got[:, j]).size > 2}
    assert {"a_sma_trend", "a_vol_regime"} <= moving and np.unique(got[:, 4]).size == 3  # breakout: −1, 0, 1


def _kline_csv(path: Path, t: np.ndarray, o, h, lo, c, v) -> None:
    rows = ["open_time_ms,open,high,low,close,volume"]
    rows += [f"{a},{b!r},{d!r},{e!r},{f!r},{g!r}" for a, b, d, e, f, g in zip(t.tolist(), o, h, lo, c, v, strict=True)]
    path.write_text("\n".join(rows) + "\n")


def test_a_40_sigma_spike_is_quarantined_and_replaced(tmp_path):
    """Two days of real BTCUSDT bars with one minute (bar j) made flat at the previous close:
    the clean file. The spiked file moves that close up by 40 robust σ (median + 40·MAD of the
    240 returns before it) and back. Strict mode quarantines exactly that candle (the robust z
    in its reason) and replaces it by the flat candle at the previous close — which is what the
    clean file holds, so every decision is the clean run's. Relaxed mode only counts it and
    uses it: the decisions before the spike are unchanged, later ones differ (they must: a
    40-σ return went into the vol core)."""
    import pyarrow.parquet as pq

    from stevie.backtest.data import discover, load_klines
    from stevie.quant.quality import MAD_TO_SIGMA

    files = discover(KLINES)
    start = 1746489600000  # 2025-05-06
    k = load_klines(files, ["BTCUSDT"], start, start + 2 * 86_400_000)["BTCUSDT"]
    o, h, lo, c, v = (x.copy() for x in (k.open, k.high, k.low, k.close, k.volume))
    j = 2003
    o[j] = h[j] = lo[j] = c[j] = c[j - 1]
    r = np.diff(np.log(c))[j - 241 : j - 1]
    med = float(np.median(r))
    mad = float(np.median(np.abs(r - med))) * MAD_TO_SIGMA
    spiked = c.copy()
    spiked[j] = c[j - 1] * np.exp(med + 40 * mad)
    hs = h.copy()
    hs[j] = spiked[j]
    for name, cl, hi in (("clean", c, h), ("spiked", spiked, hs)):
        (tmp_path / name).mkdir()
        _kline_csv(
            tmp_path / name / "BTCUSDT.csv",
            k.open_time_ms,
            o.tolist(),
            hi.tolist(),
            lo.tolist(),
            cl.tolist(),
            v.tolist(),
        )
    outs = {}
    for name, mode in (("clean", "strict"), ("spiked", "strict"), ("spiked", "relaxed")):
        out = tmp_path / f"out-{name}-{mode}"
        code, text = run("backtest", "--data", str(tmp_path / name), "--seed", "3", "--workers", "1",
                         "--data-quality", mode, "--out", str(out))  # fmt: skip
        assert code == 0, text
        outs[name, mode] = (json.loads((out / "summary.json").read_text()), pq.read_table(out / "decisions.parquet"))
        outs[name, mode, "sha"] = sha(out / "decisions.parquet")
    clean_q = outs["clean", "strict"][0]["quality"]
    assert clean_q["checked"] == k.n and clean_q["quarantined"] == {} and clean_q["counted"] == {}
    q = outs["spiked", "strict"][0]["quality"]
    assert q["mode"] == "strict" and q["checked"] == k.n and q["quarantined"] == {"spike": 1}
    (ex,) = q["examples"]
    assert ex["row"] == j + 2 and ex["candle"]["close"] == spiked[j] and ex["replacement"]["close"] == c[j - 1]
    z = float(ex["detail"].split("robust z of the return in ")[1].split()[0].rstrip(","))
    assert 39.0 <= z <= 41.0 and "cap 25" in ex["detail"] and "previous close" in ex["detail"]
    clean_t, strict_t = outs["clean", "strict"][1], outs["spiked", "strict"][1]
    assert strict_t.num_rows > 100  # and every decision unchanged, byte for byte:
    assert outs["spiked", "strict", "sha"] == outs["clean", "strict", "sha"]
    rq = outs["spiked", "relaxed"][0]["quality"]
    assert rq["counted"] == {"spike": 1} and rq["quarantined"] == {}
    relaxed = outs["spiked", "relaxed"][1].to_pydict()
    cd = clean_t.to_pydict()
    t_spike_ns = int(k.open_time_ms[j]) * 1_000_000
    before = [i for i, ts in enumerate(cd["ts_event_ns"]) if ts <= t_spike_ns]
    assert before and all(relaxed["ctx_sigmaGARCH"][i] == cd["ctx_sigmaGARCH"][i] for i in before)
    after = [i for i, ts in enumerate(cd["ts_event_ns"]) if ts > t_spike_ns + 60_000_000_000]
    assert any(relaxed["ctx_sigmaGARCH"][i] != cd["ctx_sigmaGARCH"][i] for i in after)


def test_schema_bad_candles_are_quarantined_not_fatal(tmp_path):
    """A parseable but impossible candle (high below the close, negative volume, NaN close) is
    quarantined and replaced in strict mode; relaxed refuses only the one no core can use (NaN)."""
    from stevie.backtest.data import BacktestInputError, discover, load_klines
    from stevie.backtest.quality import screen

    files = discover(KLINES)
    start = 1746489600000
    k = load_klines(files, ["BTCUSDT"], start, start + 86_400_000)["BTCUSDT"]
    o, h, lo, c, v = (x.copy() for x in (k.open, k.high, k.low, k.close, k.volume))
    h[100] = min(o[100], c[100]) * 0.99
    v[200] = -1.0
    c[300] = float("nan")
    (tmp_path / "d").mkdir()
    _kline_csv(
        tmp_path / "d" / "BTCUSDT.csv", k.open_time_ms, o.tolist(), h.tolist(), lo.tolist(), c.tolist(), v.tolist()
    )
    bad = load_klines(discover(tmp_path / "d"), ["BTCUSDT"], None, None)
    fixed, rep = screen(bad, "strict", "binance-usdm")
    assert rep.quarantined == {"ohlc_inconsistent": 1, "negative_volume": 1, "non_finite": 1}
    f = fixed["BTCUSDT"]
    assert f.close[300] == c[299] and f.high[100] == f.low[100] == c[99] and f.volume[200] == 0.0
    assert [r.replaced for r in rep.rows] == [True] * 3 and {r.source for r in rep.rows} == {"backtest"}
    assert np.isfinite(f.close).all() and f.n == k.n  # nothing dropped
    with pytest.raises(BacktestInputError, match=r"BTCUSDT\.csv:302"):
        screen(bad, "relaxed", "binance-usdm")


def test_the_recorded_klines_pass_the_guards():
    """The 18 recorded USD-M histories: every candle checked, none quarantined (cap 25, window 240)."""
    from stevie.backtest.data import discover, load_klines
    from stevie.backtest.quality import screen

    files = discover(KLINES)
    kl = load_klines(files, sorted(files), None, None)
    _, rep = screen(kl, "strict", "binance-usdm")
    assert len(kl) == 18 and rep.checked == sum(x.n for x in kl.values()) == 979_806
    assert rep.quarantined == {} and rep.rows == []
