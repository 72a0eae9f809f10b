"""The report in the Django admin: it renders for a staff user, refuses everyone else,
is linked from the admin index, and never reads the store for an unbounded window.

A real Django project with the admin, auth, sessions and a SQLite database is written
into a temporary folder and driven with Django's test client in a child process (this
session's Django settings are the test project's, which has no database); the report
reads a real gracefail store.
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

from gracefail.recorders.sqlite import SQLiteRecorder
from tests.conftest import ROOT
from tests.test_report_episodes import HISTORY

pytestmark = pytest.mark.django

SETTINGS = """\
SECRET_KEY = "django-insecure-admin-report-test-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "gracefail.django",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "gracefail.django.GracefailMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "adminsite_urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": __DATABASE__}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"
USE_TZ = True
GRACEFAIL = {"store": __STORE__, "record_in_tests": False}
# A fast hasher: these are test accounts, and the default takes a second per login.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
"""

URLS = """\
from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
"""

WINDOW = "since=2024-05-01T09:00:00Z&until=2024-05-01T13:00:00Z"
REPORT = "/admin/gracefail/report/"


def make_project(folder: Path, store: Path) -> dict[str, str]:
    """A Django project with the admin in ``folder``; the environment to run it with."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = SETTINGS.replace("__DATABASE__", repr(str(folder / "db.sqlite3")))
    (folder / "adminsite_settings.py").write_text(settings.replace("__STORE__", repr(str(store))))
    (folder / "adminsite_urls.py").write_text(URLS)
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "adminsite_settings",
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT / "src"), str(ROOT)]),
    }


def make_store(path: Path) -> Path:
    recorder = SQLiteRecorder(path)
    recorder.record(HISTORY)
    recorder.close()
    return path


SETUP = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
User.objects.create_user("staff", password="staff-pass-123", is_staff=True)
User.objects.create_user("member", password="member-pass-123")
"""


def setup_database(env: dict[str, str]) -> None:
    """Migrate and add two users: ``staff`` (staff) and ``member`` (not)."""
    script = "import django\ndjango.setup()\n" + SETUP
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)


def visit(env: dict[str, str], *, extra_store: str | None = None) -> dict[str, Any]:
    """Set up the database and run :func:`child` in a process of its own: what the test
    client saw."""
    result = subprocess.run(
        [sys.executable, "-c", "from tests.adapters.test_django_admin import child; child()"],
        env={**env, "ADMIN_TEST_STORE": extra_store or ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return data


def child() -> None:
    """In the child process: the requests, through Django's test client."""
    import django

    django.setup()
    exec(SETUP)  # noqa: S102 - the module's own constant
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import override_settings

    def seen(client: Client, url: str) -> dict[str, Any]:
        response = client.get(url)
        return {
            "status": response.status_code,
            "location": response.get("Location", ""),
            "body": response.content.decode(errors="replace"),
        }

    out: dict[str, Any] = {}
    anonymous = Client()
    out["anonymous"] = seen(anonymous, f"{REPORT}?{WINDOW}")
    member = Client()
    assert member.login(username="member", password="member-pass-123")
    out["member"] = seen(member, f"{REPORT}?{WINDOW}")
    staff = Client()
    assert staff.login(username="staff", password="staff-pass-123")
    out["index"] = seen(staff, "/admin/")
    out["staff"] = seen(staff, f"{REPORT}?{WINDOW}&compare=previous")
    out["default"] = seen(staff, REPORT)
    out["add"] = seen(staff, f"{REPORT}add/")
    out["too_long"] = seen(staff, f"{REPORT}?since=2000d")
    out["bad_since"] = seen(staff, f"{REPORT}?since=yesterday")
    out["bad_compare"] = seen(staff, f"{REPORT}?{WINDOW}&compare=lastweek")
    out["hostile"] = seen(staff, f"{REPORT}?route=%3Cscript%3Ealert(1)%3C/script%3E")
    missing = os.environ["ADMIN_TEST_STORE"]
    if missing:
        with override_settings(GRACEFAIL={"store": missing}):
            out["missing_too_long"] = seen(staff, f"{REPORT}?since=2000d")
            out["missing"] = seen(staff, f"{REPORT}?{WINDOW}")
    # The app ships no migration and needs none: its one model has no table.
    try:
        call_command("makemigrations", "--check", "--dry-run", verbosity=0)
        out["migrations_needed"] = False
    except SystemExit:
        out["migrations_needed"] = True
    print(json.dumps(out))


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("adminsite")
    env = make_project(folder, make_store(folder / "events.sqlite3"))
    return visit(env, extra_store=str(folder / "nothing-here.sqlite3"))


def test_the_report_renders_for_a_staff_user(seen: dict[str, Any]) -> None:
    page = seen["staff"]
    assert page["status"] == 200
    body = page["body"]
    assert "<h1>gracefail report</h1>" in body
    assert "2024-05-01T09:00:00Z to 2024-05-01T13:00:00Z (UTC)" in body
    assert '<div class="breadcrumbs">' in body, "inside the admin's frame"
    assert 'aria-label="Outage episodes over the window, coloured by source"' in body
    assert "<h2>Compared with the previous window</h2>" in body
    assert '<form class="controls" method="get"' in body
    assert 'value="previous" checked' in body
    assert "<style>\n.gfr{--fg:" in body, "the report's scoped styles, unescaped"


def test_it_is_linked_from_the_admin_index(seen: dict[str, Any]) -> None:
    index = seen["index"]
    assert index["status"] == 200
    assert f'href="{REPORT}"' in index["body"]
    assert ">Report</a>" in index["body"]


def test_everyone_else_is_refused(seen: dict[str, Any]) -> None:
    for who in ("anonymous", "member"):
        refused = seen[who]
        assert refused["status"] == 302, who
        assert refused["location"].startswith("/admin/login/?next="), who
        assert "gracefail report" not in refused["body"]


def test_it_is_read_only(seen: dict[str, Any]) -> None:
    assert seen["add"]["status"] == 404


def test_the_default_window_is_the_last_day(seen: dict[str, Any]) -> None:
    page = seen["default"]
    assert page["status"] == 200
    assert 'name="since" value="24h"' in page["body"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("too_long", "this page shows at most 92 days", id="too-long"),
        pytest.param("bad_since", "is not a time", id="bad-since"),
        pytest.param("bad_compare", "&#x27;lastweek&#x27; is not one of previous", id="compare"),
    ],
)
def test_bad_windows_are_refused_before_any_query(
    seen: dict[str, Any], case: str, message: str
) -> None:
    page = seen[case]
    assert page["status"] == 400
    assert message in page["body"]
    assert '<p class="error">' in page["body"]


def test_an_unbounded_window_never_opens_the_store(seen: dict[str, Any]) -> None:
    # With a store that does not exist, reading it would say so: the window check comes first.
    refused = seen["missing_too_long"]
    assert refused["status"] == 400
    assert "at most 92 days" in refused["body"]
    assert "no gracefail store" not in refused["body"]
    missing = seen["missing"]
    assert missing["status"] == 200
    assert "no gracefail store at" in missing["body"]


def test_what_the_query_says_is_escaped(seen: dict[str, Any]) -> None:
    body = seen["hostile"]["body"]
    assert "<script>alert(1)" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_no_migration_is_needed(seen: dict[str, Any]) -> None:
    assert seen["migrations_needed"] is False
