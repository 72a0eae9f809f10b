"""What a new user meets in a fresh project of each framework, built here by the test.

Each project runs in its own Python process started from an unrelated working
directory, with the environment a developer has (no GRACEFAIL_DB, no
GRACEFAIL_RECORD_IN_TESTS), so where the store lands and what the logs say are the
ones a newcomer would see.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.apps.common import free_port
from tests.conftest import ROOT, stop

FAILING_VIEW_FLASK = """
    from flask import Flask
    from gracefail import UpstreamError
    from gracefail.flask import Gracefail

    def create_app(testing=False):
        app = Flask(__name__, instance_relative_config=True)
        app.config.update(SECRET_KEY="a-long-enough-secret-key-for-tests", TESTING=testing)
        app.config["GRACEFAIL"] = {GRACEFAIL}
        Gracefail(app)

        @app.get("/prices/")
        def prices():
            raise UpstreamError(502)

        @app.get("/bug/")
        def bug():
            raise KeyError("the app's own bug")

        return app
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRACEFAIL_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


def _run(code: str, cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def _flask_project(tmp_path: Path, gracefail: str = "{}") -> tuple[Path, Path]:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "shop.py").write_text(
        textwrap.dedent(FAILING_VIEW_FLASK).replace("{GRACEFAIL}", gracefail)
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return project, elsewhere


FLASK_REQUESTS = """
    import logging, sys
    sys.path.insert(0, sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from shop import create_app
    from gracefail.flask import Gracefail
    app = create_app(testing=sys.argv[2] == "testing")
    client = app.test_client()
    for _ in range(3):
        assert client.get("/prices/", headers={"Accept": "text/html"}).status_code == 502
    if not app.testing:  # under TESTING, Flask propagates the app's own bug to the test
        assert client.get("/bug/").status_code == 500
    Gracefail.engine(app).close()
    print(Gracefail.engine(app).config.store)
"""


def test_flask_store_defaults_to_the_instance_folder_and_logs_stay_quiet(
    tmp_path: Path,
) -> None:
    project, elsewhere = _flask_project(tmp_path)
    done = _run(FLASK_REQUESTS, elsewhere, str(project), "serving")
    store = Path(done.stdout.strip().splitlines()[-1])
    assert store == project / "instance" / "gracefail.sqlite3"
    assert store.exists(), "failures were recorded next to the project"
    assert not (elsewhere / "gracefail.sqlite3").exists(), "nothing in the working directory"
    # One traceback, for the app's own bug; none for the three failures gracefail served.
    assert done.stderr.count("Traceback") == 1, done.stderr
    assert "KeyError" in done.stderr
    assert "failed upstream" in done.stderr


def test_flask_under_testing_records_nothing(tmp_path: Path) -> None:
    project, elsewhere = _flask_project(tmp_path)
    _run(FLASK_REQUESTS, elsewhere, str(project), "testing")
    assert not (project / "instance" / "gracefail.sqlite3").exists()
    assert not (elsewhere / "gracefail.sqlite3").exists()


def test_flask_store_may_be_a_pathlib_path(tmp_path: Path) -> None:
    project, elsewhere = _flask_project(
        tmp_path, gracefail='{"store": __import__("pathlib").Path(__file__).parent / "var.db"}'
    )
    done = _run(FLASK_REQUESTS, elsewhere, str(project), "serving")
    assert done.stdout.strip().splitlines()[-1] == str(project / "var.db")
    assert (project / "var.db").exists()


DJANGO_SETTINGS = """
    from pathlib import Path
    BASE_DIR = Path(__file__).resolve().parent
    SECRET_KEY = "a-long-enough-secret-key-for-tests"
    DEBUG = {DEBUG}
    ALLOWED_HOSTS = ["*"]
    ROOT_URLCONF = "shop_urls"
    INSTALLED_APPS = ["gracefail.django"]
    MIDDLEWARE = ["gracefail.django.GracefailMiddleware"]
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    GRACEFAIL = {GRACEFAIL}
    LOGGING = {
        "version": 1,
        "handlers": {"err": {"class": "logging.StreamHandler"}},
        "loggers": {"django": {"handlers": ["err"], "level": "INFO"},
                    "gracefail": {"handlers": ["err"], "level": "INFO"}},
    }
"""
DJANGO_URLS = """
    from django.urls import path
    from gracefail import UpstreamError

    def prices(request):
        raise UpstreamError(502)

    def bug(request):
        raise KeyError("the app's own bug")

    urlpatterns = [path("prices/", prices), path("bug/", bug)]
"""
DJANGO_TESTS = """
    from django.test import SimpleTestCase

    class PricesTest(SimpleTestCase):
        def test_outage_page(self):
            response = self.client.get("/prices/", HTTP_ACCEPT="text/html")
            self.assertEqual(response.status_code, 502)
"""
DJANGO_REQUESTS = """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_settings"
    import django
    django.setup()
    from django.test import Client
    from gracefail.django.conf import get_config
    client = Client(raise_request_exception=False)
    for _ in range(3):
        assert client.get("/prices/", HTTP_ACCEPT="text/html").status_code == 502
    assert client.get("/bug/").status_code == 500
    config = get_config()
    print(config.store, config.debug)
"""


def _django_project(
    tmp_path: Path, gracefail: str = "{}", debug: bool = False
) -> tuple[Path, Path]:
    project = tmp_path / "shop"
    project.mkdir()
    settings = textwrap.dedent(DJANGO_SETTINGS).replace("{GRACEFAIL}", gracefail)
    (project / "shop_settings.py").write_text(settings.replace("{DEBUG}", str(debug)))
    (project / "shop_urls.py").write_text(textwrap.dedent(DJANGO_URLS))
    (project / "test_prices.py").write_text(textwrap.dedent(DJANGO_TESTS))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return project, elsewhere


def test_django_store_defaults_to_base_dir_and_logs_once_per_bug(tmp_path: Path) -> None:
    pytest.importorskip("django")
    project, elsewhere = _django_project(tmp_path)
    done = _run(DJANGO_REQUESTS, elsewhere, str(project))
    store, debug = done.stdout.split()
    assert Path(store) == project / "gracefail.sqlite3"
    assert debug == "False"
    assert not (elsewhere / "gracefail.sqlite3").exists()
    # Django's request logger still reports the app's own 500, not the served 502s.
    assert "Bad Gateway" not in done.stderr, done.stderr
    assert "Internal Server Error: /bug/" in done.stderr


def test_django_follows_debug_and_takes_a_path_store(tmp_path: Path) -> None:
    pytest.importorskip("django")
    project, elsewhere = _django_project(
        tmp_path, gracefail='{"store": BASE_DIR / "var" / "gracefail.sqlite3"}', debug=True
    )
    (project / "var").mkdir()
    done = _run(DJANGO_REQUESTS, elsewhere, str(project))
    store, debug = done.stdout.split()
    assert Path(store) == project / "var" / "gracefail.sqlite3"
    assert debug == "True", "DEBUG=True shows the cause unless GRACEFAIL says otherwise"


def test_django_test_runner_records_nothing(tmp_path: Path) -> None:
    pytest.importorskip("django")
    project, _ = _django_project(tmp_path)
    code = """
        import os, sys
        sys.path.insert(0, sys.argv[1])
        os.environ["DJANGO_SETTINGS_MODULE"] = "shop_settings"
        from django.core.management import execute_from_command_line
        execute_from_command_line(["manage.py", "test", "test_prices", "-v", "1"])
    """
    done = _run(code, project, str(project), check=False)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stderr
    assert not (project / "gracefail.sqlite3").exists()


def test_fastapi_testclient_under_pytest_records_nothing(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    project = tmp_path / "api"
    project.mkdir()
    (project / "main.py").write_text(
        textwrap.dedent(
            """
            from fastapi import FastAPI
            from gracefail import UpstreamError
            from gracefail.asgi import GracefailMiddleware

            app = FastAPI()
            app.add_middleware(GracefailMiddleware, secret="a-long-enough-secret-key")

            @app.get("/prices")
            def prices():
                raise UpstreamError(504)
            """
        )
    )
    (project / "test_main.py").write_text(
        textwrap.dedent(
            """
            from fastapi.testclient import TestClient
            from main import app

            def test_outage():
                with TestClient(app) as client:
                    assert client.get("/prices").status_code == 504
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_main.py"],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (project / "gracefail.sqlite3").exists()


def test_asgi_store_in_the_working_directory_is_said_at_start_up(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    code = """
        from starlette.applications import Starlette
        from gracefail.asgi import GracefailMiddleware
        GracefailMiddleware(Starlette(), secret="a-long-enough-secret-key")
    """
    done = _run(code, tmp_path)
    assert f"events are stored in {tmp_path / 'gracefail.sqlite3'}" in done.stderr


def test_a_typo_in_an_added_middleware_stops_uvicorn_naming_the_option(tmp_path: Path) -> None:
    """Starlette builds its middleware lazily, inside lifespan start-up: the error must
    still stop the server, with the option in the message, not serve 500s."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    (tmp_path / "typo_app.py").write_text(
        textwrap.dedent(
            """
            from starlette.applications import Starlette
            from gracefail.asgi import GracefailMiddleware

            app = Starlette()
            app.add_middleware(GracefailMiddleware, secret="a-long-enough-secret-key",
                               status_page_ur="https://status.example")
            """
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "typo_app:app", "--port", str(port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=30)
    finally:
        stop(proc)  # type: ignore[arg-type]
    assert proc.returncode != 0, output
    assert "did you mean 'status_page_url'" in output, output
    assert "Application startup complete" not in output
