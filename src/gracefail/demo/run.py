"""Run a demo shop and the flapping upstream together on 127.0.0.1.

The shop listens on ``port``, the upstream on ``port + 1``. Used by ``gracefail demo``
and by ``example_apps/run_demo.py`` (``make demo``) in gracefail's source.
"""

from __future__ import annotations

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
    upstream = FlappingUpstream()
    servers = [
        uvicorn.Server(
            uvicorn.Config(upstream, host="127.0.0.1", port=port + 1, log_level="warning")
        )
    ]
    if framework in WSGI:
        _serve_wsgi(app, port)
    else:
        servers.append(uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port)))
    print(f"gracefail demo ({framework}): open http://127.0.0.1:{port}/", flush=True)
    print(f"  the upstream on :{port + 1} is down or slow 12 s out of every 30 s", flush=True)
    print(f"  force it: http://127.0.0.1:{port + 1}/_state?down (?slow, ?up, ?auto)", flush=True)

    async def serve_all() -> None:
        await asyncio.gather(*(server.serve() for server in servers))

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
