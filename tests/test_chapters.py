"""The executed book: every chapter runs, every page is built, nothing is broken.

The build itself (``jupyter-book build . -n -W --keep-going`` from a clean ``_build``, every
notebook executed afresh) is the session fixture ``book_build`` in ``conftest.py``; the browser
check of the rendered pages (``test_rendered_pages.py``) reuses it. Deselect both with
``-m "not slow"``.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from parallel_execution import toc_entries  # book_ext/, on the path through conftest.py

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    """Every document named in ``_toc.yml`` (root, parts, chapters, sections), without suffix."""
    entries = toc_entries(REPO_ROOT / "_toc.yml")
    return [re.sub(r"\.(md|ipynb)$", "", f) for f in entries]


def chapter_notebooks() -> list[str]:
    """The toc entries that are executable notebooks (MyST files with a jupytext kernelspec)."""
    out = []
    for f in toc_files():
        src = REPO_ROOT / f"{f}.md"
        if src.exists() and "kernelspec:" in src.read_text().split("\n---", 1)[0]:
            out.append(f)
    return out


def test_toc_lists_only_existing_files():
    missing = [f for f in toc_files() if not any((REPO_ROOT / f"{f}{s}").exists() for s in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"
    assert chapter_notebooks(), "no executable chapter found in _toc.yml"


def test_book_builds_without_warnings(book_build):
    # Sphinx's "path:line: WARNING: ..." lines (not the kernel's "[IPKernelApp] WARNING | ...")
    warnings = [ln for ln in book_build.log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL): ", ln)]
    assert book_build.returncode == 0, (
        f"jupyter-book build failed (exit {book_build.returncode}) after {book_build.seconds:.0f} s;"
        f" warnings/errors:\n" + "\n".join(warnings[:40]) + "\n--- log tail ---\n" + book_build.log[-4000:]
    )
    assert not warnings, "build passed but logged:\n" + "\n".join(warnings[:40])


def test_every_toc_entry_has_a_page(book_build):
    missing = [f for f in toc_files() if not (book_build.html_dir / f"{f}.html").is_file()]
    assert not missing, f"no HTML page built for: {missing}"


@pytest.mark.parametrize("chapter", chapter_notebooks())
def test_chapter_executed_without_cell_errors(book_build, chapter):
    page = book_build.html_dir / f"{chapter}.html"
    assert page.is_file(), f"{chapter}: no page"
    html = page.read_text()
    # myst-nb renders an error output as a traceback block; with raise_on_error the build already
    # fails, this also catches errors that were shown instead of raised.
    for marker in ("output traceback", "Traceback (most recent call last)", "ipythontb"):
        assert marker not in html, f"{chapter}: a cell produced an error ({marker!r} in the page)"
    assert re.search(r'class="cell[ "]', html), f"{chapter}: no code cell on the page"
    reports = book_build.html_dir / "reports"
    logs = sorted(reports.glob(f"**/{Path(chapter).name}*.err.log")) if reports.exists() else []
    assert not logs, f"{chapter}: execution report {logs[0]}:\n{logs[0].read_text()[-3000:]}"
    # glued numbers were resolved (an unresolved key is a warning, so the build would fail too)
    assert "glue:text" not in html and "{glue" not in html, f"{chapter}: unresolved glue role"


def test_widget_javascript_is_served_by_the_book(book_build):
    """Pages with widget state load require.js and embed-amd.js from the book, not from a CDN."""
    pages = [p for p in book_build.html_dir.rglob("*.html")
             if "application/vnd.jupyter.widget-state+json" in p.read_text()]
    if not pages:
        pytest.skip("no page of the book displays an ipywidget")
    for page in pages:
        html = page.read_text()
        scripts = re.findall(r'<script[^>]*src="([^"]+)"', html)
        assert any(s.split("?")[0].endswith("_static/require.js") for s in scripts), (page, scripts)
        assert any(s.split("?")[0].endswith("_static/embed-amd.js") for s in scripts), (page, scripts)
        remote = [s for s in scripts if re.match(r"(https?:)?//", s)]
        assert not remote, f"{page.name} loads scripts from the network: {remote}"
        assert (book_build.html_dir / "_static" / "embed-amd.js").is_file()
