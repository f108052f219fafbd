"""A real uvicorn server on a loopback port, in a thread of the test process (the
implementation lives in the package, where ``memstrata bench isolation`` uses it too)."""

from memstrata.server.inthread import free_port, running

__all__ = ["free_port", "running"]
