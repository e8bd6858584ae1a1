"""Loading the recorded captures of ``data/samples`` (format: data/samples/SOURCE_README.md §1).

These are raw exchange payloads (the venue simulator's own data, never passed to Stevie's
cores), hence plain dicts. Payloads are kept verbatim (Binance decimal strings); only the recorder's ``seq``/``recv_ns``
columns are dropped when serving.

``load_capture`` / ``load_kline_history`` give the plain Python view (tests, offline tools).
The replay venue uses ``PreparedWindow`` instead: the whole merged timeline of a window as
compact arrays — event times (int64 ns), venue/symbol/kind indices (uint8) and every wire
payload as compact JSON, zlib-compressed in chunks of ``CHUNK_EVENTS`` events with int64
offsets (≈ 10 MB instead of ≈ 48 MB; the replay reads in order, so each chunk is
decompressed once per pass) — plus the 1-minute bars of the capture's trades and the USD-M
kline history (open times as an array, the verbatim strings in compressed chunks). It is
prepared once (in a child process, so the venue's heap never holds the Python objects) and
cached on disk, keyed by the source files' sizes and mtimes: ~35 MB instead of ~1.2 GB of
dicts, loaded in well under a second.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import hashlib
import json
import math
import os
import pickle
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import msgspec
import numpy as np

VENUE_DIRS = {"binance": "spot", "binance-usdm": "usdm"}


@dataclass
class Capture:
    """One venue+symbol L2 capture: snapshot, diffs, trades, in arrival order."""

    venue: str
    symbol: str
    usdm: bool
    snapshot: dict[str, Any]
    diffs: list[dict[str, Any]]
    trades: list[dict[str, Any]]
    extra_streams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def capture_dirs(data_dir: Path, window: str) -> dict[tuple[str, str], Path]:
    """(venue, SYMBOL) → folder of every capture of ``window`` (e.g. ``2024-08-08``)."""
    out = {}
    for venue, sub in VENUE_DIRS.items():
        for d in sorted((data_dir / "binance" / sub).glob(f"*/l2_{window}T*")):
            out[(venue, d.parent.name.upper())] = d
    if not out:
        raise FileNotFoundError(f"no capture for window {window} under {data_dir}/binance")
    return out


def load_capture(venue: str, symbol: str, folder: Path) -> Capture:
    """Read one capture folder. Raises FileNotFoundError / ValueError on a broken capture."""
    usdm = venue == "binance-usdm"
    snapshot = json.loads((folder / "depth_snapshot.json").read_text())
    with gzip.open(folder / "depth_updates.jsonl.gz", "rt") as f:
        diffs = [json.loads(line) for line in f]
    trades = []
    with gzip.open(folder / "trades.csv.gz", "rt") as f:
        for row in csv.DictReader(f):
            t: dict[str, Any] = {"e": "trade", "E": int(row["event_time_ms"])}
            if usdm:
                t["T"] = int(row["trade_time_ms"])
            t.update(
                {
                    "s": symbol,
                    "t": int(row["trade_id"]),
                    "p": row["price"],
                    "q": row["qty"],
                    "m": row["is_buyer_maker"] == "1",
                }
            )
            if usdm:
                t["X"] = row.get("order_type") or "MARKET"
            else:
                t["T"] = int(row["trade_time_ms"])
                t["M"] = True
            trades.append(t)
    extra: dict[str, list[dict[str, Any]]] = {}
    mark = folder / "mark_price.csv.gz"
    if mark.exists():
        with gzip.open(mark, "rt") as f:
            extra["markPrice@1s"] = [
                {
                    "e": "markPriceUpdate",
                    "E": int(r["event_time_ms"]),
                    "s": symbol,
                    "p": r["mark_price"],
                    "i": r["index_price"],
                    "P": r["est_settle_price"],
                    "r": r["funding_rate"],
                    "T": int(r["next_funding_time_ms"]),
                }
                for r in csv.DictReader(f)
            ]
    return Capture(venue, symbol, usdm, snapshot, diffs, trades, extra)


HISTORY_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "LTCUSDT")


def load_kline_history(data_dir: Path, symbols: tuple[str, ...] = HISTORY_SYMBOLS) -> dict[str, list[list[object]]]:
    """USD-M 1-minute kline history of ``symbols``, as Binance kline rows (strings kept verbatim):
    ``[openTime, open, high, low, close, volume, closeTime, "0", 0, "0", "0", "0"]``
    (the recorded files carry no quote volume or trade count). Only the six symbols the vol
    service loads by default: the folder holds 18 (for ``stevie backtest``), and all of them
    as rows would cost the replay ~6 s and ~400 MB at start."""
    out: dict[str, list[list[object]]] = {}
    folder = data_dir / "binance" / "usdm" / "klines_1m"
    for f in sorted(p for p in folder.glob("*.csv.gz") if p.name.split(".")[0] in symbols):
        with gzip.open(f, "rt") as fh:
            rows = [
                [
                    int(r["open_time_ms"]),
                    r["open"],
                    r["high"],
                    r["low"],
                    r["close"],
                    r["volume"],
                    int(r["open_time_ms"]) + 59_999,
                    "0",
                    0,
                    "0",
                    "0",
                    "0",
                ]
                for r in csv.DictReader(fh)
            ]
        out[f.name.split(".")[0]] = rows
    return out


# -- compact, cached form used by the replay venue ---------------------------------------------

CACHE_VERSION = 3  # 2: payloads in compressed chunks; 3: the kline history too
#: events per compressed chunk of payloads (≈ 250 kB of JSON; ≈ 1 ms to decompress)
CHUNK_EVENTS = 512
#: kline rows per compressed chunk of the history (≈ 40 kB of text; a REST page is 1,500 rows)
HISTORY_CHUNK_ROWS = 1000
_enc = msgspec.json.Encoder()


class KlineHistory(Sequence[list[object]]):
    """Kline rows ``[openTime, o, h, l, c, v, closeTime, "0", 0, "0", "0", "0"]`` held as an
    int64 array of open times (ms) and the verbatim decimal strings ``o,h,l,c,v`` as lines,
    zlib-compressed in chunks of ``HISTORY_CHUNK_ROWS`` rows (≈ 4 MB instead of ≈ 20 MB for the
    six symbols; the last chunk read stays decompressed, replaced whole: thread-safe).
    Indexing (and slicing) builds the rows on demand, so ``bisect`` and slices work as on a
    list of rows."""

    def __init__(self, open_ms: np.ndarray, chunks: list[bytes], chunk_rows: int, scale: float = 1.0) -> None:
        """``scale``: every price (open, high, low, close; not the volume) is multiplied by it
        when a row is built (``reanchored``); 1 = the recorded strings verbatim."""
        self.open_ms, self.chunks, self.chunk_rows, self.scale = open_ms, chunks, chunk_rows, scale
        self._last: tuple[int, list[bytes]] = (-1, [])

    def __getstate__(self) -> dict[str, object]:
        return {"open_ms": self.open_ms, "chunks": self.chunks, "chunk_rows": self.chunk_rows, "scale": self.scale}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["open_ms"], state["chunks"], state["chunk_rows"], state.get("scale", 1.0))  # type: ignore[misc]

    def __len__(self) -> int:
        return int(self.open_ms.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held (open times and compressed chunks)."""
        return int(self.open_ms.nbytes) + sum(len(c) for c in self.chunks)

    def _row(self, i: int) -> list[object]:
        c = i // self.chunk_rows
        last = self._last
        if last[0] != c:
            last = self._last = (c, zlib.decompress(self.chunks[c]).split(b"\n"))
        t = int(self.open_ms[i])
        o, h, lo, cl, v = last[1][i - c * self.chunk_rows].decode().split(",")
        if self.scale != 1.0:
            o, h, lo, cl = (format(float(x) * self.scale, ".10g") for x in (o, h, lo, cl))
        return [t, o, h, lo, cl, v, t + 59_999, "0", 0, "0", "0", "0"]

    @overload
    def __getitem__(self, i: int) -> list[object]: ...
    @overload
    def __getitem__(self, i: slice) -> list[list[object]]: ...
    def __getitem__(self, i: int | slice) -> list[object] | list[list[object]]:
        if isinstance(i, slice):
            return [self._row(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._row(i)

    def reanchored(self, origin_ms: int, price: float | None = None) -> KlineHistory:
        """Shifted by whole days so that the last bar closes at or before ``origin_ms`` (as
        ``core.reanchor``), time of day unchanged; with ``price`` (the capture's first mid, quote
        units) every price is also scaled so that the last close equals it — returns, hence
        realised variance and the GARCH fit, are unchanged, and the history no longer jumps to
        the capture's level (the recorded history is from another period: BTC at 105,000
        before a capture at 61,800 read as a −41 % one-minute return). The strings are shared."""
        if not len(self):
            return self
        day = 86_400_000
        last_close = int(self.open_ms[-1]) + 60_000
        shift = -((last_close - origin_ms + day - 1) // day) * day
        scale = 1.0
        if price is not None:
            if not (math.isfinite(price) and price > 0):
                raise ValueError(f"anchor price must be finite and > 0, got {price}")
            scale = price / float(str(KlineHistory(self.open_ms, self.chunks, self.chunk_rows)[-1][4]))
        return KlineHistory(self.open_ms + shift, self.chunks, self.chunk_rows, scale)

    @classmethod
    def empty(cls) -> KlineHistory:
        return cls(np.empty(0, dtype=np.int64), [], HISTORY_CHUNK_ROWS)

    @classmethod
    def from_rows(cls, rows: list[list[object]]) -> KlineHistory:
        """From kline rows (``load_kline_history``). ValueError when a value holds a comma or
        a newline (it could not be split back)."""
        open_ms = np.array([int(str(r[0])) for r in rows], dtype=np.int64)
        lines = [",".join(str(x) for x in r[1:6]) for r in rows]
        if any(line.count(",") != 4 or "\n" in line for line in lines):
            raise ValueError("a kline value holds a comma or a newline")
        n = HISTORY_CHUNK_ROWS
        chunks = [zlib.compress("\n".join(lines[c : c + n]).encode(), 6) for c in range(0, len(lines), n)]
        return cls(open_ms, chunks, n)


@dataclass
class PreparedWindow:
    """One window's replay, compact (see the module doc). Event ``i``: time ``ts_ns[i]``,
    ``venues[venue_idx[i]]``, ``symbols[symbol_idx[i]]``, ``kinds[kind_idx[i]]``, wire payload
    ``payload_bytes(i)`` (compact JSON, recorder columns removed): bytes ``offsets[i]`` to
    ``offsets[i + 1]`` of the payloads concatenated, stored as ``chunks`` (zlib, chunk ``c``
    holding events ``c * chunk_events`` up to the next chunk's first). The last chunk read
    stays decompressed (replaced whole in one assignment: safe to read from threads)."""

    window: str
    venues: list[str]
    symbols: list[str]
    kinds: list[str]
    ts_ns: np.ndarray
    venue_idx: np.ndarray
    symbol_idx: np.ndarray
    kind_idx: np.ndarray
    offsets: np.ndarray
    chunks: list[bytes]
    chunk_events: int
    snapshots: dict[tuple[str, str], dict[str, Any]]
    trade_klines: dict[tuple[str, str], list[list[object]]]
    history: dict[str, KlineHistory]
    _last: tuple[int, bytes] = field(default=(-1, b""), repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_last"] = (-1, b"")  # the cache is not pickled
        return state

    def payload_bytes(self, i: int) -> bytes:
        """Event ``i``'s wire payload (IndexError when out of range)."""
        if not 0 <= i < len(self):
            raise IndexError(f"event {i} out of range (0..{len(self) - 1})")
        c = i // self.chunk_events
        last = self._last
        if last[0] != c:
            last = self._last = (c, zlib.decompress(self.chunks[c]))
        base = int(self.offsets[c * self.chunk_events])
        return last[1][int(self.offsets[i]) - base : int(self.offsets[i + 1]) - base]

    @property
    def payload_nbytes(self) -> int:
        """Bytes the payloads hold (compressed chunks and offsets)."""
        return sum(len(c) for c in self.chunks) + self.offsets.nbytes

    def captures(self) -> list[Capture]:
        """Light ``Capture`` objects: snapshot only (diffs and trades live in the arrays)."""
        return [Capture(v, sym, v == "binance-usdm", snap, [], []) for (v, sym), snap in self.snapshots.items()]

    def events(self) -> EventSeq:
        return EventSeq(self)

    def live_klines(self, venue: str, symbol: str, until_ms: int) -> list[list[object]]:
        """``core.klines_from_trades(trades, until_ms)`` of this capture: the closed 1-minute
        bars before ``until_ms`` (precomputed; a bar is closed once its minute has ended)."""
        limit = until_ms - until_ms % 60_000
        rows = self.trade_klines.get((venue, symbol), [])
        return rows[: bisect.bisect_left(rows, limit, key=lambda r: int(str(r[0])))]


class EventSeq(Sequence[Any]):
    """The timeline as ``core.Event`` objects built on demand (payload decoded when read)."""

    def __init__(self, w: PreparedWindow) -> None:
        self.w = w
        self._decode = msgspec.json.Decoder()

    def __len__(self) -> int:
        return len(self.w)

    def _event(self, i: int) -> Any:
        from stevie.services.venue_replay.core import Event

        w = self.w
        return Event(
            int(w.ts_ns[i]),
            i,
            w.venues[w.venue_idx[i]],
            w.symbols[w.symbol_idx[i]],
            w.kinds[w.kind_idx[i]],
            self._decode.decode(w.payload_bytes(i)),
        )

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._event(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._event(i)

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self._event(i)


def _sources(data_dir: Path, window: str) -> list[Path]:
    files = [f for d in capture_dirs(data_dir, window).values() for f in sorted(d.iterdir())]
    return files + sorted((data_dir / "binance" / "usdm" / "klines_1m").glob("*.csv.gz"))


def cache_path(data_dir: Path, window: str, cache_dir: Path) -> Path:
    """Where the prepared ``window`` is cached: keyed by every source file's name, size and
    mtime and by ``CACHE_VERSION``, so a changed capture is prepared again."""
    h = hashlib.sha256(f"v{CACHE_VERSION}:{window}".encode())
    for f in _sources(data_dir, window):
        st = f.stat()
        h.update(f"{f.relative_to(data_dir)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return cache_dir / f"replay-{window}-{h.hexdigest()[:16]}.pkl"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stevie" / "venue-replay"


def prepare_window(data_dir: Path, window: str, history: bool = True) -> PreparedWindow:
    """Build the compact form from the captures (the slow path: seconds, ~1 GB of transient
    Python objects — run it in a child process, see ``prepare_main``). ``history=False``
    leaves out the USD-M kline history."""
    from stevie.services.venue_replay.core import klines_from_trades, timeline

    caps = [load_capture(v, sym, d) for (v, sym), d in capture_dirs(data_dir, window).items()]
    events = timeline(caps)
    venues = sorted({e.venue for e in events})
    symbols = sorted({e.symbol for e in events})
    kinds = sorted({e.kind for e in events})
    vi, si, ki = ({x: i for i, x in enumerate(xs)} for xs in (venues, symbols, kinds))
    n = len(events)
    ts = np.empty(n, dtype=np.int64)
    venue_idx, symbol_idx, kind_idx = (np.empty(n, dtype=np.uint8) for _ in range(3))
    offsets = np.empty(n + 1, dtype=np.int64)
    parts: list[bytes] = []
    pos = 0
    for i, e in enumerate(events):
        ts[i], venue_idx[i], symbol_idx[i], kind_idx[i] = e.ts_ns, vi[e.venue], si[e.symbol], ki[e.kind]
        raw = _enc.encode({k: v for k, v in e.payload.items() if k not in ("seq", "recv_ns")})
        offsets[i] = pos
        parts.append(raw)
        pos += len(raw)
    offsets[n] = pos
    chunks = [zlib.compress(b"".join(parts[c : c + CHUNK_EVENTS]), 6) for c in range(0, n, CHUNK_EVENTS)]
    far = 2**62
    return PreparedWindow(
        window,
        venues,
        symbols,
        kinds,
        ts,
        venue_idx,
        symbol_idx,
        kind_idx,
        offsets,
        chunks,
        CHUNK_EVENTS,
        {(c.venue, c.symbol): c.snapshot for c in caps},
        {(c.venue, c.symbol): klines_from_trades(c.trades, far) for c in caps},
        {sym: KlineHistory.from_rows(rows) for sym, rows in load_kline_history(data_dir).items()} if history else {},
    )


def write_prepared(w: PreparedWindow, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(w, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def read_prepared(path: Path) -> PreparedWindow | None:
    """The cached window (our own file, written by ``write_prepared``); None if absent or unreadable."""
    try:
        with open(path, "rb") as f:
            w = pickle.load(f)  # our own cache file, never user input
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    return w if isinstance(w, PreparedWindow) else None


def prepare_main(argv: list[str]) -> int:
    """``python -m stevie.services.venue_replay.captures DATA_DIR WINDOW OUT``: prepare and cache."""
    # the importable module, not ``__main__``: the pickle must name the real class path
    from stevie.services.venue_replay import captures as m

    m.write_prepared(m.prepare_window(Path(argv[0]), argv[1]), Path(argv[2]))
    return 0


async def load_prepared(data_dir: Path, window: str, cache_dir: Path | None = None) -> PreparedWindow:
    """The prepared window from the cache, or prepared now in a child process (killed if we
    are cancelled) and cached. Raises RuntimeError if preparing fails."""
    import asyncio
    import signal

    from stevie.runtime.infra import pdeathsig

    path = cache_path(data_dir, window, cache_dir or default_cache_dir())
    w = await asyncio.to_thread(read_prepared, path)
    if w is not None:
        return w
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stevie.services.venue_replay.captures",
        str(data_dir),
        window,
        str(path),
        preexec_fn=pdeathsig(signal.SIGKILL),
    )
    try:
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
    w = await asyncio.to_thread(read_prepared, path) if code == 0 else None
    if w is None:
        raise RuntimeError(f"preparing the {window} captures failed (exit {code})")
    return w


if __name__ == "__main__":
    sys.exit(prepare_main(sys.argv[1:]))
