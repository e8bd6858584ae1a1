"""Reading event files (CSV / JSONL) and 1-minute kline files for the CLI and the study.

Event files: one event per row / line with the ``EventIn`` fields — ``ts`` (ms since the
epoch or ISO-8601 with a zone), ``title``, ``source``, optional ``body``, ``symbols`` (CSV: ``;``
separated; JSONL: a list) and ``kind``. Extra columns (``time_source`` in the shipped file)
are documentation and are not loaded. Bytes that are not UTF-8 are an error naming the line.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import msgspec
import numpy as np

from stevie.contracts.events import EventIn
from stevie.quant.events import MinuteReturns

_FIELDS = ("ts", "title", "source", "body", "symbols", "kind")


class EventFileError(ValueError):
    """A row of an event file is malformed (the message names the file and line)."""


def _text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise EventFileError(f"{path}: line {line} is not UTF-8 (byte {exc.start})") from exc


def read_events(path: Path) -> list[EventIn]:
    """Events of a ``.csv`` or ``.jsonl`` file, in file order. Raises EventFileError."""
    text = _text(path)
    out: list[EventIn] = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise TypeError("not a JSON object")
                out.append(msgspec.convert({k: obj[k] for k in _FIELDS if k in obj}, EventIn))
            except (ValueError, TypeError, msgspec.ValidationError) as exc:
                raise EventFileError(f"{path}: line {n}: {exc}") from exc
        return out
    if path.suffix.lower() != ".csv":
        raise EventFileError(f"{path}: expected a .csv or .jsonl file")
    reader = csv.DictReader(io.StringIO(text))
    missing = {"ts", "title", "source"} - set(reader.fieldnames or ())
    if missing:
        raise EventFileError(f"{path}: missing column(s) {sorted(missing)}")
    for n, row in enumerate(reader, 2):
        try:
            ts: int | str = int(row["ts"]) if row["ts"].strip().isdigit() else row["ts"].strip()
            syms = [s.strip() for s in (row.get("symbols") or "").split(";") if s.strip()]
            out.append(
                EventIn(
                    ts=ts,
                    title=row["title"],
                    source=row["source"],
                    body=row.get("body") or "",
                    symbols=syms,
                    kind=row.get("kind") or "",
                )
            )
        except (KeyError, AttributeError) as exc:
            raise EventFileError(f"{path}: line {n}: {exc}") from exc
    return out


def read_klines(path: Path) -> MinuteReturns:
    """A ``open_time_ms,open,high,low,close,volume`` file (optionally gzipped) as 1-minute
    log returns."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", skiprows=1, usecols=(0, 4), dtype=np.float64)
    t = data[:, 0].astype(np.int64) * 1_000_000
    return MinuteReturns.from_bars(t, data[:, 1])
