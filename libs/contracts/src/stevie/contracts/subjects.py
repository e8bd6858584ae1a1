"""The only place subject strings are built.

Form: ``{root}.{domain}.{kind}.{venue}.{symbol}`` (e.g. ``stevie.md.book.binance.BTCUSDT``).
Tokens are sanitised (anything outside ``[A-Za-z0-9_-]`` becomes ``_``); the NATS wildcards
``*`` and ``>`` pass through as whole tokens so subscribers can build patterns.
``root`` is a setting so tests can isolate themselves.
"""

from __future__ import annotations

import re

_BAD = re.compile(r"[^A-Za-z0-9_-]")
ANY = "*"


def token(value: str) -> str:
    """Sanitise one subject token. Raises ValueError on an empty token."""
    if value in ("*", ">"):
        return value
    if not value:
        raise ValueError("empty subject token")
    return _BAD.sub("_", value)


def _join(root: str, *parts: str) -> str:
    return ".".join([*(token(r) for r in root.split(".")), *(token(p) for p in parts)])


def md_book(root: str, venue: str, symbol: str) -> str:
    """Top-k book of ``venue``/``symbol`` (BookTopK)."""
    return _join(root, "md", "book", venue, symbol)


def md_status(root: str, venue: str, symbol: str) -> str:
    """Book state changes (BookStatus)."""
    return _join(root, "md", "status", venue, symbol)


def md_trade(root: str, venue: str, symbol: str) -> str:
    """Trades (Trade)."""
    return _join(root, "md", "trade", venue, symbol)


def md_bar(root: str, venue: str, symbol: str) -> str:
    """1-minute bars built from trades (Bar)."""
    return _join(root, "md", "bar", venue, symbol)


def feat_micro(root: str, venue: str, symbol: str) -> str:
    """Microstructure features (MicroFeatures)."""
    return _join(root, "feat", "micro", venue, symbol)


def audit(root: str, venue: str, symbol: str) -> str:
    """Decision audits (Audit), on the durable JetStream stream."""
    return _join(root, "audit", "decision", venue, symbol)


def exec_record(root: str, venue: str, symbol: str) -> str:
    """Execution records (ExecutionRecord), on the durable JetStream stream."""
    return _join(root, "exec", "record", venue, symbol)


def durable_patterns(root: str) -> list[str]:
    """Subjects bound to the durable events stream."""
    return [_join(root, "audit", ">"), _join(root, "exec", ">")]


def heartbeat(root: str, service: str) -> str:
    """Service heartbeats (Heartbeat)."""
    return _join(root, "svc", "heartbeat", service)


def dlq(root: str, service: str) -> str:
    """Dead letters of ``service``: raw payloads that failed to decode."""
    return _join(root, "dlq", service)


def inbox_prefix(service: str) -> str:
    """The reply-subject prefix of ``service``'s NATS connection (``_INBOX_<service>``, outside
    the root: NATS inboxes); its user may read replies there only (``nats_perms``)."""
    return f"_INBOX_{service}"


def rpc(root: str, service: str, method: str) -> str:
    """Request/reply endpoint ``method`` of ``service`` (queue group = the service name)."""
    return _join(root, "rpc", service, method)


def flags(root: str) -> str:
    """Feature-flag values pushed by the control service on every change (FlagsUpdate)."""
    return _join(root, "ctl", "flags")


def events_context(root: str, symbol: str) -> str:
    """Projected event embeddings naming ``symbol`` (EventContext), for the router context."""
    return _join(root, "events", "ctx", symbol)


def model_current(root: str) -> str:
    """The router model made current by a promote or rollback (ModelChange), for live reload."""
    return _join(root, "evidence", "model", "current")


def nudges(root: str) -> str:
    """Calibration nudges applied by the evidence service (NudgesApplied): router prior scale
    and sizing cap."""
    return _join(root, "evidence", "nudges")


def regime(root: str, venue: str, symbol: str) -> str:
    """Regime state of ``venue``/``symbol`` after each 1-minute bar (RegimeState)."""
    return _join(root, "adaptive", "regime", venue, symbol)


def gating(root: str) -> str:
    """Features disabled by the scheduled gating evaluation (GatingState)."""
    return _join(root, "adaptive", "gating")


def baseline_guard(root: str) -> str:
    """Baseline-challenger guard from the evidence service (BaselineGuard), for the router."""
    return _join(root, "evidence", "baseline")


def deploy_share(root: str) -> str:
    """Blue/green cutover: green's share of decisions, from control (DeployShare)."""
    return _join(root, "deploy", "share")


def deploy_stack(root: str, colour: str) -> str:
    """Blue/green cutover: a router stack announcing its model (RouterStack)."""
    return _join(root, "deploy", "stack", colour)


def deploy_slo(root: str, colour: str) -> str:
    """Blue/green cutover: SLO samples of a router stack measured by its caller (StackSlo)."""
    return _join(root, "deploy", "slo", colour)


def venue_scoring(root: str) -> str:
    """The venues service's scoring inputs besides the books (VenueScoring), every tick."""
    return _join(root, "venues", "scoring")


def all_subjects(root: str) -> dict[str, str]:
    """Every subject pattern, for ``stevie subjects``."""
    return {
        "book top-k": md_book(root, ANY, ANY),
        "book status": md_status(root, ANY, ANY),
        "trades": md_trade(root, ANY, ANY),
        "1m bars": md_bar(root, ANY, ANY),
        "microstructure features": feat_micro(root, ANY, ANY),
        "audits (durable)": audit(root, ANY, ANY),
        "execution records (durable)": exec_record(root, ANY, ANY),
        "heartbeats": heartbeat(root, ANY),
        "dead letters": dlq(root, ANY),
        "rpc endpoints": rpc(root, ANY, ANY),
        "current router model": model_current(root),
        "calibration nudges": nudges(root),
        "baseline-challenger guard": baseline_guard(root),
        "feature flags": flags(root),
        "event context": events_context(root, ANY),
        "regime state": regime(root, ANY, ANY),
        "feature gating": gating(root),
        "deploy share": deploy_share(root),
        "router stacks": deploy_stack(root, ANY),
        "router stack SLOs": deploy_slo(root, ANY),
        "venue scoring inputs": venue_scoring(root),
    }
