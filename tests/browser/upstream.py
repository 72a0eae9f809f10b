"""The fake upstream the browser tests' apps call: a real HTTP server whose health they switch.

Run with ``uvicorn tests.browser.upstream:app``. Every test owns a key (the first path
segment) so one upstream serves the whole session without tests seeing each other:

* ``GET /_state/<key>?up|down|slow`` sets that key's health (default ``up``);
* ``GET /<key>/...`` answers 200 JSON when up, 503 when down, and when slow holds the
  request until the key leaves ``slow`` (at most 10 s) before answering 503.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

STATES = ("up", "down", "slow")
SLOW_LIMIT = 10.0

states: dict[str, str] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    parts = scope["path"].strip("/").split("/")
    if parts[0] == "_state" and len(parts) == 2:
        wanted = scope["query_string"].decode()
        if wanted in STATES:
            states[parts[1]] = wanted
        await _json(send, 200, {"state": states.get(parts[1], "up")})
        return
    key = parts[0]
    if states.get(key, "up") == "slow":
        deadline = time.monotonic() + SLOW_LIMIT
        while states.get(key) == "slow" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    if states.get(key, "up") != "up":
        await _json(send, 503, {"error": "upstream unavailable"})
        return
    await _json(send, 200, {"key": key, "path": scope["path"]})


async def _json(send: Any, status: int, data: dict[str, Any]) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
