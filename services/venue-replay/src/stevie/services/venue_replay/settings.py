"""venue-replay settings (``STEVIE_VENUE_REPLAY_*``)."""

from __future__ import annotations

from stevie.runtime.settings import CommonSettings, SettingsError

WINDOWS = ("2024-08-08", "2024-07-18", "2023-04-04")


class VenueReplaySettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """data_dir: the ``data/samples`` folder. window: which capture window to replay (all
    captures of one window share one replay clock). speed: replay pacing factor (2 = twice
    as fast; event times are unchanged). loop: restart as a new session at the end,
    one day later in event time.
    spot_port / usdm_port: loopback ports of the ``binance`` / ``binance-usdm`` venues."""

    data_dir: str = "data/samples"
    window: str = "2024-08-08"
    speed: float = 1.0
    loop: bool = True
    host: str = "127.0.0.1"
    spot_port: int = 5101
    usdm_port: int = 5102
    ws_client_queue: int = 10_000
    chaos_hang_s: float = 15.0  # api_timeout: how long a REST answer hangs (clients time out at 10 s)
    cache_dir: str = ""  # prepared captures ('' = $XDG_CACHE_HOME or ~/.cache, /stevie/venue-replay)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window not in WINDOWS:
            raise SettingsError(f"STEVIE_VENUE_REPLAY_WINDOW must be one of {WINDOWS}, got {self.window!r}")
        if not 0 < self.speed <= 1000:
            raise SettingsError("STEVIE_VENUE_REPLAY_SPEED must be in (0, 1000]")
