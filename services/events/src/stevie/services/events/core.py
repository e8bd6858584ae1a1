"""events core (pure): validation, summaries, content ids, and the per-symbol event context.

No I/O and no clock: the shell passes ``now_ns`` (the replay clock: the newest event time seen
on the book stream, see the shell) and an ``Embedder``.

Summaries: an event is embedded as its title plus the first sentence of its body (split at
the first ``.``, ``!`` or ``?`` followed by a space or the end). This is a rule, not a model:
no LLM is called, and long bodies are never sent anywhere.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from stevie.contracts.events import EventIn, EventPoint
from stevie.quant.events import EventDims, Projection, latest_event_dims

MS_NS = 1_000_000
MINUTE_NS = 60_000_000_000
MAX_TITLE = 300
MAX_BODY = 20_000
MAX_SYMBOLS = 20
MIN_TS_NS = 946_684_800_000_000_000  # 2000-01-01: an earlier ts is taken as a unit mistake
_SENTENCE = re.compile(r"(?<=[.!?])(\s|$)")
_SYMBOL = re.compile(r"^[A-Z0-9_-]{2,30}$")


class TooManyEvents(ValueError):
    """More events in one request than the service accepts (→ 413)."""


@dataclass(frozen=True)
class Prepared:
    """A validated event: content id, time (ns), the text that is embedded."""

    id: str
    ts_ns: int
    title: str
    summary: str
    source: str
    symbols: tuple[str, ...]
    kind: str


def parse_ts(ts: int | str) -> int:
    """ms since the epoch (int) or ISO-8601 with a zone → ns. ValueError otherwise."""
    if isinstance(ts, int):
        return ts * MS_NS
    try:
        dt = datetime.fromisoformat(ts.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"ts {ts!r} is neither ms since the epoch nor ISO-8601") from exc
    if dt.tzinfo is None:
        raise ValueError(f"ts {ts!r} has no time zone (add Z for UTC)")
    return int(dt.timestamp() * 1e6) * 1000


def first_sentence(body: str) -> str:
    """The body's first sentence (whole body when it has no sentence end), whitespace folded."""
    text = " ".join(body.split())
    m = _SENTENCE.search(text)
    return text[: m.start()] if m else text


def summarise(title: str, body: str) -> str:
    """title + first sentence of the body (the text that is embedded)."""
    s = first_sentence(body)[:500]
    t = " ".join(title.split())
    return f"{t}. {s}" if s else t


def event_id(ts_ns: int, source: str, title: str) -> str:
    """Content id: the same (time, source, title) is the same event (re-posts are no-ops)."""
    h = hashlib.sha256(f"{ts_ns}\x1f{source.strip()}\x1f{' '.join(title.split())}".encode()).hexdigest()
    return f"ev_{h[:16]}"


def prepare(events: list[EventIn], now_ns: int, max_batch: int) -> list[Prepared]:
    """Validate and summarise. Raises TooManyEvents above ``max_batch``; ValueError naming the
    event index for an empty batch, an empty title or source, over-long fields, a bad symbol,
    or a ``ts`` after ``now_ns`` (an event from the future of the clock is look-ahead)."""
    if not events:
        raise ValueError("events is empty")
    if len(events) > max_batch:
        raise TooManyEvents(f"{len(events)} events in one request; at most {max_batch} (send them in chunks)")
    out = []
    for i, e in enumerate(events):
        where = f"events[{i}]"
        if not e.title.strip():
            raise ValueError(f"{where}.title is empty")
        if not e.source.strip():
            raise ValueError(f"{where}.source is empty")
        if len(e.title) > MAX_TITLE:
            raise ValueError(f"{where}.title has {len(e.title)} characters; at most {MAX_TITLE}")
        if len(e.body) > MAX_BODY:
            raise ValueError(f"{where}.body has {len(e.body)} characters; at most {MAX_BODY}")
        if len(e.symbols) > MAX_SYMBOLS:
            raise ValueError(f"{where}.symbols has {len(e.symbols)} entries; at most {MAX_SYMBOLS}")
        syms = tuple(dict.fromkeys(s.strip().upper() for s in e.symbols))
        for s in syms:
            if not _SYMBOL.match(s):
                raise ValueError(f"{where}.symbols: {s!r} is not a symbol like BTCUSDT")
        try:
            ts_ns = parse_ts(e.ts)
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from exc
        if ts_ns < MIN_TS_NS:
            raise ValueError(f"{where}.ts {e.ts!r} is before 2000-01-01 (ms since the epoch expected)")
        if ts_ns > now_ns:
            raise ValueError(
                f"{where}.ts {e.ts!r} is {(ts_ns - now_ns) / MINUTE_NS:.1f} min after the clock "
                f"({datetime.fromtimestamp(now_ns / 1e9).astimezone().isoformat()}): events from the future are refused"
            )
        out.append(
            Prepared(
                event_id(ts_ns, e.source, e.title),
                ts_ns,
                e.title.strip(),
                summarise(e.title, e.body),
                e.source.strip(),
                syms,
                e.kind.strip(),
            )
        )
    return out


def context_dims(points: list[EventPoint], now_ns: int, k: int, half_life_min: float) -> EventDims:
    """``stevie.quant.events.latest_event_dims`` over a symbol's EventContext points."""
    return latest_event_dims([p.event_ts_ns for p in points], [p.dims for p in points], now_ns, k, half_life_min)


class SymbolEvents:
    """The newest ``keep`` projected events per symbol (what EventContext carries)."""

    def __init__(self, projection: Projection, keep: int = 8) -> None:
        self.projection = projection
        self.keep = keep
        self.by_symbol: dict[str, deque[EventPoint]] = {}

    def add(self, event_id: str, ts_ns: int, symbols: tuple[str, ...], vector: np.ndarray) -> list[str]:
        """Record one embedded event; returns the symbols whose context changed."""
        z = [round(float(x), 6) for x in self.projection.transform(vector)]
        point = EventPoint(event_id, ts_ns, z)
        for s in symbols:
            q = self.by_symbol.setdefault(s, deque(maxlen=self.keep))
            if any(p.event_id == event_id for p in q):
                continue
            q.append(point)
            ordered = sorted(q, key=lambda p: p.event_ts_ns)
            q.clear()
            q.extend(ordered[-self.keep :])
        return list(symbols)

    def points(self, symbol: str) -> list[EventPoint]:
        return list(self.by_symbol.get(symbol, ()))
