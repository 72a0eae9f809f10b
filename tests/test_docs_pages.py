"""The docs hold together: every relative link and anchor resolves, and the production
page's advice works (its .gitignore lines ignore what gracefail writes into a project)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"```.*?```", re.S)


def anchors(page: Path) -> set[str]:
    """GitHub's ids for the page's headings."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(target)
    assert not broken, f"{page.name} links to what is not there: {broken}"


def test_the_readme_and_the_framework_pages_link_the_production_page() -> None:
    for page in ("django.md", "flask.md", "starlette-fastapi.md", "wsgi.md"):
        assert "](production.md)" in (ROOT / "docs" / page).read_text(encoding="utf-8"), page
    assert "](docs/production.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.flask
def test_production_gitignore_covers_what_gracefail_writes_into_a_flask_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flask")
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    from flask import Flask

    from gracefail import UpstreamError
    from gracefail.flask import Gracefail

    text = (ROOT / "docs" / "production.md").read_text(encoding="utf-8")
    [ignore] = re.findall(r"```gitignore\n(.*?)```", text, re.S)
    project = tmp_path / "shop"
    project.mkdir()
    subprocess.run([git, "init", "-q", str(project)], check=True)
    (project / ".gitignore").write_text(ignore)

    # The defaults a project gets: no GRACEFAIL_DB, the store in the instance folder.
    monkeypatch.delenv("GRACEFAIL_DB", raising=False)
    app = Flask("shop", instance_path=str(project / "instance"))
    app.config.update(SECRET_KEY="a-long-enough-secret-key-for-tests")
    app.config["GRACEFAIL"] = {"record_in_tests": True}
    Gracefail(app)

    @app.get("/prices")
    def prices() -> str:
        raise UpstreamError(502)

    assert app.test_client().get("/prices").status_code == 502
    assert Gracefail.engine(app).flush()
    written = sorted(
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts[:1]
    )
    written.remove(".gitignore")
    assert "instance/gracefail.sqlite3" in written
    ignored = subprocess.run(
        [git, "-C", str(project), "check-ignore", *written],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    Gracefail.engine(app).close()
    assert sorted(ignored) == written
