"""A demo shop in front of a flapping upstream: ``gracefail demo``.

The Starlette shop (:mod:`.shop`) and the upstream (:mod:`.upstream`) ship in the
package, so the demo runs from ``pip install "gracefail[starlette]" uvicorn httpx``;
the FastAPI, Flask and Django shops are in ``example_apps/`` of gracefail's source
(``make demo FRAMEWORK=flask`` there). Nothing here is imported by ``import gracefail``.
"""
