"""features shell: subscribe to books, trades and statuses; publish MicroFeatures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from prometheus_client import Counter

from stevie.bus import Msg
from stevie.contracts import BookStatus, BookTopK, Trade, decoder_for, encode, subjects
from stevie.quant.kernels import load as load_kernels
from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.features.core import Features
from stevie.services.features.settings import FeaturesSettings


async def main(ctx: ServiceContext) -> None:
    s = ctx.settings
    assert isinstance(s, FeaturesSettings)
    kernels = load_kernels(s.kernels)
    ctx.backend = kernels.BACKEND
    core = Features(s.obi_levels, int(s.window_s * 1e9), ctx.clock.now_ns, kernels)
    dlq = Counter("features_dlq_total", "Undecodable messages", ["kind"], registry=ctx.registry)
    published = Counter("features_published_total", "Feature vectors published", ["venue"], registry=ctx.registry)
    root = s.subject_root

    async def on_book(b: BookTopK) -> None:
        out = core.on_book(b)
        if out is not None:
            await ctx.bus.publish(subjects.feat_micro(root, out.venue, out.symbol), encode(out))
            published.labels(out.venue).inc()

    async def trade(t: Trade) -> None:
        core.on_trade(t)

    async def status(st: BookStatus) -> None:
        core.on_status(st)

    def handler(tp: type, kind: str, fn: Callable[[Any], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
        dec: msgspec.json.Decoder[Any] = decoder_for(tp)

        async def handle(msg: Msg) -> None:
            try:
                item = dec.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await ctx.dead_letter(msg, exc, dlq.labels(kind))
                return
            await fn(item)

        return handle

    await ctx.bus.subscribe(subjects.md_book(root, "*", "*"), handler(BookTopK, "book", on_book))
    await ctx.bus.subscribe(subjects.md_trade(root, "*", "*"), handler(Trade, "trade", trade))
    await ctx.bus.subscribe(subjects.md_status(root, "*", "*"), handler(BookStatus, "status", status))
    await asyncio.Event().wait()


SPEC = ServiceSpec("features", FeaturesSettings, main)
