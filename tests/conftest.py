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


@pytest.fixture
def count_compiles():
    """``count_compiles(fn)``: how many XLA programs ``fn()`` compiles (JAX's backend-compile
    monitoring event), for tests that a repeated fit reuses its compiled step."""
    import jax.monitoring

    def count(fn):
        n = [0]

        def listener(event, duration, **kwargs):
            if event == "/jax/core/compile/backend_compile_duration":
                n[0] += 1

        jax.monitoring.register_event_duration_secs_listener(listener)
        try:
            fn()
        finally:
            jax.monitoring.unregister_event_duration_listener(listener)
        return n[0]

    return count


# ---------------------------------------------------------------------------------------------
# The executed book, built once per test session and shared by tests/test_chapters.py (build,
# pages, cell errors) and tests/test_rendered_pages.py (headless browser). The build starts in
# the background as soon as collection has found a test that needs it, so that it runs while
# the library's tests do (they keep about one core busy): on 2 cores the two together take
# little more than the longer of them.
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import NamedTuple  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parents[1]
BOOK_TIMEOUT_S = 3600
_BOOK: dict = {}


class BookBuild(NamedTuple):
    returncode: int
    log: str
    html_dir: Path
    seconds: float


def _start_book_build() -> None:
    """``jupyter-book build . --builder html -n -W --keep-going`` from a clean ``_build``
    (exactly what ``make book`` runs), with the venv's jupyter-book next to ``sys.executable``,
    in its own process group (so that an interrupted session can stop its kernels too)."""
    jb = Path(sys.executable).with_name("jupyter-book")
    if not jb.exists():
        _BOOK["error"] = f"jupyter-book not found next to {sys.executable}; run `make install`"
        return
    shutil.rmtree(REPO_ROOT / "_build", ignore_errors=True)
    env = dict(os.environ)
    # This conftest forces 4 host devices for the sharding tests; chapters run as `make book` does.
    flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=4", "").strip()
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    _BOOK.update(log=log, t0=time.perf_counter(), proc=subprocess.Popen(
        [str(jb), "build", ".", "--builder", "html", "-n", "-W", "--keep-going"],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True))


def _stop_book_build() -> None:
    proc = _BOOK.get("proc")
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    if not _BOOK and any("book_build" in getattr(item, "fixturenames", ()) for item in session.items):
        _start_book_build()


def pytest_sessionfinish(session, exitstatus):
    _stop_book_build()


@pytest.fixture(scope="session")
def book_build() -> BookBuild:
    """The build started after collection (started here if it was not), waited for."""
    if not _BOOK:
        _start_book_build()
    if "error" in _BOOK:
        pytest.fail(_BOOK["error"])
    proc = _BOOK["proc"]
    try:
        proc.wait(timeout=max(1.0, BOOK_TIMEOUT_S - (time.perf_counter() - _BOOK["t0"])))
        returncode = proc.returncode
    except subprocess.TimeoutExpired:
        _stop_book_build()
        returncode = -9
    seconds = time.perf_counter() - _BOOK["t0"]
    _BOOK["log"].seek(0)
    log = _BOOK["log"].read()
    if returncode == -9:
        log += f"\n[conftest] the build was stopped after {BOOK_TIMEOUT_S} s\n"
    build = REPO_ROOT / "_build"
    build.mkdir(exist_ok=True)
    (build / "jupyter-book-build.log").write_text(log)
    return BookBuild(returncode, log, build / "html", seconds)
