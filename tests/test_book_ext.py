"""The book's Sphinx extensions that can be checked without building the book."""
from __future__ import annotations

from pathlib import Path

import parallel_execution as pe  # book_ext/, on the path through conftest.py
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_toc_sources_are_the_toc_files_in_order(tmp_path):
    (tmp_path / "ch").mkdir()
    for f in ("intro.md", "ch/a.md", "ch/b.md", "ch/c.md"):
        (tmp_path / f).write_text("# x\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: P\n    chapters:\n      - file: ch/b\n"
        "        sections:\n          - file: ch/a.md\n      - file: ch/missing\n  - caption: Q\n"
        "    chapters:\n      - file: ch/c\n")
    got = pe._toc_sources(tmp_path, tmp_path / "_toc.yml")
    assert [p.relative_to(tmp_path).as_posix() for p in got] == ["intro.md", "ch/b.md", "ch/a.md", "ch/c.md"]


def test_jobs_reads_the_environment(monkeypatch):
    monkeypatch.setenv("ASSIMILAX_BOOK_JOBS", "3")
    assert pe._jobs(10) == 3
    assert pe._jobs(2) == 2  # never more workers than notebooks
    monkeypatch.delenv("ASSIMILAX_BOOK_JOBS")
    assert 1 <= pe._jobs(10) <= 4
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("ASSIMILAX_BOOK_JOBS", bad)
        with pytest.raises(ValueError, match="ASSIMILAX_BOOK_JOBS"):
            pe._jobs(5)


def test_config_executes_through_the_cache():
    """The parallel pre-execution only acts in cache mode; force mode would execute twice."""
    import yaml
    cfg = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "cache"
    assert cfg["sphinx"]["local_extensions"].get("parallel_execution") == "book_ext"
