"""Model providers: the bundled embedder (and, later, LLM clients)."""
