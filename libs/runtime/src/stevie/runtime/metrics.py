"""Per-service Prometheus registry (no global default registry) and text merging."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def new_registry() -> CollectorRegistry:
    """A fresh registry for one service (never the process-global default).
    ``*_created`` series are disabled: they double the exposition for no use here."""
    disable_created_metrics()
    return CollectorRegistry(auto_describe=True)


def exposition(registry: CollectorRegistry) -> str:
    """The registry in Prometheus text format."""
    return generate_latest(registry).decode()


class MergedTextCollector:
    """Collector that re-exposes other services' exposition texts, merging families by name
    (samples of the same family from several services are grouped under one HELP/TYPE)."""

    def __init__(self, texts: Callable[[], list[str]]) -> None:
        self._texts = texts

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for text in self._texts():
            for fam in _parse(text):
                merged = families.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type, fam.unit))
                for s in fam.samples:
                    key = (s.name, tuple(sorted(s.labels.items())))
                    if key not in seen:
                        seen.add(key)
                        merged.samples.append(s)
        yield from families.values()


def _parse(text: str) -> Iterable[Metric]:
    try:
        return list(text_string_to_metric_families(text))
    except ValueError:
        return []
