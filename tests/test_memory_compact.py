"""Memory behaviour of the long-lived services: compact captures and heap trimming."""

from __future__ import annotations

import gzip
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stevie.runtime import service
from stevie.services.features import offline

CAPTURE = Path(__file__).resolve().parents[1] / "data/samples/binance/usdm/btcusdt/l2_2024-08-08T2354Z"


def eager(folder: Path, usdm: bool) -> list[offline.Diff]:
    """The depth updates decoded at once, in the replay's order (the former loader)."""
    with gzip.open(folder / "depth_updates.jsonl.gz", "rb") as f:
        raw = [offline._diff_decoder.decode(line) for line in f if line.strip()]
    raw.sort(key=lambda d: (d.E, d.seq))
    return [(d.U, d.u, d.pu if usdm else None, d.b, d.a) for d in raw]


def test_wire_diffs_read_exactly_what_eager_decoding_gives() -> None:
    cap = offline.load("binance-usdm", "BTCUSDT", CAPTURE)
    want = eager(CAPTURE, usdm=True)
    assert isinstance(cap.diffs, offline.WireDiffs)
    assert len(cap.diffs) == len(want) > 1000
    assert list(cap.diffs) == want
    assert cap.diffs[0] == want[0] and cap.diffs[-1] == want[-1] and cap.diffs[10:20] == want[10:20]
    assert cap.diffs[3][2] is not None  # usdm keeps pu
    with pytest.raises(IndexError):
        cap.diffs[len(want)]


def test_wire_diffs_are_compact() -> None:
    cap = offline.load("binance-usdm", "BTCUSDT", CAPTURE)
    assert isinstance(cap.diffs, offline.WireDiffs)
    per_update = cap.diffs.nbytes / len(cap.diffs)
    levels = sum(len(d[3]) + len(d[4]) for d in cap.diffs[:200]) / 200
    # as Python objects a level is a tuple of two floats (≥ 56 + 2 × 24 bytes) plus a list slot
    assert per_update < levels * (56 + 48 + 8) / 10


def test_wire_diffs_chunks_and_reads_from_threads() -> None:
    lines = [f'{{"E":{i},"U":{i},"u":{i},"b":[["1.5","{i}"]],"a":[]}}'.encode() for i in range(1000)]
    diffs = offline.WireDiffs(lines, usdm=False, chunk=7)
    assert [d[0] for d in diffs] == list(range(1000))
    assert diffs[999][3] == [(1.5, 999.0)] and diffs[-1] == diffs[999] and diffs[0][2] is None
    with ThreadPoolExecutor(4) as pool:  # interleaved chunks: the cached chunk is swapped under reads
        got = list(pool.map(lambda i: diffs[(i * 37) % 1000][0], range(4000)))
    assert got == [(i * 37) % 1000 for i in range(4000)]
    with pytest.raises(ValueError):
        offline.WireDiffs(lines, usdm=False, chunk=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_malloc_trim_gives_back_the_free_middle_of_the_heap() -> None:
    def anon_mb() -> float:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no Anonymous line")

    trim = service._malloc_trim()
    assert trim is not None
    trim()
    junk = [bytes(2048) for _ in range(40_000)]  # ≈ 80 MB from malloc (above pymalloc's 512 B)
    pin = bytes(2048)  # allocated last: the heap's top stays in use, so free() alone keeps it all
    del junk
    before = anon_mb()
    assert trim() == 1
    assert before - anon_mb() > 40
    del pin
