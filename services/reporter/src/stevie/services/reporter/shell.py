"""reporter shell: durable consumer (explicit ack) → idempotent PostgreSQL writes; answers
``reporter.audit_latest``. A database error naks the event, so it is written later, once."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import stamina
from prometheus_client import Counter

from stevie.bus import Msg
from stevie.contracts import subjects
from stevie.contracts.featstore import OhlcvBars, OhlcvRequest
from stevie.contracts.rpc import Audit, AuditLatestRequest, AuditList
from stevie.quant.errors import QuantInputError
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.reporter.core import decode_event
from stevie.services.reporter.settings import ReporterSettings
from stevie.store import connect_pool, insert_audit, insert_execution, latest_audits, migrate
from stevie.store.ohlcv import check_request, get_ohlcv, stored_symbols

STREAM = "STEVIE_EVENTS"


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, ReporterSettings)
    retry = stamina.retry(on=(OSError, asyncpg.PostgresError), attempts=20, timeout=30.0)
    await retry(migrate)(s.database_url)
    pool = await retry(connect_pool)(s.database_url)
    written = Counter("reporter_written_total", "Events written", ["kind"], registry=ctx.registry)
    dupes = Counter("reporter_duplicates_total", "Redelivered events already stored", registry=ctx.registry)
    dlq = Counter("reporter_dlq_total", "Undecodable durable events", registry=ctx.registry)

    async def handle(msg: Msg) -> bool:
        try:
            event = decode_event(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await ctx.dead_letter(msg, exc, dlq)
            return True
        try:
            new = await (insert_audit(pool, event) if isinstance(event, Audit) else insert_execution(pool, event))
        except (OSError, asyncpg.PostgresError) as exc:
            ctx.log.warning("write_failed", error=str(exc)[:200])
            return False
        if new:
            written.labels(type(event).__name__).inc()
        else:
            dupes.inc()
        return True

    async def audit_latest(req: AuditLatestRequest) -> AuditList:
        if not 1 <= req.limit <= s.max_audit_limit:
            raise QuantInputError(f"limit must be in [1, {s.max_audit_limit}]")
        return AuditList(await latest_audits(pool, req.limit))

    async def ohlcv(req: OhlcvRequest) -> OhlcvBars:
        """``GET /api/market/ohlcv``: bars from PostgreSQL (``stevie.store.ohlcv``)."""
        if req.venue not in s.venues:
            raise QuantInputError(f"unknown venue {req.venue!r}; accepted: {', '.join(s.venues)}")
        check_request(req.interval, req.limit)
        known = set(s.symbols) | await stored_symbols(pool, req.venue)
        if req.symbol not in known:
            raise QuantInputError(f"unknown symbol {req.symbol!r}; accepted: {', '.join(sorted(known))}")
        return OhlcvBars(await get_ohlcv(pool, req.venue, req.symbol, req.interval, req.limit))

    await ctx.bus.ensure_stream(STREAM, subjects.durable_patterns(s.subject_root))
    await ctx.serve_rpc("audit_latest", AuditLatestRequest, audit_latest)
    await ctx.serve_rpc("ohlcv", OhlcvRequest, ohlcv)
    try:
        await asyncio.gather(
            *(
                ctx.bus.consume_durable(STREAM, f"{s.durable}-{i}", pattern, handle)
                for i, pattern in enumerate(subjects.durable_patterns(s.subject_root))
            )
        )
    finally:
        # bounded: a stop never waits on a database that is away (then the sockets are cut)
        try:
            await asyncio.wait_for(pool.close(), 0.3)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            pool.terminate()


SPEC = ServiceSpec("reporter", ReporterSettings, main, nice=5)  # background: yields the cores to the decision path
