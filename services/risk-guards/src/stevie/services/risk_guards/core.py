"""risk-guards core (pure): every guard blocks exactly beyond its limit.

Order of checks (the first failure is the reason): kill switch → drawdown breaker →
book LIVE and fresh → max order notional → price collar vs mid → per-symbol notional cap →
global notional cap → orders/min throttle. The drawdown breaker trips when equity falls more
than ``max_drawdown_quote`` below its high-water mark and resets ``breaker_reset_s`` later
(event time), with the high-water mark re-based to the equity at reset.
"""

from __future__ import annotations

from collections import Counter, deque

from stevie.contracts.rpc import GuardDecision, GuardsState, OrderCheck
from stevie.services.risk_guards.settings import RiskGuardsSettings

MINUTE_NS = 60_000_000_000


class RiskGuards:
    def __init__(self, limits: RiskGuardsSettings) -> None:
        self.l = limits
        self.kill_switch = False
        self.hwm: float | None = None
        self.tripped_until_ns: int | None = None
        self.last_equity: float | None = None
        self.orders: dict[str, deque[int]] = {}
        self.exposure: dict[str, float] = {}
        self.gross = 0.0
        self.blocked: Counter[str] = Counter()
        self.last_ts_ns = 0

    def _equity(self, equity: float, now_ns: int) -> None:
        self.last_equity = equity
        if self.tripped_until_ns is not None and now_ns >= self.tripped_until_ns:
            self.tripped_until_ns, self.hwm = None, equity
        self.hwm = equity if self.hwm is None else max(self.hwm, equity)
        if self.tripped_until_ns is None and self.hwm - equity > self.l.max_drawdown_quote:
            self.tripped_until_ns = now_ns + int(self.l.breaker_reset_s * 1e9)

    def _reason(self, o: OrderCheck, now_ns: int) -> str:
        l = self.l  # noqa: E741
        notional = abs(o.size * o.price)
        if self.kill_switch:
            return "kill_switch"
        if self.tripped_until_ns is not None:
            return "drawdown_breaker"
        if o.book_state != "LIVE":
            return f"book_not_live:{o.book_state}"
        if o.book_age_ms > l.stale_book_ms:
            return "book_stale"
        if o.size <= 0 or o.side not in (-1, 1) or o.price <= 0 or o.mid <= 0:
            return "invalid_order"
        if notional > l.max_order_notional_quote:
            return "max_order_notional"
        if abs(o.price - o.mid) / o.mid * 1e4 > l.collar_bps:
            return "price_collar"
        if abs(o.position_after_quote) > l.symbol_notional_cap_quote:
            return "symbol_notional_cap"
        if o.gross_after_quote > l.global_notional_cap_quote:
            return "global_notional_cap"
        window = self.orders.setdefault(o.symbol, deque())
        while window and window[0] <= now_ns - MINUTE_NS:
            window.popleft()
        if len(window) >= l.orders_per_min:
            return "orders_per_min"
        return ""

    def check(self, o: OrderCheck) -> GuardDecision:
        """Decide on one order at its event time ``o.ts_ns``; an allowed order is counted
        against the throttle and its exposure recorded."""
        self.last_ts_ns = max(self.last_ts_ns, o.ts_ns)
        self._equity(o.equity_quote, o.ts_ns)
        reason = self._reason(o, o.ts_ns)
        if reason:
            self.blocked[reason.split(":")[0]] += 1
            return GuardDecision(True, reason)
        self.orders[o.symbol].append(o.ts_ns)
        self.exposure[o.symbol] = o.position_after_quote
        self.gross = o.gross_after_quote
        return GuardDecision(False, "")

    def state(self) -> GuardsState:
        """Limits, usage and breaker as of the last checked order (event time)."""
        l = self.l  # noqa: E741
        now_ns = self.last_ts_ns
        return GuardsState(
            limits={
                "globalNotionalCap": l.global_notional_cap_quote,
                "symbolNotionalCap": l.symbol_notional_cap_quote,
                "maxOrderNotional": l.max_order_notional_quote,
                "ordersPerMin": l.orders_per_min,
                "collarBps": l.collar_bps,
                "maxDrawdown": l.max_drawdown_quote,
                "breakerResetS": l.breaker_reset_s,
                "staleBookMs": l.stale_book_ms,
            },
            usage={"gross": self.gross, **{f"position:{s}": v for s, v in self.exposure.items()}},
            ordersLastMin={s: sum(1 for t in w if t > now_ns - MINUTE_NS) for s, w in self.orders.items()},
            breaker={
                "tripped": self.tripped_until_ns is not None,
                "hwm": self.hwm,
                "equity": self.last_equity,
                "resetAtNs": float(self.tripped_until_ns) if self.tripped_until_ns else None,
            },
            killSwitch=self.kill_switch,
            blocked=dict(self.blocked),
        )
