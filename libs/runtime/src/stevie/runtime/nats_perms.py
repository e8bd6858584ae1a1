"""Per-service NATS subject permissions, from one table (issue 13 item 1).

``deploy/nats-cluster/permissions.conf`` is *generated* from the tables below
(``python -m stevie.runtime.nats_perms > deploy/nats-cluster/permissions.conf``; a test fails
when the checked-in file differs). ``stevie up`` with ``STEVIE_NATS_AUTH=1`` and the 3-node
cluster both include it (``accounts.conf``: one user per service).

Each service may

- **serve** only its own RPCs (subscribe ``{root}.rpc.<service>.>``) — nobody else can
  answer or overhear them;
- **call** only the RPCs listed in ``CALLS`` (publish ``{root}.rpc.<callee>.<method>``); the
  gateway (the HTTP API, which carries the operator token checks) may call every RPC;
- **publish** only the data subjects of ``PUBLISHES`` plus its own heartbeat and dead letters
  — so only book-maintainer can put market data (``{root}.md.>``) on the bus;
- **subscribe** only the data subjects of ``SUBSCRIBES``;
- use the JetStream API only when listed in ``JETSTREAM`` (execution stores audits, the
  reporter consumes them).

Replies: each service gets its replies on its own inbox prefix (``_INBOX_<service>``, set
by the runtime's connect), may subscribe to that prefix only, and may publish a reply only to
the reply subject of a request it was delivered (``allow_responses``) — so no service reads
or forges answers meant for another. Every user keeps ``$SRV.>`` (NATS micro discovery). The
``anonymous`` user (a client without credentials, e.g. ``stevie tail``) may read the data
subjects but publish nothing and see no RPC.
"""

from __future__ import annotations

import sys

from stevie.contracts.subjects import inbox_prefix
from stevie.runtime.registry import SERVICES

ROOT = "stevie"
FLAGS = ("control.flags_get",)  # FlagsClient: the initial fetch (then the ctl.flags push)
BUDGET = ("budgeter.grant",)

#: caller → the RPCs (``service.method``) it may call; the gateway may call all (``*``)
CALLS: dict[str, tuple[str, ...]] = {
    "book-maintainer": (*BUDGET, *FLAGS),
    "vol": (*BUDGET, *FLAGS),
    "adaptive": (*BUDGET, *FLAGS),
    "venues": (*BUDGET, "budgeter.status"),
    "execution": (
        "router.decide",
        "router.update",
        "green-router.decide",
        "green-router.choose",  # the mirror while a cutover runs (stevie.services.execution.split)
        "green-router.update",
        "risk-guards.check",
        "vol.forecast",
        "vol.closes",  # the bar policies' 1-minute closes
        "vol.options_smile",
        "venues.score",
        *FLAGS,
    ),
    "control": ("execution.positions", "risk-guards.state", "evidence.models_promote"),
    "gateway": ("*",),
}

#: service → data subjects (below the root) it publishes
PUBLISHES: dict[str, tuple[str, ...]] = {
    "book-maintainer": ("md.>",),
    "features": ("feat.micro.>",),
    "execution": ("audit.>", "exec.>", "deploy.slo.*"),
    "adaptive": ("adaptive.>",),
    "events": ("events.ctx.>",),
    "evidence": ("evidence.>",),
    "control": ("ctl.flags", "deploy.share"),
    "router": ("deploy.stack.blue",),
    "green-router": ("deploy.stack.green",),
    "venues": ("venues.scoring",),
}

_ROUTER_IN = ("evidence.model.current", "evidence.nudges", "evidence.baseline")
_MARKET = ("md.book.>", "md.status.>", "feat.micro.>")
#: service → data subjects (below the root) it subscribes to (``ctl.flags`` added for FLAGS callers)
SUBSCRIBES: dict[str, tuple[str, ...]] = {
    "features": ("md.book.>", "md.status.>", "md.trade.>"),
    "vol": ("md.bar.>",),
    "router": _ROUTER_IN,
    "green-router": _ROUTER_IN,
    "execution": (
        *_MARKET,
        "md.trade.>",  # the clock books' trades, for the features computed in execution
        "adaptive.regime.>",
        "adaptive.gating",
        "events.ctx.>",
        "evidence.nudges",
        "deploy.share",
        "venues.scoring",
    ),
    "reporter": ("audit.>", "exec.>"),
    "adaptive": ("md.bar.>", "feat.micro.>", "audit.>"),
    "events": ("md.book.>",),
    "venues": (*_MARKET, "svc.heartbeat.*"),
    "control": ("svc.heartbeat.*", "deploy.stack.*", "deploy.slo.*"),
    "gateway": (*_MARKET, "svc.heartbeat.*"),
}

JETSTREAM = frozenset({"execution", "reporter"})


def _q(subjects: list[str]) -> str:
    return "[" + ", ".join(f'"{s}"' for s in subjects) + "]"


def rules(service: str, root: str = ROOT) -> tuple[list[str], list[str]]:
    """(publish allow, subscribe allow) of ``service`` (replies to requests it was delivered
    are allowed besides: ``allow_responses``). Raises KeyError for an unknown service or a
    call to an unknown one."""
    if service not in SERVICES:
        raise KeyError(f"unknown service {service!r}")
    calls = CALLS.get(service, ())
    for c in calls:
        if c != "*" and c.split(".")[0] not in SERVICES:
            raise KeyError(f"{service} calls {c}: unknown service")
    pub = [f"{root}.svc.heartbeat.{service}", f"{root}.dlq.{service}"]
    pub += [f"{root}.{s}" for s in PUBLISHES.get(service, ())]
    pub += [f"{root}.rpc.>" if c == "*" else f"{root}.rpc.{c}" for c in calls]
    sub = [f"{root}.rpc.{service}.>"] + [f"{root}.{s}" for s in SUBSCRIBES.get(service, ())]
    if any(c in FLAGS for c in calls) or service == "gateway":
        sub.append(f"{root}.ctl.flags")
    if service in JETSTREAM:
        pub += ["$JS.API.>", "$JS.ACK.>"]
    return [*pub, "$SRV.>"], [*sub, f"{inbox_prefix(service)}.>", "$SRV.>"]


def render(root: str = ROOT) -> str:
    """The text of ``permissions.conf``: one ``PERMS_<SERVICE>`` variable per service and
    ``PERMS_ANONYMOUS``."""
    lines = [
        "# GENERATED by `python -m stevie.runtime.nats_perms` from the tables in",
        "# libs/runtime/src/stevie/runtime/nats_perms.py — edit those, not this file.",
        "# Per-service NATS permissions (variables used by accounts.conf): each service serves only",
        "# its own RPCs, calls only the RPCs its code calls (the gateway: all), publishes and",
        "# subscribes only its own data subjects, reads replies only on its own inbox prefix and",
        "# replies only to requests it was delivered. anonymous (no credentials) reads data only.",
    ]
    for name in SERVICES:
        pub, sub = rules(name, root)
        var = "PERMS_" + name.upper().replace("-", "_")
        lines.append(
            f"{var} = {{\n  publish: {{ allow: {_q(pub)} }}\n  subscribe: {{ allow: {_q(sub)} }}\n"
            "  allow_responses: true\n}"
        )
    anon_sub = [f"{root}.>", "_INBOX.>"]
    lines.append(
        "PERMS_ANONYMOUS = {\n"
        '  publish: { deny: [">"] }\n'
        f'  subscribe: {{ allow: {_q(anon_sub)}, deny: ["{root}.rpc.>"] }}\n'
        "}"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
