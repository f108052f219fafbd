"""Prompts, one module per task. Each has a ``VERSION`` (recorded with what it
produced), a pydantic ``Response`` schema, and ``messages(...)`` building the chat."""
