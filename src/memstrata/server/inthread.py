"""Serve an ASGI app under uvicorn on a loopback port, in a thread of this process: what
the tests and ``memstrata bench isolation`` use to call a real server over HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 until the block ends; yields the base URL. ``lifespan="on"``
    for apps that need startup (the MCP streamable HTTP app)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan=lifespan, access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn-inthread", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the in-thread server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
