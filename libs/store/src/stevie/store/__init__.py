"""Stevie store: asyncpg pool, numbered SQL migrations and repositories (PostgreSQL)."""

from stevie.store.db import connect_pool, migrate
from stevie.store.repos import insert_audit, insert_bar, insert_execution, insert_resync, latest_audits

__all__ = [
    "connect_pool",
    "insert_audit",
    "insert_bar",
    "insert_execution",
    "insert_resync",
    "latest_audits",
    "migrate",
]
