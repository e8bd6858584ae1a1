"""green-router: the router's shell as the green stack (settings ``STEVIE_GREEN_ROUTER_*``,
RPCs ``stevie.rpc.green-router.*``); see ``stevie.services.router.stack``."""

from __future__ import annotations

from stevie.runtime.service import ServiceSpec
from stevie.services.router.settings import RouterSettings
from stevie.services.router.shell import main


class GreenRouterSettings(RouterSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The router's settings; ``colour`` defaults to green."""

    colour: str = "green"


SPEC = ServiceSpec("green-router", GreenRouterSettings, main)
