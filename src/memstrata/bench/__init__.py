"""Benchmark harness: LongMemEval_S and LoCoMo retrieval runners (part of the product)."""
