"""Fixtures that start real local servers (nats-server, PostgreSQL) as our own child
processes, on loopback, and stop them by PID."""

from __future__ import annotations

import uuid

import pytest

from stevie.runtime.infra import NatsServer, PostgresServer


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory):
    server = NatsServer.start(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    server = PostgresServer.start(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


@pytest.fixture
def subject_root():
    """A unique subject root so tests sharing a server never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}"
