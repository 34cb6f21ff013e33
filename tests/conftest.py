"""Strict, reproducible settings for the whole suite.

float64 on (the Kalman references need it), rank promotion raises so that accidental
broadcasting between mismatched shapes is an error, and hypothesis runs a bounded number of
examples without deadlines (the first call of each test includes JAX compilation).
"""
import os
import sys
from pathlib import Path

# the book's Sphinx extensions (book_ext/, loaded by _config.yml's local_extensions) for the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book_ext"))

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

from hypothesis import settings  # noqa: E402

settings.register_profile("assimilax", max_examples=15, deadline=None, derandomize=True)
settings.load_profile("assimilax")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after every test module. The suite compiles thousands of
    XLA programs in one process; kept alive, their memory mappings and code pages accumulate
    (a full run at f9ccd8f died with a segmentation fault inside XLA's compiler after about
    400 tests, while each module alone passes). Modules do not share compiled state on purpose,
    so this costs only the recompilation of library functions that several modules call."""
    yield
    jax.clear_caches()


# ---------------------------------------------------------------------------------------------
# The executed book, built once per test session and shared by tests/test_chapters.py (build,
# pages, cell errors) and tests/test_rendered_pages.py (headless browser).
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import NamedTuple  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parents[1]


class BookBuild(NamedTuple):
    returncode: int
    log: str
    html_dir: Path
    seconds: float


@pytest.fixture(scope="session")
def book_build() -> BookBuild:
    """``jupyter-book build . --builder html -n -W --keep-going`` from a clean ``_build``
    (exactly what ``make book`` runs), with the venv's jupyter-book next to ``sys.executable``."""
    jb = Path(sys.executable).with_name("jupyter-book")
    if not jb.exists():
        pytest.fail(f"jupyter-book not found next to {sys.executable}; run `make install`")
    build = REPO_ROOT / "_build"
    shutil.rmtree(build, ignore_errors=True)
    env = dict(os.environ)
    # This conftest forces 4 host devices for the sharding tests; chapters run as `make book` does.
    flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=4", "").strip()
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(jb), "build", ".", "--builder", "html", "-n", "-W", "--keep-going"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=3600,
    )
    seconds = time.perf_counter() - t0
    log = proc.stdout + "\n" + proc.stderr
    build.mkdir(exist_ok=True)
    (build / "jupyter-book-build.log").write_text(log)
    return BookBuild(proc.returncode, log, build / "html", seconds)
