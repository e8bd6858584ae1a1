"""Deployment files stay in step with the code: compose.yaml runs every registered service
(plus single-node NATS, the 3-node ``cluster`` profile, PostgreSQL, Prometheus, Grafana);
the cluster node configs are valid for nats-server itself (``-t``) and name one NATS user
per service."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from stevie.runtime.infra import nats_server_binary
from stevie.runtime.registry import SERVICES

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "deploy" / "nats-cluster"


def test_compose_runs_every_service():
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = doc["services"]
    assert set(SERVICES) <= set(services), set(SERVICES) - set(services)
    for name in SERVICES:
        assert services[name]["command"] == [name]
        assert "STEVIE_NATS_URL" in services[name]["environment"]
    assert {"nats", "postgres", "prometheus", "grafana"} <= set(services)
    assert [services[f"nats-{i}"]["profiles"] for i in (1, 2, 3)] == [["cluster"]] * 3
    expected = services["gateway"]["environment"]["STEVIE_GATEWAY_SERVICES"].split(",")
    assert sorted(expected) == sorted(SERVICES)


@pytest.mark.parametrize("node", [1, 2, 3])
def test_cluster_node_config_is_valid(node):
    env = dict(os.environ, STEVIE_NATS_PASSWORD="test")
    res = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(CLUSTER / f"nats-{node}.conf")],
        capture_output=True,
        env=env,
        cwd=CLUSTER,
        check=False,
    )
    assert res.returncode == 0, res.stderr.decode()
    text = (CLUSTER / f"nats-{node}.conf").read_text()
    assert f"server_name: nats-{node}" in text and len(re.findall(r"nats-route://", text)) == 3


def test_one_nats_user_per_service():
    users = re.findall(r"\{ user: ([\w-]+),", (CLUSTER / "accounts.conf").read_text())
    assert set(SERVICES) <= set(users)
    perms = (CLUSTER / "permissions.conf").read_text()
    for name in SERVICES:
        assert f"PERMS_{name.upper().replace('-', '_')} = {{" in perms
