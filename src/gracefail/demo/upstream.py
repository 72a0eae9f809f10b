"""A flapping upstream for the demos: up, then down, then slow, every half minute.

Run it alone with ``python -m gracefail.demo.upstream`` (127.0.0.1:8001). The
schedule repeats every ``period`` seconds: answers for the first part, refuses
to answer properly (502-worthy) for ``down`` seconds, then hangs for ``slow``
seconds (504-worthy, since the shops call it with a short timeout).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

__all__ = ["FlappingUpstream"]

START = time.monotonic()


class FlappingUpstream:
    """A pure-ASGI app whose health follows a clock: "up", "down" or "slow"."""

    def __init__(self, period: float = 30.0, down: float = 6.0, slow: float = 6.0):
        self.period, self.down, self.slow = period, down, slow
        self.forced: str | None = None

    def state(self) -> str:
        if self.forced:
            return self.forced
        phase = (time.monotonic() - START) % self.period
        if phase >= self.period - self.slow:
            return "slow"
        if phase >= self.period - self.slow - self.down:
            return "down"
        return "up"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/_state":
            # Lets a test (or you) force a state: /_state?up, ?down, ?slow, ?auto
            wanted = scope["query_string"].decode() or "auto"
            self.forced = None if wanted == "auto" else wanted
            await self._json(send, 200, {"state": self.state()})
            return
        state = self.state()
        if state == "slow":
            # Longer than the shops wait (2 s), short enough not to hold up a shutdown.
            await asyncio.sleep(4)
        if state != "up":
            await self._json(send, 503, {"error": "upstream unavailable"})
            return
        phase = (time.monotonic() - START) % self.period
        await self._json(
            send, 200, {"item": scope["path"].rsplit("/", 1)[-1], "uptime_phase": round(phase, 1)}
        )

    @staticmethod
    async def _json(send: Any, status: int, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(FlappingUpstream(), host="127.0.0.1", port=8001, log_level="warning")
