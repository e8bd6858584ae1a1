"""Event (headline, macro release) contracts: ingestion, stored embeddings, and the per-symbol
event context the events service publishes for the router context (capability 18)."""

from __future__ import annotations

import msgspec


class EventIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One event as posted or loaded. ``ts``: event time, integer ms since the Unix epoch or an
    ISO-8601 string with a zone (``2025-05-07T18:00:00Z``). ``title`` non-empty (≤ 300 chars),
    ``body`` optional (only its first sentence is kept), ``source`` who published it,
    ``symbols`` the instruments it names (upper-cased), ``kind`` an optional class (``FOMC``,
    ``CPI``, ``headline``) used to group event studies."""

    ts: int | str
    title: str
    source: str
    body: str = ""
    symbols: list[str] = []
    kind: str = ""


class EventIngestRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    events: list[EventIn]


class EventIngestReply(msgspec.Struct, frozen=True, tag=True):
    """``ids``: one per posted event, in order (content ids: re-posting the same event is a
    no-op counted in ``duplicates``). ``model``/``dim``: the embedding model used."""

    ingested: int
    duplicates: int
    ids: list[str]
    model: str
    dim: int


class EmbeddingsRequest(msgspec.Struct, frozen=True, tag=True, forbid_unknown_fields=True):
    """``GET /api/events/embeddings?limit=&symbol=&full=1``: newest first; ``full=1`` gives all
    384 dims, else the first ``PREVIEW_DIMS``."""

    limit: int = 20
    symbol: str = ""
    full: int = 0


class EventEmbedding(msgspec.Struct, frozen=True):
    """A stored event: ``ts`` in ms, ``dim`` the full embedding size, ``vector`` (all dims or
    the first few), ``nearest`` ids of the most similar *earlier* events (cosine), most similar
    first, ``summary`` the embedded text (title + first sentence of the body)."""

    id: str
    ts: int
    title: str
    source: str
    symbols: list[str]
    dim: int
    vector: list[float]
    nearest: list[str]
    kind: str
    summary: str


class EventEmbeddings(msgspec.Struct, frozen=True, tag=True):
    embeddings: list[EventEmbedding]


class EventPoint(msgspec.Struct, frozen=True):
    """One event in a symbol's context: its time (ns) and its projected embedding."""

    event_id: str
    event_ts_ns: int
    dims: list[float]


class EventContext(msgspec.Struct, frozen=True, tag=True):
    """The newest events naming ``symbol`` (newest last, at most a few), projected by the
    events service's frozen PCA; the consumer picks the newest with ``event_ts_ns`` ≤ its own
    decision time. Published on ``subjects.events_context(root, symbol)`` at each ingest and
    re-published every few seconds."""

    symbol: str
    points: list[EventPoint]
    projection: str
    ts_event_ns: int
    ts_init_ns: int
