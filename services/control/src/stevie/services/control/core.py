"""control core (pure): data-quality statistics from the services' metrics expositions."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

from stevie.contracts.ops import DqReasonStats, DqSourceStats


def samples(texts: list[str], name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called ``name`` in the exposition ``texts``."""
    out: list[tuple[dict[str, str], float]] = []
    for text in texts:
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError:
            continue
        out += [(dict(s.labels), float(s.value)) for fam in families for s in fam.samples if s.name == name]
    return out


def dq_sources(texts: Iterable[str]) -> tuple[dict[str, DqSourceStats], dict[str, float]]:
    """(per-source stats, resyncs by reason) summed over every service's exposition text
    (``data_quality_*_total`` and ``l2_resyncs_total``; see ``stevie.runtime.dataquality``)."""
    texts = list(texts)
    checked: dict[str, float] = {}
    reasons: dict[str, dict[str, list[float]]] = {}  # source → reason → [quarantined, replaced, counted]
    for labels, v in samples(texts, "data_quality_checked_total"):
        checked[labels["source"]] = checked.get(labels["source"], 0.0) + v
    for labels, v in samples(texts, "data_quality_flagged_total"):
        slot = reasons.setdefault(labels["source"], {}).setdefault(labels["reason"], [0.0, 0.0, 0.0])
        slot[0 if labels["action"] == "quarantined" else 2] += v
    for labels, v in samples(texts, "data_quality_replaced_total"):
        reasons.setdefault(labels["source"], {}).setdefault(labels["reason"], [0.0, 0.0, 0.0])[1] += v
    resyncs: dict[str, float] = {}
    for labels, v in samples(texts, "l2_resyncs_total"):
        resyncs[labels["reason"]] = resyncs.get(labels["reason"], 0.0) + v
    sources = {
        src: DqSourceStats(
            checked.get(src, 0.0),
            {r: DqReasonStats(q, rep, cnt) for r, (q, rep, cnt) in sorted(reasons.get(src, {}).items())},
        )
        for src in sorted(set(checked) | set(reasons))
    }
    return sources, resyncs
