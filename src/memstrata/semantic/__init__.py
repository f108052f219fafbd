"""Semantic memory: notes derived from episodes, their evolution, graph recall,
forgetting and summaries. Everything here is derived and rebuildable; episodes stay
the source of truth."""
