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
FRAMEWORKS = {"fastapi": "fastapi_app:app", "starlette": "starlette_app:app"}


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
        ),
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info")),
    ]
    print(f"gracefail demo ({framework}): open http://127.0.0.1:{port}/", flush=True)
    print(f"  the upstream on :{port + 1} is down or slow 12 s out of every 30 s", flush=True)
    await asyncio.gather(*(server.serve() for server in servers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--framework", choices=sorted(FRAMEWORKS), default="fastapi")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.framework, args.port))


if __name__ == "__main__":
    main()
