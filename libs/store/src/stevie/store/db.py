"""Pool and migrations. Migrations are ``migrations/NNN_name.sql``, applied once each, in
order, inside a transaction, recorded in ``schema_migrations``; a concurrent migrator waits
on an advisory lock."""

from __future__ import annotations

from importlib import resources

import asyncpg

_LOCK_ID = 0x5715_7E1E


async def connect_pool(url: str, min_size: int = 1, max_size: int = 4) -> asyncpg.Pool:
    """An asyncpg pool. Raises ``OSError``/``asyncpg.PostgresError`` if unreachable."""
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, command_timeout=10)


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in order."""
    root = resources.files("stevie.store") / "migrations"
    files = sorted((p for p in root.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name, p.read_text()) for p in files]


async def migrate(url: str) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        applied = []
        for name, sql in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied.append(name)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
        await conn.close()
