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


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory):
    """One ``stevie up`` shared by every e2e test that only reads and exercises routes (dev mode,
    operator token in ``e2e_stack.token``). Tests that kill processes boot their own stack."""
    from tests.helpers import stack as st

    s = st.start(tmp_path_factory.mktemp("e2e-stack"))
    try:
        st.wait_healthy(s)
        yield s
    finally:
        st.stop(s)
