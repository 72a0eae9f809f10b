"""`gracefail serve` as ingress-nginx's default backend, behind a real nginx that sends what
the controller sends: nginx.tmpl's custom error locations (custom-http-errors
"502,503,504"), one named location per code with X-Code, X-Format, X-Original-URI,
X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port and X-Request-ID, the
request rewritten to ``/``. What no Kubernetes runs here: the controller's Lua balancer
(a location answering 503 stands for a Service without endpoints) and the Helm chart."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from gracefail.serve import serve
from tests.apps.common import free_port
from tests.browser.proxies import NAV, Backends, SilentApp
from tests.browser.support import eventually
from tests.conftest import ROOT, require_binary, start_server, stop

pytestmark = pytest.mark.integration

# The labels ingress-nginx sets per location from the Ingress it was made of.
NAMESPACE, INGRESS, SERVICE, SERVICE_PORT = "shop", "web", "storefront", "8000"
CODES = (502, 503, 504)
SHIPPED = ROOT / "integrations" / "ingress-nginx"


def custom_error_location(code: int, gateway_port: int) -> str:
    """nginx.tmpl's CUSTOM_ERRORS for one code (metrics and modsecurity left out)."""
    return f"""
  location @custom_upstream-default-backend_{code} {{
    internal;
    proxy_intercept_errors off;
    proxy_set_header X-Code {code};
    proxy_set_header X-Format $http_accept;
    proxy_set_header X-Original-URI $request_uri;
    proxy_set_header X-Namespace $namespace;
    proxy_set_header X-Ingress-Name $ingress_name;
    proxy_set_header X-Service-Name $service_name;
    proxy_set_header X-Service-Port $service_port;
    proxy_set_header X-Request-ID $req_id;
    proxy_set_header Host $best_http_host;
    rewrite (.*) / break;
    proxy_pass http://127.0.0.1:{gateway_port};
  }}"""


def controller_conf(tmp: Path, port: int, backends: Backends) -> Path:
    error_pages = "".join(
        f"\n    error_page {code} = @custom_upstream-default-backend_{code};" for code in CODES
    )
    labels = (
        f'set $namespace "{NAMESPACE}"; set $ingress_name "{INGRESS}"; '
        f'set $service_name "{SERVICE}"; set $service_port "{SERVICE_PORT}";'
    )
    for folder in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        (tmp / folder).mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nmaster_process off;\nworker_processes 1;\n"
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n"
        f" proxy_temp_path {tmp}/proxy;\n fastcgi_temp_path {tmp}/fcgi;\n"
        f" uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n"
        # As the controller: a client's X-Request-ID is kept, else nginx's own id.
        " map $http_x_request_id $req_id { default $http_x_request_id; '' $request_id; }\n"
        " map $http_host $best_http_host { default $http_host; '' $host; }\n"
        f" server {{\n  listen 127.0.0.1:{port};\n"
        # A Service without endpoints: the controller's balancer answers 503.
        f"  location /no-endpoints {{\n    {labels}\n    proxy_intercept_errors on;"
        f"{error_pages}\n    return 503;\n  }}\n"
        f"  location / {{\n    {labels}\n"
        "    proxy_set_header Host $best_http_host;\n"
        "    proxy_set_header X-Request-ID $req_id;\n"
        "    proxy_read_timeout 1s;\n"
        f"    proxy_intercept_errors on;{error_pages}\n"
        f"    proxy_pass http://127.0.0.1:{backends.app_port};\n  }}\n"
        + "".join(custom_error_location(code, backends.gateway_port) for code in CODES)
        + "\n }\n}\n"
    )
    return conf


class Controller:
    def __init__(self, tmp: Path) -> None:
        nginx = require_binary("/usr/sbin/nginx", "apt-get install nginx-light")
        self.backends = Backends(tmp)
        try:
            self.port = free_port()
            conf = controller_conf(tmp, self.port, self.backends)
            checked = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True)
            assert checked.returncode == 0, checked.stderr
            self.nginx = start_server([nginx, "-c", str(conf)], self.port)
        except BaseException:
            self.backends.stop()
            raise
        self.base = f"http://127.0.0.1:{self.port}"

    def failures(self, incident: str) -> list[sqlite3.Row]:
        with sqlite3.connect(self.backends.store) as db:
            db.row_factory = sqlite3.Row
            return db.execute(
                "SELECT * FROM gracefail_failures WHERE incident = ? ORDER BY id", (incident,)
            ).fetchall()

    def recorded(self, incident: str, count: int = 1) -> list[sqlite3.Row]:
        return eventually(
            lambda: (rows := self.failures(incident)) and len(rows) >= count and rows,
            what=f"incident {incident} recorded",
        )

    def stop(self) -> None:
        stop(self.nginx)
        self.backends.stop()


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    running = Controller(tmp_path_factory.mktemp("ingress-nginx"))
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("path", "status", "cause"),
    [
        pytest.param("/ok?step=2", 502, "app_unreachable", id="502-pod-refuses"),
        pytest.param("/no-endpoints", 503, "app_unavailable", id="503-no-endpoints"),
    ],
)
def test_the_page_with_the_status_and_the_ingress_labels(
    controller: Controller, path: str, status: int, cause: str
) -> None:
    incident = f"req-{status}"
    response = httpx.get(f"{controller.base}{path}", headers={**NAV, "x-request-id": incident})
    assert response.status_code == status
    assert response.headers["x-gracefail-incident"] == incident
    assert response.headers["cache-control"] == "no-store"
    assert "script-src 'sha256-" in response.headers["content-security-policy"]
    assert 'id="gf-config"' in response.text
    # X-Original-URI, not the "/" the controller rewrote the request to.
    assert f'id="gf-link" href="{path}"' in response.text
    (row,) = controller.recorded(incident)
    assert (row["source"], row["cause"]) == ("gateway", cause)
    assert row["status"] == 502  # a 503 carries the 502 page; its cause tells them apart
    assert row["upstream"] == f"{NAMESPACE}/{INGRESS}/{SERVICE}"
    assert row["route"] == ("/ok" if path.startswith("/ok") else None)


