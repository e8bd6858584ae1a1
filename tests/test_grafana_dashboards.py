"""Grafana provisioning (``deploy/grafana``): every dashboard panel's PromQL parses (a real
PromQL parser), uses the provisioned datasource, and — on the running e2e stack — names only
metrics that exist in the gateway's ``/metrics`` (with label names those metrics carry)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1] / "deploy"
BOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
_GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
_HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def _exprs(board: dict) -> list[tuple[str, str]]:
    out = [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]
    for v in board.get("templating", {}).get("list", []):
        m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", v.get("query", ""))
        assert m, f"variable {v['name']}: only label_values(metric, label) queries, got {v.get('query')!r}"
        out.append((f"variable {v['name']}", m.group(1)))
    return out


def _parse(expr: str) -> pq.Expr:
    for k, v in _GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    return pq.parse(expr)


def _selectors(node: object) -> list[pq.VectorSelector]:
    """Every vector selector in a parsed expression."""
    if isinstance(node, pq.VectorSelector):
        return [node]
    if isinstance(node, pq.MatrixSelector):
        return [node.vector_selector]
    if isinstance(node, pq.Call):
        return [s for a in node.args for s in _selectors(a)]
    if isinstance(node, pq.BinaryExpr):
        return _selectors(node.lhs) + _selectors(node.rhs)
    if isinstance(node, pq.AggregateExpr):
        return _selectors(node.expr) + (_selectors(node.param) if node.param is not None else [])
    if isinstance(node, (pq.ParenExpr, pq.UnaryExpr, pq.SubqueryExpr)):
        return _selectors(node.expr)
    return []


def _metrics_index(text: str) -> tuple[set[str], dict[str, list[set[str]]]]:
    """(family and sample names, label-name sets per sample name) of a Prometheus exposition."""
    names, labels = set(), {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            fam = line.split()[2]
            names.add(fam)
            if line.split()[3] == "counter":
                names.add(fam + "_total" if not fam.endswith("_total") else fam)
            if line.split()[3] == "histogram":
                names.update(fam + s for s in _HIST_SUFFIXES)
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s", line)
            if m:
                names.add(m.group(1))
                labels.setdefault(m.group(1), []).append(set(re.findall(r'(\w+)="', m.group(2) or "")))
    return names, labels


def test_provisioning_files_and_every_expression_parses():
    ds = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    prov = yaml.safe_load((ROOT / "grafana" / "provisioning" / "dashboards" / "stevie.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert {b.stem for b in BOARDS} == {"stack-overview", "books-resyncs", "decisions-router", "risk-budget", "latency"}
    uids = set()
    for path in BOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        assert board["panels"], path.name
        for p in board["panels"]:
            assert p["datasource"]["uid"] == uid and all(t["datasource"]["uid"] == uid for t in p["targets"])
        for title, expr in _exprs(board):
            assert _selectors(_parse(expr)), (path.name, title, expr)
    assert len(uids) == len(BOARDS)
    prom = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    assert any(sc["metrics_path"] == "/metrics" for sc in prom["scrape_configs"])


@pytest.mark.e2e
def test_every_metric_a_panel_uses_exists_on_the_running_stack(e2e_stack):
    status, text = e2e_stack.get("/metrics")
    assert status == 200 and isinstance(text, str)
    names, labels = _metrics_index(text)
    missing, bad_labels, used = [], [], set()
    for path in BOARDS:
        for title, expr in _exprs(json.loads(path.read_text())):
            for sel in _selectors(_parse(expr)):
                used.add(sel.name)
                if sel.name not in names:
                    missing.append(f"{path.stem} / {title}: {sel.name}")
                    continue
                wanted = {m.name for m in sel.matchers.matchers} - {"__name__"}
                seen = labels.get(sel.name, [])
                if seen and wanted and not any(wanted <= s for s in seen):
                    bad_labels.append(f"{path.stem} / {title}: {sel.name} has no labels {sorted(wanted)}")
    assert not missing, missing
    assert not bad_labels, bad_labels
    assert len(used) >= 30 and "no_such_metric_total" not in names, sorted(used)
