"""The router's fixed event projection: PCA of the MiniLM embeddings of a shipped corpus.

The corpus (``data/projection_corpus.txt``, headlines written for Stevie, not real news) is
split once and for all: ``train:`` lines fit the PCA (``stevie.quant.events.fit_projection``),
``test:`` lines are held out and only measure the explained variance out of sample. No
ingested event ever refits it, so a context dimension means the same thing on every decision
and no future event leaks into past decisions. Its id (``projection_id``) is a hash of the
model id, ``k`` and the training texts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import numpy as np

from stevie.quant.events import Projection, fit_projection
from stevie.services.events.embedder import Embedder

EVENT_DIMS = 4


@dataclass(frozen=True)
class FittedProjection:
    projection: Projection
    projection_id: str
    n_train: int
    n_test: int
    explained_train: float
    explained_test: float


def corpus() -> tuple[list[str], list[str]]:
    """(train, test) texts of the shipped corpus."""
    text = (resources.files("stevie.services.events") / "data" / "projection_corpus.txt").read_text("utf-8")
    train, test = [], []
    for line in text.splitlines():
        if line.startswith("train: "):
            train.append(line[7:].strip())
        elif line.startswith("test: "):
            test.append(line[6:].strip())
    return train, test


def fit_default(embedder: Embedder, k: int = EVENT_DIMS) -> FittedProjection:
    """Fit on the corpus' training split (≈ 0.15 s of embedding)."""
    train, test = corpus()
    xtr, xte = embedder.embed(train), embedder.embed(test)
    p = fit_projection(xtr, k)

    def explained(x: np.ndarray) -> float:
        c = x - p.mean
        z = p.transform(x)
        return float(np.sum(z**2) / np.sum(c**2))

    h = hashlib.sha256("\n".join([embedder.model_id, str(k), *train]).encode()).hexdigest()[:12]
    return FittedProjection(p, f"pca{k}-{h}", len(train), len(test), explained(xtr), explained(xte))
