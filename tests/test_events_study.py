"""`stevie events study` on the shipped macro events and the real BTCUSDT 1-minute history,
plus the events core: validation, summaries, ids, the look-ahead-free context dims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stevie.contracts.events import EventIn, EventPoint
from stevie.services.events import core
from stevie.services.events.files import EventFileError, read_events

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "data/samples/events/us_macro_2025-05_06.csv"
KLINES = ROOT / "data/samples/binance/usdm/klines_1m/BTCUSDT.csv.gz"


def test_shipped_events_have_official_times_and_sources() -> None:
    evs = read_events(EVENTS)
    kinds = [e.kind for e in evs]
    assert kinds.count("FOMC") == 2 and kinds.count("CPI") == 2 and len(evs) >= 6
    text = EVENTS.read_text()
    assert "2025-05-07T18:00:00Z,FOMC" in text and "2025-06-18T18:00:00Z,FOMC" in text
    assert "2025-05-13T12:30:00Z,CPI" in text and "2025-06-11T12:30:00Z,CPI" in text
    for line in text.splitlines()[1:]:
        assert "https://www." in line  # every row cites the official page of its time


def test_study_cli_prints_table_and_writes_report(tmp_path: Path) -> None:
    from stevie.runtime.cli import app

    report = tmp_path / "study.html"
    r = CliRunner().invoke(
        app, ["events", "study", "--events", str(EVENTS), "--klines", str(KLINES), "--report", str(report)]
    )
    assert r.exit_code == 0, r.output
    assert "FOMC" in r.output and "p RV" in r.output and "placebo" in r.output
    html = report.read_text()
    assert "<svg" in html and "placebo distributions" in html and "2025-06-18 18:00" in html


def test_study_numbers_on_the_real_history() -> None:
    from stevie.quant.events import Windows
    from stevie.services.events import study as st
    from stevie.services.events.files import read_klines

    res, skipped = st.run(read_events(EVENTS), read_klines(KLINES), Windows(60, 60, 1440), 2000, "weekday", 0)
    assert skipped == [] and len(res.events) == 8
    assert all(e.pool >= 300 for e in res.events)
    fomc = next(g for g in res.groups if g.kind == "FOMC")
    # What the data say (reported in the README): the hour after both FOMC statements is about
    # twice as volatile as the day before, beyond every matched Wednesday 18:xx placebo.
    assert np.exp(fomc.mean_av_post) > 1.5 and fomc.p_av < 0.01
    # ... and beyond the same clock minute (18:00) on every one of the 5 other Wednesdays, in
    # every combination: 1/26, the smallest p 5 matched days allow.
    assert [e.days for e in res.events if e.kind == "FOMC"] == [5, 5]
    assert fomc.p_av_day == pytest.approx(1 / 26)
    ppi = next(g for g in res.groups if g.kind == "PPI")
    assert ppi.p_av > 0.1  # not every release moves BTC


def test_prepare_validates_and_summarises() -> None:
    now = core.parse_ts("2025-06-20T00:00:00Z")
    ok = EventIn(
        ts="2025-06-18T18:00:00Z", title=" Fed holds ", source="Fed", body="First. Second one.", symbols=["btcusdt"]
    )
    (p,) = core.prepare([ok], now, 10)
    assert p.ts_ns == 1750269600 * 10**9 and p.symbols == ("BTCUSDT",) and p.summary == "Fed holds. First."
    assert p.id == core.event_id(p.ts_ns, "Fed", "Fed holds") and p.id.startswith("ev_")
    assert core.prepare([EventIn(ts=1750269600000, title="Fed holds", source="Fed")], now, 10)[0].id == p.id
    bad = {
        "title is empty": EventIn(ts=1750269600000, title="  ", source="x"),
        "after the clock": EventIn(ts="2025-07-01T00:00:00Z", title="t", source="x"),
        "no time zone": EventIn(ts="2025-06-01T00:00:00", title="t", source="x"),
        "before 2000": EventIn(ts=1750269600, title="t", source="x"),
        "not a symbol": EventIn(ts=1750269600000, title="t", source="x", symbols=["BTC USDT"]),
    }
    for needle, e in bad.items():
        with pytest.raises(ValueError, match=needle):
            core.prepare([e], now, 10)
    with pytest.raises(core.TooManyEvents, match="at most 3"):
        core.prepare([ok] * 4, now, 3)


def test_context_dims_never_look_ahead() -> None:
    pts = [EventPoint("a", 0, [1.0, 2.0]), EventPoint("b", 60 * core.MINUTE_NS, [3.0, -1.0])]
    c = core.context_dims(pts, 30 * core.MINUTE_NS, 2, half_life_min=30)  # b is in the future
    assert c.minutes_since == 30 and c.decay == pytest.approx(0.5) and c.dims == pytest.approx([0.5, 1.0])
    c2 = core.context_dims(pts, 60 * core.MINUTE_NS, 2, half_life_min=30)
    assert c2.minutes_since == 0 and c2.dims == pytest.approx([3.0, -1.0])
    none = core.context_dims(pts, -1, 2, half_life_min=30)
    assert none.minutes_since is None and none.dims == [0.0, 0.0] and none.decay == 0.0


def test_event_files_reject_bad_bytes(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_bytes(b"ts,title,source\n1750269600000,caf\xe9,x\n")
    with pytest.raises(EventFileError, match="line 2 is not UTF-8"):
        read_events(f)
    j = tmp_path / "ok.jsonl"
    j.write_text('{"ts": 1750269600000, "title": "t", "source": "s", "symbols": ["BTCUSDT"], "extra": 1}\n')
    assert read_events(j)[0].symbols == ["BTCUSDT"]


def test_router_feature_vector_carries_the_event_dims() -> None:
    from stevie.contracts.rpc import RouterContext
    from stevie.services.router.core import FEATURES, features

    names = [n for n in FEATURES if n.startswith("event_")]
    assert len(names) == 6
    idx = [FEATURES.index(n) for n in names]
    none = features(RouterContext(symbol="BTCUSDT"))
    assert [none[i] for i in idx] == [0.0] * 6
    x = features(RouterContext(symbol="BTCUSDT", event_pc=[0.1, -0.2, 0.3], event_decay=0.5, event_minutes_since=720))
    assert [round(float(x[i]), 6) for i in idx] == [0.3, -0.6, 0.9, 0.0, 0.5, 0.5]
