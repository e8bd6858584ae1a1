"""Settings: a frozen ``msgspec.Struct`` per service, loaded from environment variables.

Lookup for field ``foo`` of service ``book-maintainer``: ``STEVIE_BOOK_MAINTAINER_FOO`` first,
then the shared ``STEVIE_FOO``, then the field default. Values are converted by msgspec
(non-strict: ``"5"`` → 5, ``"true"`` → True); list fields take comma-separated values.
Unknown ``STEVIE_<SERVICE>_*`` variables are an error (``forbid_unknown_fields`` spirit).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, TypeVar, get_type_hints

import msgspec

S = TypeVar("S", bound="CommonSettings")

_SECRET = re.compile(r"(token|password|secret|key)$")
_URL_PASSWORD = re.compile(r"(://[^:/@]+:)([^@]+)(@)")


class SettingsError(ValueError):
    """A setting is missing, malformed or out of range. The message names the variable."""


class CommonSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings every service shares (``STEVIE_*``).

    nats_url: NATS server URL. database_url: PostgreSQL URL ('' = no database).
    subject_root: first subject token(s); tests set their own to isolate themselves.
    env: ``prod`` or ``dev`` (dev enables dev-only routes). heartbeat_interval_s: seconds.
    operator_token: bearer token for mutating routes (masked in logs).
    kernels: book/feature kernels — ``native`` (Rust), ``reference`` (Python/numpy) or
    ``auto`` (native when installed). partition_symbols: the symbols this instance owns when
    a service is scaled out (``STEVIE_<SERVICE>_PARTITION_SYMBOLS=BTCUSDT``; empty = all):
    per-symbol messages of other symbols are ignored on arrival (``ServiceContext.subscribe_typed``).
    nice: CPU niceness 0–19 (None = the service's own, ``ServiceSpec.nice``). event_loop:
    ``uvloop`` (libuv: ≈ 10 % faster NATS round trips) or ``asyncio`` (the standard loop).
    """

    nats_url: str = "nats://127.0.0.1:4322"
    database_url: str = ""
    subject_root: str = "stevie"
    env: str = "prod"
    log_level: str = "info"
    heartbeat_interval_s: float = 1.0
    operator_token: str = ""
    kernels: str = "auto"
    partition_symbols: list[str] = msgspec.field(default_factory=list)
    nice: int | None = None
    event_loop: str = "uvloop"

    def __post_init__(self) -> None:
        if self.kernels not in ("auto", "native", "reference"):
            raise SettingsError(f"STEVIE_KERNELS must be auto, native or reference, got {self.kernels!r}")
        if self.env not in ("prod", "dev"):
            raise SettingsError(f"STEVIE_ENV must be 'prod' or 'dev', got {self.env!r}")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise SettingsError(f"STEVIE_EVENT_LOOP must be uvloop or asyncio, got {self.event_loop!r}")
        if self.nice is not None and not 0 <= self.nice <= 19:
            raise SettingsError(f"STEVIE_<SERVICE>_NICE must be within 0..19, got {self.nice}")
        if not 0.05 <= self.heartbeat_interval_s <= 60:
            raise SettingsError("STEVIE_HEARTBEAT_INTERVAL_S must be within [0.05, 60] seconds")


def env_prefix(service: str) -> str:
    """``book-maintainer`` → ``STEVIE_BOOK_MAINTAINER_``."""
    return "STEVIE_" + re.sub(r"[^A-Za-z0-9]", "_", service).upper() + "_"


def load_settings(cls: type[S], service: str, environ: Mapping[str, str] | None = None) -> S:
    """Build ``cls`` from the environment. Raises ``SettingsError`` naming the bad variable."""
    env = os.environ if environ is None else environ
    prefix = env_prefix(service)
    hints = get_type_hints(cls)
    fields = set(cls.__struct_fields__)
    unknown = [k for k in env if k.startswith(prefix) and k[len(prefix) :].lower() not in fields]
    if unknown:
        raise SettingsError(f"unknown setting(s) for {service}: {', '.join(sorted(unknown))}")
    raw: dict[str, Any] = {}
    for name in fields:
        for var in (prefix + name.upper(), "STEVIE_" + name.upper()):
            if var in env:
                value: Any = env[var]
                if getattr(hints[name], "__origin__", None) in (list, tuple):
                    value = [v.strip() for v in value.split(",") if v.strip()]
                raw[name] = value
                break
    try:
        return msgspec.convert(raw, cls, strict=False)
    except (msgspec.ValidationError, ValueError) as exc:
        raise SettingsError(f"{service}: {exc}") from exc


def describe(settings: msgspec.Struct) -> dict[str, object]:
    """Settings as a dict for logs, secrets masked (``*_token``, ``*_password``, URL passwords)."""
    out: dict[str, object] = {}
    for name in settings.__struct_fields__:
        value = getattr(settings, name)
        if _SECRET.search(name) and value:
            value = "***"
        elif isinstance(value, str):
            value = _URL_PASSWORD.sub(r"\1***\3", value)
        out[name] = value
    return out
