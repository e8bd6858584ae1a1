"""gateway core (pure): the latest view of books, statuses and heartbeats, and the
responses built from it. Times are passed in (``now_ns``, wall clock, for liveness only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from stevie.contracts import BookState, BookStatus, BookTopK, Heartbeat, MicroFeatures
from stevie.services.gateway.api import (
    DbHealth,
    ExecHealth,
    HealthResponse,
    L2Response,
    MicrostructureResponse,
    NatsHealth,
    RouterHealth,
    ServiceHealth,
    StreamStatusView,
    WsHealth,
    WsStatusResponse,
)

MS = 1_000_000


class NotFound(LookupError):
    """Unknown venue or symbol."""


@dataclass
class _Book:
    top: BookTopK | None = None
    state: BookState = BookState.SYNCING
    seq: int = 0
    ts_event_ns: int = 0
    received_ns: int = 0


@dataclass
class View:
    """What the gateway knows. ``known`` = (venue, symbol) pairs it serves."""

    known: set[tuple[str, str]]
    stale_ns: int
    liveness_ns: int
    books: dict[tuple[str, str], _Book] = field(default_factory=dict)
    beats: dict[str, tuple[Heartbeat, int]] = field(default_factory=dict)
    micro: dict[tuple[str, str], MicroFeatures] = field(default_factory=dict)

    def on_micro(self, f: MicroFeatures, now_ns: int) -> None:
        self.micro[(f.venue, f.symbol)] = f

    def microstructure(self, venue: str, symbol: str) -> MicrostructureResponse:
        """Latest features while the book is LIVE. Raises NotFound for an unknown book."""
        if (venue, symbol) not in self.known:
            raise NotFound(f"{venue}/{symbol}")
        f = self.micro.get((venue, symbol))
        book = self.books.get((venue, symbol))
        if f is None or book is None or book.state is not BookState.LIVE:
            return MicrostructureResponse(symbol, venue, None, None, None, None, None, None)
        return MicrostructureResponse(
            symbol, venue, f.obi, f.ti, f.spread_bps, f.micro_vol_bps, f.cancel_rate, f.ts_event_ns // MS
        )

    def on_book(self, top: BookTopK, now_ns: int) -> None:
        b = self.books.setdefault((top.venue, top.symbol), _Book())
        b.top, b.state, b.seq, b.ts_event_ns, b.received_ns = top, top.state, top.seq, top.ts_event_ns, now_ns

    def on_status(self, st: BookStatus, now_ns: int) -> None:
        b = self.books.setdefault((st.venue, st.symbol), _Book())
        b.state, b.received_ns = st.state, now_ns
        if st.state is not BookState.LIVE:
            b.top = None
            b.seq, b.ts_event_ns = st.seq, st.ts_event_ns

    def on_heartbeat(self, hb: Heartbeat, now_ns: int) -> None:
        self.beats[hb.service] = (hb, now_ns)

    def l2(self, venue: str, symbol: str, depth: int, now_ns: int) -> L2Response:
        """The served book. Raises NotFound. Levels only when LIVE and recently updated."""
        if (venue, symbol) not in self.known:
            raise NotFound(f"{venue}/{symbol}")
        b = self.books.get((venue, symbol), _Book())
        state = b.state
        if state is BookState.LIVE and now_ns - b.received_ns > self.stale_ns:
            state = BookState.STALE
        if state is BookState.LIVE and b.top is not None:
            return L2Response(
                venue, symbol, b.top.bids[:depth], b.top.asks[:depth], b.top.seq, b.top.ts_event_ns // MS, state.value
            )
        return L2Response(venue, symbol, [], [], b.seq, b.ts_event_ns // MS, state.value)

    def service_health(self, expected: list[str], now_ns: int) -> dict[str, ServiceHealth]:
        out = {}
        for name in sorted(set(expected) | set(self.beats)):
            beat = self.beats.get(name)
            if beat is None:
                out[name] = ServiceHealth(False, None, None, "")
                continue
            hb, at = beat
            ago = now_ns - at
            out[name] = ServiceHealth(ago <= self.liveness_ns, round(ago / MS, 1), hb.pid, hb.backend)
        return out

    def streams(self, now_ns: int) -> WsStatusResponse:
        views = []
        for hb, at in self.beats.values():
            if now_ns - at > self.liveness_ns:
                continue
            for s in hb.streams:
                last = datetime.fromtimestamp(s.last_beat_ns / 1e9, tz=UTC).isoformat() if s.last_beat_ns else None
                views.append(StreamStatusView(s.venue, s.connected, s.backlog_size, last))
        return WsStatusResponse(sorted(views, key=lambda v: v.venue))

    def gauge(self, service: str, name: str) -> float | None:
        """A sample value from ``service``'s last heartbeat metrics (None if absent)."""
        beat = self.beats.get(service)
        if beat is None:
            return None
        for line in beat[0].metrics_text.splitlines():
            if line.startswith(name + " "):
                try:
                    return float(line.split()[1])
                except (IndexError, ValueError):
                    return None
        return None

    def metrics_texts(self, now_ns: int, exclude: str = "") -> list[str]:
        """Prometheus texts of the live services (except ``exclude``, e.g. the gateway itself)."""
        return [
            hb.metrics_text
            for name, (hb, at) in self.beats.items()
            if name != exclude and now_ns - at <= self.liveness_ns
        ]


def health(
    services: dict[str, ServiceHealth],
    db_latency_ms: float | None,
    db_error: str,
    nats_connected: bool,
    ws_clients: int,
    db_expected: bool,
    decisions_last_min: int | None = None,
    blocked_last_min: int | None = None,
    last_ohlcv_ms: int | None = None,
    execution_router: bool | None = None,
) -> HealthResponse:
    """Overall status: ``ok`` when every service is up, NATS is connected and (if a database
    is configured) it answered; else ``degraded``."""
    ok = all(s.up for s in services.values()) and nats_connected and (db_latency_ms is not None or not db_expected)
    return HealthResponse(
        "ok" if ok else "degraded",
        services,
        DbHealth(db_latency_ms, db_error),
        NatsHealth(nats_connected),
        WsHealth(ws_clients),
        RouterHealth(decisions_last_min),
        ExecHealth(blocked_last_min, execution_router),
        last_ohlcv_ms,
    )
