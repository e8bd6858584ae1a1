"""Feature flags: env defaults, persisted overrides (owned by the ``control`` service), pushed
to every running service over NATS.

Use in a service shell (the whole client API)::

    from stevie.runtime.flags import FlagsClient

    flags = FlagsClient(ctx)
    await flags.start()                # subscribe + fetch current values (best effort)
    if flags.enabled("BOCPD"): ...     # bool flags
    mode = flags.get("DataQuality")    # "strict" | "relaxed"
    flags.on_change(lambda name, old, new: ...)   # optional callback

``get`` never blocks and never fails: before the first push it answers the env default.
The control service re-publishes the full map every ``REPUBLISH_S`` seconds and on every
change, so a change reaches every running service within ~one NATS round trip (< 1 s) and a
service started later converges within ``REPUBLISH_S``.

Defaults: the built-in default of each flag, overridden by ``STEVIE_FLAG_<NAME>`` (snake upper
case: ``STEVIE_FLAG_EXECUTION_ROUTER=false``, ``STEVIE_FLAG_DATA_QUALITY=relaxed``).
Overrides (``POST /api/flags``) are stored in PostgreSQL (``flag_overrides``) with an audit
row per change (``ops_audit``: who = operator token id, when, old, new).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec

from stevie.bus import Msg
from stevie.contracts import encode, subjects
from stevie.contracts.ops import FlagsGetRequest, FlagsState, FlagsUpdate, FlagValue, FlagView
from stevie.runtime.service import ServiceContext

REPUBLISH_S = 2.0


@dataclass(frozen=True)
class FlagSpec:
    """A flag: its built-in ``default``, the values it may take and what it gates."""

    name: str
    default: FlagValue
    allowed: tuple[FlagValue, ...]
    description: str

    @property
    def env_var(self) -> str:
        return "STEVIE_FLAG_" + re.sub(r"(?<=[a-z])(?=[A-Z])", "_", self.name).upper()


FLAGS: dict[str, FlagSpec] = {
    f.name: f
    for f in (
        FlagSpec(
            "ExecutionRouter",
            True,
            (True, False),
            "execution's decision clock: off = no new decisions, positions held",
        ),
        FlagSpec("StrategyRouter", True, (True, False), "the Thompson-sampling router: off = p_flat always"),
        FlagSpec("BOCPD", True, (True, False), "BOCPD change points feed the regime state"),
        FlagSpec(
            "DataQuality",
            "strict",
            ("strict", "relaxed"),
            "data-quality guards: strict quarantines bad data, relaxed only counts it",
        ),
        FlagSpec("EventContext", True, (True, False), "event embeddings enter the router context"),
    )
}


def parse_value(name: str, raw: object) -> FlagValue:
    """Check ``raw`` for flag ``name``. Raises ``ValueError`` naming the flag
    and its allowed values for an unknown flag or a wrong type/value (no coercion: the JSON
    ``false`` is a bool, the string ``"false"`` is not)."""
    spec = FLAGS.get(name)
    if spec is None:
        raise ValueError(f"unknown flag {name!r}; known: {', '.join(FLAGS)}")
    ok = any(type(raw) is type(a) and raw == a for a in spec.allowed)
    if not ok:
        raise ValueError(f"flag {name} takes one of {list(spec.allowed)}, got {raw!r}")
    assert isinstance(raw, bool | str)
    return raw


def _env_value(spec: FlagSpec, text: str) -> FlagValue:
    if isinstance(spec.default, bool):
        low = text.strip().lower()
        if low in ("1", "true", "on", "yes"):
            return True
        if low in ("0", "false", "off", "no"):
            return False
        raise ValueError(f"{spec.env_var} must be true or false, got {text!r}")
    return parse_value(spec.name, text.strip())


def defaults(environ: Mapping[str, str]) -> dict[str, tuple[FlagValue, str]]:
    """name → (default value, source ``env`` or ``default``). Raises ValueError on a bad env
    value (a service refuses to start on a malformed flag rather than guessing)."""
    out: dict[str, tuple[FlagValue, str]] = {}
    for name, spec in FLAGS.items():
        if spec.env_var in environ:
            out[name] = (_env_value(spec, environ[spec.env_var]), "env")
        else:
            out[name] = (spec.default, "default")
    return out


@dataclass(frozen=True)
class Override:
    value: FlagValue
    changed_at_ms: int
    changed_by: str
    previous: FlagValue | None


@dataclass(frozen=True)
class Change:
    """One audited change: ``new`` is None when the override was removed."""

    name: str
    old: FlagValue
    new: FlagValue
    removed: bool
    actor: str
    at_ms: int


class FlagBook:
    """Pure flag state: defaults + overrides → values; ``apply`` validates a whole change set
    first (all or nothing) and returns the audited changes. Times are passed in (``now_ms``)."""

    def __init__(self, default_values: Mapping[str, tuple[FlagValue, str]]) -> None:
        self.defaults = dict(default_values)
        self.overrides: dict[str, Override] = {}
        self.version = 0

    def value(self, name: str) -> FlagValue:
        o = self.overrides.get(name)
        return o.value if o is not None else self.defaults[name][0]

    def values(self) -> dict[str, FlagValue]:
        return {n: self.value(n) for n in FLAGS}

    def apply(self, values: Mapping[str, object], actor: str, now_ms: int) -> list[Change]:
        """Set (or with ``None`` remove) overrides. Raises ValueError (nothing applied) on an
        unknown flag, a wrong value or an empty change set."""
        if not values:
            raise ValueError(f"no flag given; known: {', '.join(FLAGS)}")
        parsed = {n: (None if v is None and n in FLAGS else parse_value(n, v)) for n, v in values.items()}
        changes: list[Change] = []
        for name, new in parsed.items():
            old = self.value(name)
            if new is None:
                if self.overrides.pop(name, None) is not None:
                    changes.append(Change(name, old, self.value(name), True, actor, now_ms))
                continue
            self.overrides[name] = Override(new, now_ms, actor, old)
            changes.append(Change(name, old, new, False, actor, now_ms))
        self.version += 1
        return changes

    def state(self) -> FlagsState:
        views = {}
        for name, spec in FLAGS.items():
            default, source = self.defaults[name]
            o = self.overrides.get(name)
            views[name] = FlagView(
                name=name,
                value=self.value(name),
                default=default,
                source="override" if o else source,
                allowed=list(spec.allowed),
                description=spec.description,
                changedAtMs=o.changed_at_ms if o else None,
                changedBy=o.changed_by if o else None,
                previous=o.previous if o else None,
            )
        return FlagsState(views, self.values(), self.version)


Callback = Callable[[str, FlagValue, FlagValue], None]


class FlagsClient:
    """Current flag values in a running service, kept fresh by a NATS subscription.

    ``ctx`` is the service's ``ServiceContext``. ``environ`` defaults to ``os.environ`` (the
    env defaults)."""

    def __init__(self, ctx: ServiceContext, environ: Mapping[str, str] | None = None) -> None:
        self.ctx = ctx
        self._values: dict[str, FlagValue] = {n: v for n, (v, _) in defaults(environ or os.environ).items()}
        self._callbacks: list[Callback] = []
        self._decoder = msgspec.json.Decoder(FlagsUpdate)
        self.version = -1
        self.updated_mono = 0.0

    def get(self, name: str) -> FlagValue:
        """The current value. Raises KeyError for an unknown flag name (a typo in code)."""
        return self._values[name]

    def enabled(self, name: str) -> bool:
        """``get`` for a bool flag."""
        return bool(self._values[name])

    def values(self) -> dict[str, FlagValue]:
        return dict(self._values)

    def on_change(self, callback: Callback) -> None:
        """``callback(name, old, new)`` after each change (called in the bus callback)."""
        self._callbacks.append(callback)

    def apply(self, values: Mapping[str, FlagValue], version: int) -> None:
        """Take a pushed map (unknown names are ignored: an older service meets a newer flag)."""
        self.version, self.updated_mono = version, time.monotonic()
        for name, new in values.items():
            old = self._values.get(name)
            if old is None or (old == new and type(old) is type(new)):
                continue
            self._values[name] = new
            for cb in self._callbacks:
                try:
                    cb(name, old, new)
                except Exception as exc:  # a bad callback must not stop the updates
                    self.ctx.log.warning("flag_callback_failed", flag=name, error=str(exc)[:200])

    async def start(self, fetch_timeout_s: float = 1.0) -> None:
        """Subscribe to pushes, then ask the control service once for the current values
        (no answer within ``fetch_timeout_s``: keep the env defaults until the next push)."""
        root, bus = self.ctx.settings.subject_root, self.ctx.bus

        async def on_push(msg: Msg) -> None:
            try:
                up = self._decoder.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return
            self.apply(up.values, up.version)

        await bus.subscribe(subjects.flags(root), on_push)
        try:
            subject = subjects.rpc(root, "control", "flags_get")
            msg = await bus.request(subject, encode(FlagsGetRequest()), fetch_timeout_s)
            state = msgspec.json.decode(msg.data, type=FlagsState)
        except (TimeoutError, msgspec.DecodeError, msgspec.ValidationError, OSError):
            return
        self.apply(state.values, state.version)
