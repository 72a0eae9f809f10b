"""The demo shop on Flask: views call the flaky inventory service with requests."""

from __future__ import annotations

import os

import requests
from flask import Flask, request

from gracefail.flask import Gracefail

UPSTREAM = os.environ.get("DEMO_UPSTREAM", "http://127.0.0.1:8001")

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("GRACEFAIL_SECRET", "demo-secret-change-me-in-production")
app.config["GRACEFAIL"] = {
    "brand": {"name": "Acme Shop", "color": "#b91c1c"},
    "status_page_url": "https://status.example.com",
    "retry": {"retry_after": 2, "base": 1.0, "cap": 8.0},
}
Gracefail(app)


def inventory(item: str) -> dict[str, object]:
    # requests' Timeout becomes a 504 page, a refused connection or an upstream 5xx
    # (through raise_for_status) a 502 page: the view needs no try/except.
    response = requests.get(f"{UPSTREAM}/inventory/{item}", timeout=2)
    response.raise_for_status()
    data: dict[str, object] = response.json()
    return data


@app.get("/")
def home() -> str:
    data = inventory("anvil")
    return f"<h1>Acme Shop (Flask)</h1><p>Upstream phase {data['uptime_phase']} s.</p>"


@app.post("/order")
def order() -> str:
    inventory(request.form.get("item", "anvil"))
    return "<p>Ordered.</p>"


@app.get("/api/items/<name>")
def api_item(name: str) -> dict[str, object]:
    return inventory(name)
