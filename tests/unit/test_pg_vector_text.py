"""The text form of vectors sent to pgvector: a lookup table per float16 bit pattern
must print every value exactly as repr() of its float32 does (what the server parses)."""

from __future__ import annotations

import numpy as np

from memstrata.store.postgres import vec_literal


def _by_repr(row: np.ndarray) -> str:
    return "[" + ",".join(map(repr, np.asarray(row, np.float16).astype(np.float32).tolist())) + "]"


def test_every_float16_value_prints_as_repr_does() -> None:
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)  # incl. -0, subnormals, inf, nan
    assert vec_literal(every) == _by_repr(every)


def test_shapes_and_float32_input_round_to_float16_first() -> None:
    rng = np.random.default_rng(3)
    row = rng.standard_normal(384).astype(np.float32) * 10
    assert vec_literal(row) == _by_repr(row)
    assert vec_literal(row[::2]) == _by_repr(row[::2])  # a strided view
    assert vec_literal(np.array([0.1])) == "[0.0999755859375]" and vec_literal(np.zeros(0)) == "[]"
