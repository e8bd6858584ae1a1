"""Risk guards block exactly at their limits; the budgeter denies at the limit and refills."""

from __future__ import annotations

import pytest

from stevie.contracts.rpc import GrantRequest, OrderCheck
from stevie.services.budgeter.core import Budgeter
from stevie.services.risk_guards.core import RiskGuards
from stevie.services.risk_guards.settings import RiskGuardsSettings

S = 1_000_000_000
LIMITS = RiskGuardsSettings(
    global_notional_cap_quote=1000,
    symbol_notional_cap_quote=600,
    max_order_notional_quote=500,
    orders_per_min=3,
    collar_bps=50,
    max_drawdown_quote=100,
    breaker_reset_s=60,
    stale_book_ms=2000,
)


def order(**kw):
    base = dict(
        venue="binance",
        symbol="BTCUSDT",
        side=1,
        size=1.0,
        price=100.0,
        mid=100.0,
        book_state="LIVE",
        book_age_ms=10.0,
        position_after_quote=100.0,
        gross_after_quote=100.0,
        equity_quote=10_000.0,
        ts_ns=S,
    )
    base.update(kw)
    return OrderCheck(**base)


@pytest.mark.parametrize(
    ("field", "at", "beyond", "reason"),
    [
        ("size", 5.0, 5.01, "max_order_notional"),
        ("position_after_quote", 600.0, 600.01, "symbol_notional_cap"),
        ("gross_after_quote", 1000.0, 1000.01, "global_notional_cap"),
        ("book_age_ms", 2000.0, 2000.1, "book_stale"),
    ],
)
def test_each_limit_allows_at_and_blocks_beyond(field, at, beyond, reason):
    assert not RiskGuards(LIMITS).check(order(**{field: at})).blocked
    d = RiskGuards(LIMITS).check(order(**{field: beyond}))
    assert d.blocked and d.reason == reason


def test_collar_book_state_and_kill_switch():
    g = RiskGuards(LIMITS)
    assert not g.check(order(price=100.5)).blocked  # exactly 50 bps
    assert g.check(order(price=100.51)).reason == "price_collar"
    assert g.check(order(book_state="SYNCING")).reason == "book_not_live:SYNCING"
    g.kill_switch = True
    assert g.check(order()).reason == "kill_switch"


def test_throttle_counts_orders_in_event_time():
    g = RiskGuards(LIMITS)
    for i in range(3):
        assert not g.check(order(ts_ns=i * S)).blocked
    assert g.check(order(ts_ns=3 * S)).reason == "orders_per_min"
    assert not g.check(order(ts_ns=61 * S)).blocked  # the first order left the minute
    assert g.state().ordersLastMin["BTCUSDT"] == 2  # (1 s, 61 s]: the orders at 2 s and 61 s


def test_drawdown_breaker_trips_and_resets_on_time():
    g = RiskGuards(LIMITS)
    assert not g.check(order(equity_quote=1000.0, ts_ns=0)).blocked
    assert not g.check(order(equity_quote=900.0, ts_ns=1 * S)).blocked  # exactly 100 down
    assert g.check(order(equity_quote=899.0, ts_ns=2 * S)).reason == "drawdown_breaker"
    assert g.check(order(equity_quote=950.0, ts_ns=61 * S)).reason == "drawdown_breaker"
    assert not g.check(order(equity_quote=950.0, ts_ns=62 * S)).blocked  # reset 60 s after tripping
    assert g.state().breaker["hwm"] == 950.0


def test_budgeter_grants_to_the_limit_defers_denies_and_refills():
    b = Budgeter([("binance", 100, 60.0, 0.0), ("mirror", 100, 60.0, 0.5), ("pricey", 100, 60.0, 2.0)])
    t0 = 10 * S
    assert b.grant(GrantRequest("binance", 60), t0).decision == "grant"
    assert b.grant(GrantRequest("binance", 40), t0).decision == "grant"  # exactly at the limit
    g = b.grant(GrantRequest("binance", 1), t0)
    assert g.decision == "defer" and g.retryAfterMs == 50_001
    assert b.grant(GrantRequest("binance", 101), t0).decision == "deny"
    alt = b.grant(GrantRequest("binance", 10, alternatives=["pricey", "mirror"]), t0)
    assert (alt.decision, alt.provider) == ("grant", "mirror")  # the cheapest viable source
    assert b.grant(GrantRequest("binance", 100), 60 * S).decision == "grant"  # new window
    st = {p.provider: p for p in b.status(60 * S).providers}
    assert st["binance"].rateRemaining == 0 and st["binance"].calls == 3 and st["mirror"].cost == 0.5
    assert b.grant(GrantRequest("nope", 1), t0).decision == "deny"


def test_low_priority_cannot_use_the_reserve():
    b = Budgeter([("binance", 100, 60.0, 0.0)], reserve_fraction=0.2)
    assert b.grant(GrantRequest("binance", 80, priority="low"), 0).decision == "grant"
    assert b.grant(GrantRequest("binance", 1, priority="low"), 0).decision == "defer"
    assert b.grant(GrantRequest("binance", 20, priority="high"), 0).decision == "grant"
    assert b.grant(GrantRequest("binance", 1, priority="urgent"), 0).decision == "deny"
