"""What the benchmarks share: the server started as an editor starts it, and the report.

The server is a subprocess over stdio with its own configuration, cache and data
directories, and its stderr is read (an unread stderr pipe fills after a few hundred
requests' log lines and stalls the server)."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(1 << 16):
        pass


async def start_server(
    init: Any = None,
    capabilities: types.ClientCapabilities | None = None,
    on_status: Callable[[Any], None] | None = None,
) -> LanguageClient:
    """An initialized server; notifications the client does not handle are dropped
    (`on_status` receives each `mmx/status`)."""
    client = LanguageClient("bench", "1")
    if on_status is not None:
        client.feature("mmx/status")(lambda params: on_status(params))
    for method in ("window/logMessage", "window/showMessage", "mmx/status", "$/progress"):
        if method not in client.protocol.fm.features:
            client.feature(method)(lambda params: None)
    home = tempfile.mkdtemp(prefix="mmx-bench-")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({f"XDG_{d}_HOME": f"{home}/{d.lower()}" for d in ("CONFIG", "CACHE", "DATA")})
    await client.start_io(sys.executable, "-m", "mmx_lsp", env=env)
    assert client._server is not None and client._server.stderr is not None
    client._async_tasks.append(asyncio.ensure_future(_drain(client._server.stderr)))
    await client.initialize_async(
        types.InitializeParams(
            capabilities=capabilities or types.ClientCapabilities(),
            initialization_options=init,
        )
    )
    client.initialized(types.InitializedParams())
    return client


async def stop_server(client: LanguageClient) -> None:
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()


Row = tuple[str, str, float, float]  # figure, detail, value, limit (value ≤ limit is ok)


def report(title: str, rows: list[Row]) -> int:
    """Print the figures against their limits; the exit status is 1 when one is missed."""
    width = max(len(r[0]) for r in rows)
    print(f"{title} — {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, ", end="")
    print(f"Python {sys.version.split()[0]}")
    failed = False
    for name, detail, value, limit in rows:
        ok = value <= limit
        failed |= not ok
        print(f"{name:<{width}}  {value:8.3f}  (≤ {limit:g})  {'ok ' if ok else 'MISS'}  {detail}")
    return 1 if failed else 0
