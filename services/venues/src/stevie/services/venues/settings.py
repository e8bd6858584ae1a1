"""venues settings (``STEVIE_VENUES_*``)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from stevie.runtime.settings import CommonSettings, SettingsError

# Binance's published regular-user (VIP 0) rates, no BNB discount, in bps of notional:
# spot 0.1000 % maker / 0.1000 % taker (binance.com/en/fee/schedule), USDⓈ-M futures
# 0.0200 % maker / 0.0500 % taker (binance.com/en/fee/futureFee). Higher VIP tiers are set
# per venue entry (``taker_bps``/``maker_bps``).
_DEFAULT_VENUES = ["binance|spot|10|10", "binance-usdm|perp|5|2"]
_DEFAULT_REST = ["binance=http://127.0.0.1:5101", "binance-usdm=http://127.0.0.1:5102"]
_DEFAULT_WS = ["binance=ws://127.0.0.1:5101", "binance-usdm=ws://127.0.0.1:5102"]


@dataclass(frozen=True)
class VenueSpec:
    """One venue: ``name`` (also its budgeter provider), ``kind`` spot|perp, REST and
    WebSocket base URLs, taker/maker fees (bps)."""

    name: str
    kind: str
    rest_url: str
    ws_url: str
    taker_bps: float
    maker_bps: float

    @property
    def ping_path(self) -> str:
        """Binance's connectivity test endpoint of this market (weight 1)."""
        return "/fapi/v1/ping" if self.kind == "perp" else "/api/v3/ping"


def _urls(entries: list[str], what: str) -> dict[str, str]:
    out = {}
    for e in entries:
        name, sep, url = e.partition("=")
        if not sep or not name or not url:
            raise SettingsError(f"STEVIE_VENUES_{what} entry {e!r}: want name=url")
        out[name] = url.rstrip("/")
    return out


class VenuesSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """venues: ``name|kind|taker_bps|maker_bps`` entries (kind ``spot`` or ``perp``; a third
    venue is one more entry — it needs a book-maintainer feed and a budgeter provider of the
    same name). rest_urls / ws_urls: ``name=base_url`` per venue (``stevie up`` points them at
    the replay venue's ports). symbols: symbols scored on every venue.
    probe_interval_s: REST ping / WebSocket ping period per venue. latency_alpha: EWMA weight
    of a new round-trip sample. reliability_half_life_s: half-life (wall s) of the reliability
    EWMA; tick_s: its observation period. stale_s: a LIVE book without an update for this long
    counts as stale (not eligible, unhealthy). top_depth_bps: the ``topDepth`` band around the
    mid. failure_cost_bps: expected extra cost (bps) of an order that fails on a venue and must
    be redone (charged with probability 1 − reliability). shortfall_penalty_bps: charged, beyond
    the last displayed level, on the part of an order the displayed book cannot fill.
    micro_window_s: window of the features' micro-vol (σ per √s = micro_vol/√window).
    reference_notional_quote: order notional of the ``venue_score`` gauge. markout_s: mark-out
    horizon of the venue report's win rate."""

    venues: list[str] = msgspec.field(default_factory=lambda: list(_DEFAULT_VENUES))
    rest_urls: list[str] = msgspec.field(default_factory=lambda: list(_DEFAULT_REST))
    ws_urls: list[str] = msgspec.field(default_factory=lambda: list(_DEFAULT_WS))
    symbols: list[str] = msgspec.field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    probe_interval_s: float = 5.0
    latency_alpha: float = 0.2
    reliability_half_life_s: float = 60.0
    tick_s: float = 1.0
    stale_s: float = 5.0
    top_depth_bps: float = 10.0
    failure_cost_bps: float = 20.0
    shortfall_penalty_bps: float = 50.0
    micro_window_s: float = 5.0
    reference_notional_quote: float = 1_000.0
    markout_s: float = 60.0
    http_timeout_s: float = 2.0

    def specs(self) -> list[VenueSpec]:
        """Parsed ``venues``. Raises SettingsError naming the bad entry."""
        rest, ws = _urls(self.rest_urls, "REST_URLS"), _urls(self.ws_urls, "WS_URLS")
        out = []
        for entry in self.venues:
            try:
                name, kind, taker, maker = entry.split("|")
                spec = VenueSpec(name, kind, rest.get(name, ""), ws.get(name, ""), float(taker), float(maker))
            except ValueError as exc:
                want = "want name|kind|taker_bps|maker_bps"
                raise SettingsError(f"STEVIE_VENUES_VENUES entry {entry!r}: {want}") from exc
            if not spec.rest_url or not spec.ws_url:
                raise SettingsError(f"venue {name!r} needs STEVIE_VENUES_REST_URLS and _WS_URLS entries")
            if kind not in ("spot", "perp") or spec.taker_bps < 0 or spec.maker_bps < 0 or not name:
                raise SettingsError(f"STEVIE_VENUES_VENUES entry {entry!r}: kind spot|perp, fees >= 0")
            out.append(spec)
        if len({v.name for v in out}) != len(out):
            raise SettingsError("STEVIE_VENUES_VENUES: venue names must be unique")
        return out

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.specs():
            raise SettingsError("STEVIE_VENUES_VENUES: at least one venue")
        if not 0 < self.latency_alpha <= 1:
            raise SettingsError("STEVIE_VENUES_LATENCY_ALPHA must be in (0, 1]")
        positive = (
            self.probe_interval_s,
            self.reliability_half_life_s,
            self.tick_s,
            self.stale_s,
            self.top_depth_bps,
            self.micro_window_s,
            self.reference_notional_quote,
            self.markout_s,
            self.http_timeout_s,
        )
        if min(positive) <= 0 or self.failure_cost_bps < 0 or self.shortfall_penalty_bps < 0:
            raise SettingsError("venues: intervals, bands and notionals must be > 0, costs >= 0")
