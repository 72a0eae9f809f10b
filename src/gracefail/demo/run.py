"""Run a demo shop and the flapping upstream together on 127.0.0.1.

The shop listens on ``port``, the upstream on ``port + 1``. Used by ``gracefail demo``
and by ``example_apps/run_demo.py`` (``make demo``) in gracefail's source.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Final
from wsgiref.types import WSGIApplication

__all__ = ["APPS", "PACKAGED", "missing_requirements", "run"]

APPS: Final = {
    "starlette": "gracefail.demo.shop:app",
    # These three are in example_apps/ of gracefail's source, not in the package.
    "fastapi": "fastapi_app:app",
    "flask": "flask_app:app",
    "django": "django_app:application",
}
PACKAGED: Final = frozenset({"starlette"})
WSGI: Final = frozenset({"flask"})
REQUIREMENTS: Final = {
    "starlette": ("starlette", "uvicorn", "httpx"),
    "fastapi": ("fastapi", "uvicorn", "httpx"),
    "flask": ("flask", "uvicorn", "requests"),
    "django": ("django", "uvicorn", "httpx"),
}


def missing_requirements(framework: str) -> list[str]:
    """The libraries the ``framework`` demo needs that are not installed."""
    return [name for name in REQUIREMENTS[framework] if importlib.util.find_spec(name) is None]


def run(framework: str, port: int, apps_dir: Path | None = None) -> None:
    """Serve the ``framework`` shop on ``port`` and the upstream on ``port + 1``, until
    interrupted. ``apps_dir`` is where the shops that are not packaged live."""
    # Here, not at the top: `gracefail` reads this module's tables on every command.
    import asyncio

    import uvicorn

    from .upstream import FlappingUpstream

    if apps_dir is not None:
        sys.path.insert(0, str(apps_dir))
    # Before the shop is imported: it reads where its upstream is.
    os.environ.setdefault("DEMO_UPSTREAM", f"http://127.0.0.1:{port + 1}")
    module_name, attr = APPS[framework].split(":")
    app = getattr(importlib.import_module(module_name), attr)
    upstream = uvicorn.Server(
        uvicorn.Config(FlappingUpstream(), host="127.0.0.1", port=port + 1, log_level="warning")
    )
    print(f"gracefail demo ({framework}): open http://127.0.0.1:{port}/", flush=True)
    print(f"  the upstream on :{port + 1} is down or slow 12 s out of every 30 s", flush=True)
    print(f"  force it: http://127.0.0.1:{port + 1}/_state?down (?slow, ?up, ?auto)", flush=True)

    async def serve_all() -> None:
        # The shop opens its port once the upstream listens: whoever waits for the
        # shop's port (a test, a browser) may call the upstream straight away.
        upstream_serving = asyncio.create_task(upstream.serve())
        while not upstream.started:
            if upstream_serving.done():
                await upstream_serving  # it could not start: its error
                return
            await asyncio.sleep(0.02)
        if framework in WSGI:
            _serve_wsgi(app, port)
            await upstream_serving
        else:
            shop = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port))
            await asyncio.gather(upstream_serving, shop.serve())

    # uvicorn shuts down on Ctrl+C, then raises it again: the demo just ends.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_all())


def _serve_wsgi(app: WSGIApplication, port: int) -> None:
    """A WSGI app on a threaded wsgiref server (fine for a demo; use gunicorn in production)."""
    import socketserver
    import threading
    from wsgiref.simple_server import WSGIServer, make_server

    class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server("127.0.0.1", port, app, server_class=ThreadingWSGIServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
