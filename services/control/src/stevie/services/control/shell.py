"""control shell (placeholder until its capability lands: it only heartbeats)."""

from __future__ import annotations

import asyncio

from stevie.runtime.service import ServiceContext, ServiceSpec
from stevie.services.control.settings import ControlSettings


async def main(ctx: ServiceContext) -> None:
    await asyncio.Event().wait()


SPEC = ServiceSpec("control", ControlSettings, main)
