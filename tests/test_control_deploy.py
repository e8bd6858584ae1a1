"""Blue/green cutover and canary ladder on synthetic SLO / PnL streams: cutover after the
threshold window, rollback on a breach, no flapping; ladder gates, demotion, no skipping."""

from __future__ import annotations

import numpy as np
import pytest

from stevie.contracts.ops import RouterStack, SloView
from stevie.services.control.deploy import (
    Call,
    CanaryLadder,
    Cutover,
    CutoverConfig,
    LadderConfig,
    PaperStats,
    SloThresholds,
    SloWindow,
    cvar_of_changes,
    drive,
)

S = 1_000_000_000
T = SloThresholds(max_p95_ms=50, max_error_rate=0.02, max_qos_gap=0.05, min_samples=20)
CFG = CutoverConfig(window_s=60, breach_evals=2, thresholds=T)


def run(cut: Cutover, latency_ms, seconds: int, t0: int = 0, error_every: int = 0, rate_hz: int = 5):
    """Feed ``rate_hz`` calls/s of the given latency (a callable of t) and evaluate every second."""
    win = SloWindow(CFG.window_s, T)
    out = []
    for sec in range(seconds):
        for k in range(rate_hz):
            ts = (t0 + sec) * S + k * (S // rate_hz)
            err = bool(error_every) and (sec * rate_hz + k) % error_every == 0
            win.add(Call(ts, latency_ms(t0 + sec), err, 0.001, 0.001))
        now = (t0 + sec + 1) * S
        out += cut.observe(win.view(now), now)
    return out


def started() -> Cutover:
    c = Cutover("model-1", CFG)
    c.propose("model-2", 0, "op")
    c.start(0, "op")
    return c


def test_slo_window_matches_numpy():
    rng = np.random.default_rng(0)
    lat = rng.lognormal(2, 0.5, 200)
    w = SloWindow(1000, T)
    for i, x in enumerate(lat):
        w.add(Call(i * S, float(x), i % 50 == 0, 0.01, 0.0))
    v = w.view(200 * S)
    assert v.p95LatencyMs == pytest.approx(np.percentile(lat, 95), abs=1e-3)
    assert v.errorRate == pytest.approx(4 / 200) and v.qosGap == pytest.approx(0.01)
    assert w.view(10_000 * S).samples == 0  # everything aged out


def test_cutover_after_the_threshold_window_then_active():
    c = started()
    assert (c.state, c.green_share) == ("canary", 0.01)
    tr = run(c, lambda t: 10.0, 59)
    assert tr == [] and c.state == "canary"  # not a full window yet
    tr = run(c, lambda t: 10.0, 200, t0=59)
    assert [x.toState for x in tr] == ["partial", "partial", "active"]
    # min_samples (20 calls at 5/s) after 4 s, then one full healthy window per step, each
    # counted from the first healthy evaluation after entering the step
    assert [round(x.atMs / 1000) for x in tr] == [64, 125, 186]
    assert c.blue == "model-2" and c.green is None and c.green_share == 0.0


def test_rollback_on_a_breach_and_it_stays_rolled_back():
    c = started()
    run(c, lambda t: 10.0, 70)
    assert c.state == "partial"
    tr = run(c, lambda t: 10.0 if t < 90 else 400.0, 200, t0=70)
    assert [x.toState for x in tr] == ["rolled_back"] and "SLO breach" in tr[0].reason
    assert c.green_share == 0.0
    assert run(c, lambda t: 1.0, 500, t0=300) == []  # healthy again: no automatic return
    with pytest.raises(ValueError):
        c.start(900 * S, "op")


def test_errors_breach_too():
    c = started()
    tr = run(c, lambda t: 10.0, 60, error_every=10)  # 10 % errors > 2 %
    assert c.state == "rolled_back" and tr[-1].toState == "rolled_back"


def test_no_flapping_around_the_threshold():
    """Latency alternating just above and below the cap every 20 s: a window is never
    completed, so the canary never advances; a single bad evaluation does not roll back."""
    cfg = CutoverConfig(window_s=60, breach_evals=1000, thresholds=T)
    c = Cutover("m1", cfg)
    c.propose("m2", 0, "op")
    c.start(0, "op")
    win = SloWindow(10, T)  # short window so the p95 follows the phase
    moves = []
    for sec in range(600):
        lat = 60.0 if (sec // 20) % 2 else 10.0
        for k in range(5):
            win.add(Call(sec * S + k * S // 5, lat, False))
        moves += c.observe(win.view((sec + 1) * S), (sec + 1) * S)
    assert moves == [] and c.state == "canary"
    c2 = started()
    win = SloWindow(5, T)
    for sec in range(120):  # one slow outlier call: the p95 does not move, nothing happens
        for k in range(5):
            win.add(Call(sec * S + k * S // 5, 500.0 if (sec, k) == (30, 0) else 10.0, False))
        c2.observe(win.view((sec + 1) * S), (sec + 1) * S)
    assert c2.state != "rolled_back"
    c3 = started()  # one bad evaluation (breach_evals=2) then healthy: no rollback
    good, bad = SloView(5.0, 0.0, 0.0, 50, True), SloView(500.0, 0.0, 0.0, 50, False)
    for sec, v in enumerate([good] * 10 + [bad] + [good] * 10):
        c3.observe(v, sec * S)
    assert c3.state == "canary"


def test_too_few_samples_never_advance():
    c = started()
    assert run(c, lambda t: 1.0, 600, rate_hz=0) == [] and c.state == "canary"


def test_cutover_config_is_validated():
    with pytest.raises(ValueError):
        CutoverConfig(canary_share=0.5, partial_shares=(0.1,))


def test_qos_gap_from_late_rewards_needs_enough_pairs():
    """Latency samples and the later (predicted, realised) pairs arrive separately; a gap over
    the cap is a breach only once ``min_samples`` pairs back it."""
    w = SloWindow(60, T)
    for i in range(30):
        w.add(Call(i * S // 10, 5.0, False))
    w.add(Call(3 * S, None, False, 4.0, -6.0))  # one noisy reward: gap 10 bps, no verdict yet
    v = w.view(4 * S)
    assert (v.samples, v.qosGap, v.healthy) == (30, 10.0, True)
    for _ in range(25):
        w.add(Call(4 * S, None, False, 1.0, 0.0))
    v = w.view(5 * S)
    assert v.samples == 30 and v.qosGap == pytest.approx(abs((4 + 25) / 26 - (-6 / 26))) and not v.healthy


def stack(model: str, ts_ns: int, candidate: bool = True) -> RouterStack:
    return RouterStack("green", model, model, candidate, 1, ts_ns)


GOOD = SloView(5.0, 0.0, 0.0, 50, True)
BAD = SloView(900.0, 0.5, 0.0, 50, False)


def test_drive_proposes_starts_advances_and_never_reproposes_a_rolled_back_model():
    cfg = CutoverConfig(window_s=10, breach_evals=2, thresholds=T)
    c, done = Cutover("m1", cfg), set[str]()
    assert drive(c, None, GOOD, 0, done, True, 10) == [] and c.state == "active"
    assert drive(c, stack("m1", 0, candidate=False), GOOD, 0, done, True, 10) == []  # no candidate
    tr = drive(c, stack("m2", 0), GOOD, S, done, True, 10)
    assert [x.toState for x in tr] == ["candidate", "canary"] and c.green_share == 0.01
    moves = []
    for sec in range(2, 60):
        moves += drive(c, stack("m2", sec * S), GOOD, sec * S, done, True, 10)
    assert [x.toState for x in moves] == ["partial", "partial", "active"] and c.blue == "m2" and "m2" in done
    assert drive(c, stack("m2", 61 * S), GOOD, 61 * S, done, True, 10) == []  # m2 is done: not again
    tr = drive(c, stack("m3", 62 * S), GOOD, 62 * S, done, True, 10)
    assert [x.toState for x in tr] == ["candidate", "canary"]
    tr = drive(c, stack("m3", 63 * S), BAD, 63 * S, done, True, 10) + drive(
        c, stack("m3", 64 * S), BAD, 64 * S, done, True, 10
    )
    assert [x.toState for x in tr] == ["rolled_back"] and "m3" in done
    for sec in range(65, 200):  # healthy again, still announced: stays rolled back (no flapping)
        assert drive(c, stack("m3", sec * S), GOOD, sec * S, done, True, 10) == []
    assert c.state == "rolled_back"


def test_drive_rolls_back_when_green_is_gone_or_changes_model_and_waits_without_auto_start():
    c, done = Cutover("m1", CFG), set[str]()
    drive(c, stack("m2", 0), GOOD, 0, done, True, 10)
    assert drive(c, stack("m2", 0), GOOD, 5 * S, done, True, 10) == []  # 5 s silent: still fresh
    tr = drive(c, stack("m2", 0), GOOD, 11 * S, done, True, 10)
    assert [x.toState for x in tr] == ["rolled_back"] and "gone" in tr[0].reason
    tr = drive(c, stack("m4", 12 * S), GOOD, 12 * S, done, True, 10)
    tr = drive(c, stack("m5", 13 * S), GOOD, 13 * S, done, True, 10)
    assert c.state == "rolled_back" and "now serves m5" in tr[0].reason
    c2 = Cutover("m1", CFG)
    tr = drive(c2, stack("m2", 0), GOOD, 0, set(), False, 10)
    assert [x.toState for x in tr] == ["candidate"] and c2.green_share == 0.0
    assert drive(c2, stack("m2", S), GOOD, S, set(), False, 10) == []  # waits for an operator start


# -- canary ladder -------------------------------------------------------------------------
LCFG = LadderConfig(min_fills=5, min_pnl_quote=0.0, max_cvar_quote=5.0, min_dwell_s=60)


def feed(lad: CanaryLadder, seconds: int, t0: int = 0, fills_per_s: float = 1.0, pnl_per_s: float = 0.1, trip=None):
    out = []
    for sec in range(t0, t0 + seconds):
        stats = PaperStats(sec * S, int(sec * fills_per_s), 1000 + sec * pnl_per_s, bool(trip and trip(sec)))
        out += lad.observe(stats)
    return out


def test_ladder_advances_one_gate_at_a_time():
    lad = CanaryLadder(LCFG)
    tr = feed(lad, 400)
    assert [x.toState for x in tr] == ["canary", "partial", "live"]
    gaps = np.diff([x.atMs for x in tr])
    assert all(g >= 60_000 for g in gaps)  # the dwell gate holds every step
    assert lad.next is None and lad.blocked_by() == []


def test_ladder_gate_blocks_and_names_itself():
    lad = CanaryLadder(LCFG)
    assert feed(lad, 300, pnl_per_s=-0.01) == []  # losing money: pnl gate holds
    assert "pnlQuote" in lad.blocked_by() and lad.state == "disabled"
    lad2 = CanaryLadder(LCFG)
    assert feed(lad2, 300, fills_per_s=0.01) == []
    assert "minFills" in lad2.blocked_by()


def test_breaker_demotes_and_operator_cannot_skip():
    lad = CanaryLadder(LCFG)
    feed(lad, 130)
    assert lad.state == "partial"
    tr = feed(lad, 5, t0=130, trip=lambda s: s == 132)
    assert tr[-1].toState == "canary" and "breaker" in tr[-1].reason
    with pytest.raises(ValueError):
        lad.act("advance", 0, "op")
    lad.act("hold", 0, "op")
    assert feed(lad, 300, t0=135) == [] and "held" in lad.blocked_by()
    lad.act("resume", 0, "op")
    assert [x.toState for x in feed(lad, 300, t0=435)] == ["partial", "live"]
    assert lad.act("demote", 0, "op")[0].toState == "partial"


def test_cvar_matches_the_portfolio_definition():
    from stevie.quant.portfolio import var_cvar

    rng = np.random.default_rng(3)
    eq = list(1000 + np.cumsum(rng.normal(0, 1, 500)))
    _, ref = var_cvar(np.diff(eq), 0.95)
    assert cvar_of_changes(eq, 0.95) == pytest.approx(float(ref[0]), rel=1e-12)
    assert cvar_of_changes(eq[:5], 0.95) is None
