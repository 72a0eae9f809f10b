"""Run a demo shop and the flapping upstream together on 127.0.0.1 (``make demo``).

``python example_apps/run_demo.py [--framework fastapi] [--port 8000]``, the same as
``gracefail demo`` in this checkout. The FastAPI, Flask and Django shops are here; the
Starlette shop and the flapping upstream ship in the package (``src/gracefail/demo/``),
so that ``gracefail demo`` also runs from ``pip install``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gracefail.demo.run import APPS, run

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--framework", choices=sorted(APPS), default="fastapi")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    run(args.framework, args.port, apps_dir=HERE)


if __name__ == "__main__":
    main()