def test_x_format_carries_the_clients_accept(controller: Controller) -> None:
    problem = httpx.get(f"{controller.base}/ok", headers={"accept": "application/json"})
    assert problem.status_code == 502
    assert problem.headers["content-type"].startswith("application/problem+json")
    assert problem.json()["status"] == 502
    text = httpx.get(f"{controller.base}/ok", headers={"accept": "*/*"})
    assert text.headers["content-type"].startswith("text/plain")
    # nginx's own request id when the client sent none: 32 hex digits, a valid incident.
    assert len(text.headers["x-gracefail-incident"]) == 32


def test_504_when_the_pod_does_not_answer_in_time(controller: Controller) -> None:
    silent = SilentApp(controller.backends.app_port)
    try:
        response = httpx.get(
            f"{controller.base}/ok", headers={**NAV, "x-request-id": "req-slow"}, timeout=30
        )
    finally:
        silent.close()
    assert response.status_code == 504
    (row,) = controller.recorded("req-slow")
    assert (row["status"], row["cause"]) == (504, "app_timeout")


def test_beacons_reach_the_gateway_through_the_error_location(controller: Controller) -> None:
    shown_before = controller.backends.report()["pages_shown"]
    page = httpx.get(f"{controller.base}/ok", headers=NAV)
    config = json.loads(page.text.split('id="gf-config">', 1)[1].split("</script>", 1)[0])
    beacon = {"token": config["token"], "kind": "shown", "attempt": 0, "elapsed_ms": 40,
              "locale": "en"}  # fmt: skip
    response = httpx.post(
        f"{controller.base}{config['beacon']}",
        content=json.dumps(beacon).encode(),
        headers={"content-type": "text/plain;charset=UTF-8", "sec-fetch-site": "same-origin",
                 "origin": controller.base},
    )  # fmt: skip
    assert response.status_code == 204
    eventually(
        lambda: controller.backends.report()["pages_shown"] == shown_before + 1,
        what="shown beacon recorded",
    )


def test_the_probe_path_of_the_charts_default_backend(controller: Controller) -> None:
    """The ingress-nginx chart probes the default backend with GET /healthz."""
    before = controller.backends.report()
    health = httpx.get(f"http://127.0.0.1:{controller.backends.gateway_port}/healthz")
    assert health.status_code == 200
    after = controller.backends.report()
    assert (after["failures"], after["probes"]) == (before["failures"], before["probes"])


def test_the_apps_own_502_is_replaced_and_counted_twice(controller: Controller) -> None:
    """custom-http-errors turns proxy_intercept_errors on: the app's own 502 (the
    middleware's page) goes to the default backend too. Both record the failure, under
    the one X-Request-ID the controller gave them."""
    controller.backends.start_app()
    try:
        assert httpx.get(f"{controller.base}/ok").text == "hello"
        response = httpx.get(
            f"{controller.base}/connect", headers={**NAV, "x-request-id": "req-twice"}
        )
    finally:
        controller.backends.stop_app()
    assert response.status_code == 502
    rows = controller.recorded("req-twice", count=2)
    assert sorted(row["source"] for row in rows) == ["app", "gateway"]


def chart_args(extra_args: dict[str, object]) -> list[str]:
    """What the chart's default-backend Deployment makes of defaultBackend.extraArgs."""
    return [f"--{key}" if value in ("", None) else f"--{key}={value}"
            for key, value in sorted(extra_args.items())]  # fmt: skip


def test_the_helm_values_and_the_configmap_match_what_is_tested_here() -> None:
    values = yaml.safe_load((SHIPPED / "values.yaml").read_text())
    codes = ",".join(str(code) for code in CODES)
    assert values["controller"]["config"]["custom-http-errors"] == codes
    configmap = yaml.safe_load((SHIPPED / "configmap.yaml").read_text())
    assert configmap["data"]["custom-http-errors"] == codes
    backend = values["defaultBackend"]
    assert backend["enabled"] is True
    args = chart_args(backend["extraArgs"])
    assert args == ["--host=0.0.0.0", f"--port={backend['port']}"]
    # `gracefail serve` takes the chart's arguments.
    context = serve.make_context("serve", args)
    assert (context.params["host"], context.params["port"]) == ("0.0.0.0", backend["port"])
    envs = {env["name"]: env["valueFrom"]["secretKeyRef"] for env in backend["extraEnvs"]}
    assert set(envs) == {"GRACEFAIL_SECRET", "GRACEFAIL_DB"}
    assert all(ref["name"] == "gracefail" for ref in envs.values())
