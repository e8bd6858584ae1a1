"""Request/reply contracts between the gateway and the services (JSON field names are the
HTTP contract of MISSION.md, hence camelCase where it says so).

Every reply is either the typed answer or an ``RpcError`` (tagged union), so a caller always
decodes to a Struct and maps ``RpcError.status`` to an HTTP status.
"""

from __future__ import annotations

import msgspec


class RpcError(msgspec.Struct, frozen=True, tag=True):
    """A request the service could not answer: ``status`` is the HTTP status to return."""

    status: int
    error: str
    detail: str


class VolForecastRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbol: str
    h: int = 60


class VolForecast(msgspec.Struct, frozen=True, tag=True):
    """σ of the log return over ``h`` minutes from each model (not annualised)."""

    symbol: str
    h: int
    sigmaHAR: float
    sigmaGARCH: float
    bars: int
    lastBarTs: int


class ChainPoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One option. Moneyness form: ``k`` (= K/F), ``tenor`` ('7d'), ``type``, ``iv`` (decimal).
    Full-chain form (Deribit-like): ``strike``, ``expiryMs``, ``tsMs``, ``underlying``
    (forward, quote units), ``type``, and ``iv`` (decimal) or ``markIv`` (percent)."""

    type: str
    iv: float | None = None
    k: float | None = None
    tenor: str | None = None
    strike: float | None = None
    expiryMs: int | None = None
    tsMs: int | None = None
    underlying: float | None = None
    markIv: float | None = None


class OptionsChainRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbol: str
    chain: list[ChainPoint]


class SmileRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbol: str


class TenorSmileView(msgspec.Struct, frozen=True):
    tenorYears: float
    atm_iv: float | None
    rr25: float | None
    fly25: float | None
    reason: str


class Smile(msgspec.Struct, frozen=True, tag=True):
    """Smile metrics of the last stored chain (IV decimals); ``reasons`` explains each null."""

    symbol: str
    rr25: float | None
    fly25: float | None
    atm_iv: float | None
    iv_term_slope: float | None
    skew_z: float | None
    tenors: list[TenorSmileView]
    reasons: dict[str, str]
    points: int
    history: int


class PortfolioRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    symbols: list[str]
    cvarBudget: float
    volTarget: float | None = None
    alpha: float = 0.95


class PortfolioResult(msgspec.Struct, frozen=True, tag=True):
    """Weights (fraction of capital, rest in cash), per-symbol CVaR and Kelly-lite advisory,
    portfolio vol and CVaR — all per 1-minute period of the history used."""

    symbols: list[str]
    weights: dict[str, float]
    cvar: dict[str, float]
    kelly: dict[str, float]
    expectedReturn: float
    portfolioVol: float
    portfolioCvar: float
    bars: int
    status: str
