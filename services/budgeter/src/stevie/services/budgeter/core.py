"""budgeter core (pure): fixed-window request-weight budgets per provider (the way Binance
counts ``X-MBX-USED-WEIGHT-1M``), with defer / deny / cheapest-viable fallback.

A ``low`` priority request may only use the budget above a reserve
(``reserve_fraction`` of the limit) kept for ``high`` priority requests.

grant: the weight fits the current window → grant. It would fit an empty window → defer
until the window resets (or grant on the cheapest alternative that has room). It never fits
(weight > limit) or the provider is unknown → deny.
"""

from __future__ import annotations

from dataclasses import dataclass

from stevie.contracts.rpc import BudgetStatus, Grant, GrantRequest, ProviderBudget


@dataclass
class Budget:
    name: str
    limit: int
    window_ns: int
    cost_per_call: float
    window_start_ns: int = 0
    used: int = 0
    calls: int = 0
    cost: float = 0.0
    deferred: int = 0
    denied: int = 0

    def roll(self, now_ns: int) -> None:
        start = now_ns - now_ns % self.window_ns
        if start != self.window_start_ns:
            self.window_start_ns, self.used = start, 0

    def remaining(self, now_ns: int) -> int:
        self.roll(now_ns)
        return self.limit - self.used

    def spend(self, weight: int) -> None:
        self.used += weight
        self.calls += 1
        self.cost += self.cost_per_call


class Budgeter:
    def __init__(self, providers: list[tuple[str, int, float, float]], reserve_fraction: float = 0.2) -> None:
        self.budgets = {n: Budget(n, limit, int(w * 1e9), c) for n, limit, w, c in providers}
        self.reserve_fraction = reserve_fraction

    def _room(self, b: Budget, now_ns: int, priority: str) -> int:
        reserve = int(b.limit * self.reserve_fraction) if priority == "low" else 0
        return b.remaining(now_ns) - reserve

    def grant(self, req: GrantRequest, now_ns: int) -> Grant:
        b = self.budgets.get(req.provider)
        if b is None:
            return Grant("deny", req.provider, reason=f"unknown provider {req.provider!r}")
        if req.weight < 1 or req.weight > b.limit:
            b.denied += 1
            return Grant("deny", b.name, reason=f"weight {req.weight} outside [1, {b.limit}]")
        if req.priority not in ("high", "low"):
            return Grant("deny", b.name, reason=f"priority must be 'high' or 'low', got {req.priority!r}")
        if self._room(b, now_ns, req.priority) >= req.weight:
            b.spend(req.weight)
            return Grant("grant", b.name)
        viable = [
            self.budgets[a]
            for a in req.alternatives
            if a in self.budgets and self.budgets[a].remaining(now_ns) >= req.weight
        ]
        if viable:
            alt = min(viable, key=lambda x: x.cost_per_call)
            alt.spend(req.weight)
            return Grant("grant", alt.name, reason=f"fallback: {b.name} exhausted")
        b.deferred += 1
        retry_ms = (b.window_start_ns + b.window_ns - now_ns) // 1_000_000 + 1
        return Grant("defer", b.name, retryAfterMs=int(retry_ms), reason="window exhausted")

    def status(self, now_ns: int) -> BudgetStatus:
        out = []
        for b in self.budgets.values():
            b.roll(now_ns)
            out.append(
                ProviderBudget(
                    b.name,
                    b.calls,
                    b.used,
                    b.limit,
                    b.limit - b.used,
                    b.cost,
                    b.deferred,
                    b.denied,
                    (b.window_start_ns + b.window_ns) // 1_000_000,
                )
            )
        return BudgetStatus(out)
