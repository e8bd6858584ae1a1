"""Stevie store: asyncpg pool, numbered SQL migrations and repositories (PostgreSQL)."""

from stevie.store.db import connect_pool, migrate
from stevie.store.repos import insert_bar, insert_resync

__all__ = ["connect_pool", "insert_bar", "insert_resync", "migrate"]
