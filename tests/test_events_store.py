"""Events repository against real PostgreSQL with pgvector: idempotent inserts, 384-dim
round trip, nearest earlier events by cosine distance equal a numpy brute force."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from stevie.store import connect_pool, migrate
from stevie.store.events import EventRow, insert_events, latest_events, recent_by_symbol

pytestmark = pytest.mark.integration

T0 = 959_817_600_000_000_000  # 2000-06-01: earlier than any other test's events


async def test_insert_read_nearest(pg_server):
    await migrate(pg_server.url)
    pool = await connect_pool(pg_server.url)
    sym = f"T{uuid.uuid4().hex[:8].upper()}"
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(12, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    rows = [
        EventRow(
            f"ev_{sym}_{i:02d}", T0 + i * 60_000_000_000, "test", f"t{i}", f"t{i}", "src", [sym], "m", vecs[i].tolist()
        )
        for i in range(12)
    ]
    assert await insert_events(pool, rows) == 12
    assert await insert_events(pool, rows[:3]) == 0  # re-post: no-op
    got = await latest_events(pool, 50, symbol=sym, k_nearest=3)
    assert [g.row.id for g in got] == [r.id for r in reversed(rows)]  # newest first
    np.testing.assert_allclose(np.array(got[0].row.embedding), vecs[11], atol=1e-7)
    assert got[0].row.ts_ns == rows[11].ts_ns and got[0].row.symbols == [sym]
    for g in got:
        i = int(g.row.id[-2:])
        sims = vecs[:i] @ vecs[i]  # brute force over the earlier events only
        want = [rows[j].id for j in np.argsort(-sims, kind="stable")[:3]]
        assert g.nearest == want
    assert got[-1].nearest == []  # the first event has no past
    recent = [r for r in await recent_by_symbol(pool, 4) if sym in r.symbols]
    assert [r.id for r in recent] == [r.id for r in rows[-4:]]
    await pool.close()
