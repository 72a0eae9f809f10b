"""A FastAPI shop whose pages depend on a flaky inventory service.

``make demo`` runs it with the flapping upstream; open http://127.0.0.1:8000/
and watch the page recover by itself each time the upstream comes back.
"""

from __future__ import annotations

import html
import os

import httpx
from fastapi import FastAPI, Form
from fastapi.responses import HTMLResponse

from gracefail import Brand, RetryPolicy
from gracefail.asgi import GracefailMiddleware

UPSTREAM = os.environ.get("DEMO_UPSTREAM", "http://127.0.0.1:8001")

app = FastAPI(title="Acme shop")
app.add_middleware(
    GracefailMiddleware,
    brand=Brand(name="Acme Shop", color="#0f766e"),
    status_page_url="https://status.example.com",
    # Short waits so the demo recovers quickly; the defaults suit production.
    retry=RetryPolicy(retry_after=2, base=1.0, cap=8.0, give_up_after=300.0),
    secret=os.environ.get("GRACEFAIL_SECRET", "demo-secret-change-me-in-production"),
)
client = httpx.AsyncClient(base_url=UPSTREAM, timeout=2.0)


async def inventory(item: str) -> dict[str, object]:
    # Any httpx timeout becomes a 504 page, a refused connection or an upstream
    # 5xx (through raise_for_status) a 502 page: no try/except needed here.
    response = await client.get(f"/inventory/{item}")
    response.raise_for_status()
    data: dict[str, object] = response.json()
    return data


PAGE = """<!doctype html><html lang=en><meta charset=utf-8>
<meta name=viewport content="width=device-width, initial-scale=1">
<title>Acme Shop</title><body style="font-family:system-ui;max-width:40rem;margin:2rem auto">
<h1>Acme Shop</h1><p>{body}</p>
<form method=post action="/order"><input type=hidden name=item value=anvil>
<button>Order an anvil</button></form>
<p><a href="/item/anvil">Anvil</a> · <a href="/item/rocket">Rocket</a></p></body></html>"""


@app.get("/", response_class=HTMLResponse)
async def home() -> str:
    data = await inventory("anvil")
    return PAGE.format(body=f"Upstream is up (phase {html.escape(str(data['uptime_phase']))} s).")


@app.get("/item/{name}", response_class=HTMLResponse)
async def item(name: str) -> str:
    data = await inventory(name)
    return PAGE.format(body=f"In stock: {html.escape(str(data['item']))}.")


@app.post("/order", response_class=HTMLResponse)
async def order(item: str = Form("anvil")) -> str:
    await inventory(item)
    return PAGE.format(body=f"Ordered one {html.escape(item)}.")


@app.get("/api/items/{name}")
async def api_item(name: str) -> dict[str, object]:
    return await inventory(name)
