"""Planned maintenance in Django: staff users pass (with the banner header), everyone else
gets the 503 page, through both the sync and the async handler.

A real project with auth, sessions and a SQLite database runs in a child process (this
session's Django settings are the test project's, which has no database), driven by
Django's test clients; maintenance is switched in a real store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")

from tests.conftest import ROOT

pytestmark = pytest.mark.django

SETTINGS = """\
SECRET_KEY = "django-insecure-maintenance-test-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "gracefail.django",
]
MIDDLEWARE = [
    "gracefail.django.GracefailMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "mm_urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": __DATABASE__}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
GRACEFAIL = {"store": __STORE__, "record_in_tests": True, "maintenance": True,
             "maintenance_paths": ["/healthz"]}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
"""

URLS = """\
from django.http import HttpResponse
from django.urls import path

def home(request):
    return HttpResponse("the real page")

async def ahome(request):
    return HttpResponse("the real async page")

urlpatterns = [
    path("", home),
    path("async", ahome),
    path("healthz", lambda request: HttpResponse("ok")),
]
"""


def child() -> None:
    """In the child process: switch on, then the requests through both test clients."""
    import asyncio

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import AsyncClient, Client

    from gracefail import maintenance

    call_command("migrate", verbosity=0)
    User.objects.create_user("staff", password="staff-pass-123", is_staff=True)
    User.objects.create_user("member", password="member-pass-123")
    User.objects.create_user("gone", password="gone-pass-123", is_staff=True, is_active=False)
    import io

    from django.core.management import CommandError

    def manage(*args: str) -> str:
        out = io.StringIO()
        call_command("gracefail_maintenance", *args, stdout=out)
        return out.getvalue()

    # The store is the project's GRACEFAIL["store"]: no --store needed.
    out: dict[str, Any] = {"on": manage("on", "--for", "15m", "--message", "Database upgrade")}
    try:
        manage("on", "--for", "15m", "--until", "2099-01-01T00:00:00Z")
    except CommandError as exc:
        out["bad"] = str(exc)

    def seen(response: Any) -> dict[str, Any]:
        return {
            "status": response.status_code,
            "banner": response.get("X-Gracefail-Maintenance"),
            "retry_after": response.get("Retry-After"),
            "body": response.content.decode(errors="replace"),
        }

    nav = {"HTTP_ACCEPT": "text/html", "HTTP_SEC_FETCH_MODE": "navigate"}
    out["anonymous"] = seen(Client().get("/", **nav))
    member = Client()
    assert member.login(username="member", password="member-pass-123")
    out["member"] = seen(member.get("/", **nav))
    staff = Client()
    assert staff.login(username="staff", password="staff-pass-123")
    out["staff"] = seen(staff.get("/", **nav))
    out["health"] = seen(Client().get("/healthz"))

    async def async_visits() -> None:
        anonymous = AsyncClient()
        out["async_anonymous"] = seen(await anonymous.get("/async", **nav))
        astaff = AsyncClient()
        assert await astaff.alogin(username="staff", password="staff-pass-123")
        out["async_staff"] = seen(await astaff.get("/async", **nav))

    asyncio.run(async_visits())
    # Django's test client keeps sessions in the database; the inactive user cannot log
    # in at all, so is_active is checked through force_login.
    gone = Client()
    gone.force_login(User.objects.get(username="gone"))
    out["inactive_staff"] = seen(gone.get("/", **nav))
    out["status"] = manage("status", "--json")
    out["off"] = manage("off")
    out["after"] = maintenance.status(os.environ["MM_STORE"]) is None
    print(json.dumps(out))


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("mmsite")
    store = str(folder / "events.sqlite3")
    settings = SETTINGS.replace("__DATABASE__", repr(str(folder / "db.sqlite3")))
    (folder / "mm_settings.py").write_text(settings.replace("__STORE__", repr(store)))
    (folder / "mm_urls.py").write_text(URLS)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mm_settings",
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT / "src"), str(ROOT)]),
        "MM_STORE": store,
    }
    result = subprocess.run(
        [sys.executable, "-c", "from tests.adapters.test_django_maintenance import child; child()"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    data["store"] = store
    return data


@pytest.mark.parametrize("who", ["anonymous", "member", "inactive_staff", "async_anonymous"])
def test_users_get_the_maintenance_page(seen: dict[str, Any], who: str) -> None:
    page = seen[who]
    assert page["status"] == 503
    assert page["banner"] == "on"
    assert "Database upgrade" in page["body"]
    assert 800 < int(page["retry_after"]) <= 900 + 60


@pytest.mark.parametrize(
    ("who", "body"),
    [("staff", "the real page"), ("async_staff", "the real async page"), ("health", "ok")],
)
def test_staff_and_allowed_paths_pass_with_the_banner(
    seen: dict[str, Any], who: str, body: str
) -> None:
    assert seen[who]["status"] == 200
    assert seen[who]["body"] == body
    assert seen[who]["banner"] == "on"


def test_manage_py_gracefail_maintenance(seen: dict[str, Any]) -> None:
    assert seen["on"].startswith("maintenance: on since ")
    assert "message: Database upgrade" in seen["on"]
    assert seen["bad"] == "--for and --until cannot be used together: give one of them"
    status = json.loads(seen["status"])
    assert status["on"] is True
    assert status["message"] == "Database upgrade"
    assert seen["off"] == "maintenance: off\n"
    assert seen["after"] is True


def test_the_pages_served_are_recorded_as_maintenance(seen: dict[str, Any]) -> None:
    import sqlite3
    import time

    deadline = time.monotonic() + 5
    rows: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline and len(rows) < 4:
        if Path(seen["store"]).exists():
            with sqlite3.connect(seen["store"]) as conn:
                rows = conn.execute("SELECT status, cause FROM gracefail_failures").fetchall()
        time.sleep(0.05)
    assert set(rows) == {(503, "maintenance")}
    assert len(rows) == 4
