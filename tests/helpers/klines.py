"""Read the recorded 1-minute klines in data/samples (Binance USD-M)."""

from __future__ import annotations

import gzip

import numpy as np

from tests.helpers.capture import SAMPLES


def closes(symbol: str) -> np.ndarray:
    with gzip.open(SAMPLES / "binance/usdm/klines_1m" / f"{symbol}.csv.gz", "rt") as f:
        next(f)
        return np.array([float(line.split(",")[4]) for line in f])
