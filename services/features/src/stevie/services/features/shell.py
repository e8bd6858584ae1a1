"""features shell: subscribe to books, trades and statuses; publish MicroFeatures."""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

from stevie.contracts import BookStatus, BookTopK, Trade, encode, subjects
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

    await ctx.subscribe_typed(subjects.md_book(root, "*", "*"), BookTopK, on_book, dlq.labels("book"))
    await ctx.subscribe_typed(subjects.md_trade(root, "*", "*"), Trade, core.on_trade, dlq.labels("trade"))
    await ctx.subscribe_typed(subjects.md_status(root, "*", "*"), BookStatus, core.on_status, dlq.labels("status"))
    await asyncio.Event().wait()


SPEC = ServiceSpec("features", FeaturesSettings, main)
