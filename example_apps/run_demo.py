"""Run a demo app and the flapping upstream together on 127.0.0.1.

``python example_apps/run_demo.py [--framework fastapi] [--port 8000]``
(the same as ``gracefail demo``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRAMEWORKS = {
    "fastapi": "fastapi_app:app",
    "starlette": "starlette_app:app",
    "flask": "flask_app:app",
    "django": "django_app:application",
}
WSGI = {"flask"}


async def serve(framework: str, port: int) -> None:
    import uvicorn

    sys.path.insert(0, str(HERE))
    os.environ.setdefault("DEMO_UPSTREAM", f"http://127.0.0.1:{port + 1}")
    module_name, attr = FRAMEWORKS[framework].split(":")
    app = getattr(importlib.import_module(module_name), attr)
    upstream = importlib.import_module("upstream").app
    servers = [
        uvicorn.Server(
            uvicorn.Config(upstream, host="127.0.0.1", port=port + 1, log_level="warning")
        )
    ]
    if framework in WSGI:
        serve_wsgi(app, port)
    else:
        servers.append(uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port)))
    print(f"gracefail demo ({framework}): open http://127.0.0.1:{port}/", flush=True)
    print(f"  the upstream on :{port + 1} is down or slow 12 s out of every 30 s", flush=True)
    await asyncio.gather(*(server.serve() for server in servers))


def serve_wsgi(app: object, port: int) -> None:
    """A WSGI app on a threaded wsgiref server (fine for a demo; use gunicorn in production)."""
    import socketserver
    import threading
    from wsgiref.simple_server import WSGIServer, make_server

    class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server("127.0.0.1", port, app, server_class=ThreadingWSGIServer)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--framework", choices=sorted(FRAMEWORKS), default="fastapi")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.framework, args.port))


if __name__ == "__main__":
    main()
