"""Execute the book's notebooks in parallel before Sphinx reads them (``_config.yml`` local_extensions).

myst-nb executes notebooks one at a time, as Sphinx reads each document; most chapters keep
one CPU core busy (small arrays: XLA dispatch, compilation), so on a 2-core machine half of it
idles through the whole build. With ``execute_notebooks: cache`` this extension runs, at
``builder-inited`` (after myst-nb has set its configuration), every MyST notebook of the table of
contents that the cache does not hold yet, ``ASSIMILAX_BOOK_JOBS`` at a time (default: the number
of CPUs, at most 4), the longest sources first, and stores each executed notebook in myst-nb's
jupyter-cache. myst-nb then reads the outputs from the cache.

Nothing else changes: the notebooks are read by myst-nb's own reader (so the cache keys match),
executed by the same function with the same working directory, timeout and error policy. A
notebook that fails here is not cached; myst-nb executes it again in its own turn, and its error
fails the build as before. From a clean ``_build`` (``make book``, the test suite) every notebook
is executed afresh; an incremental ``jupyter-book build .`` reuses the outputs of notebooks whose
code cells did not change (jupyter-cache's rule), so rebuild from clean after a library change.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
import yaml
from sphinx.util import logging

LOGGER = logging.getLogger(__name__)


def toc_entries(toc_path: Path) -> list[str]:
    """Every ``file`` a jb-book table of contents names (root, parts, chapters, sections), in
    order, as written (with or without a suffix; files that do not exist included)."""
    toc = yaml.safe_load(Path(toc_path).read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


def _toc_sources(srcdir: Path, toc_path: Path) -> list[Path]:
    """The ``.md`` files named in the table of contents that exist, in toc order."""
    paths = (srcdir / (f if f.endswith(".md") else f"{f}.md") for f in toc_entries(toc_path))
    return [p for p in paths if p.is_file()]


def _execute(path: str, notebook_json: str, timeout, allow_errors: bool) -> tuple[str, str, float, str | None]:
    """Worker: execute one notebook in its own directory; returns (path, executed json, seconds, error)."""
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.reads(notebook_json, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                                 allow_errors=allow_errors, meta_override=True)
    error = None if result.err is None else f"{result.err.__class__.__name__}: {result.err}"[:2000]
    return path, nbformat.writes(nb), float(result.time), error


def _jobs(n_notebooks: int) -> int:
    raw = os.environ.get("ASSIMILAX_BOOK_JOBS")
    if raw is not None:
        try:
            jobs = int(raw)
        except ValueError as err:
            raise ValueError(f"ASSIMILAX_BOOK_JOBS must be an integer, got {raw!r}") from err
        if jobs < 1:
            raise ValueError(f"ASSIMILAX_BOOK_JOBS must be >= 1, got {jobs}")
    else:
        jobs = min(os.cpu_count() or 1, 4)
    return max(1, min(jobs, n_notebooks))


def preexecute(app) -> None:
    nb_config = getattr(app.env, "mystnb_config", None)
    if nb_config is None or nb_config.execution_mode != "cache":
        return
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    from myst_nb.core.read import create_nb_reader

    srcdir = Path(app.srcdir)
    toc_path = Path(app.config.external_toc_path)
    if not toc_path.is_absolute():
        toc_path = srcdir / toc_path
    cache = get_cache(nb_config.execution_cache_path)
    todo = []
    for path in _toc_sources(srcdir, toc_path):
        text = path.read_text(encoding="utf-8")
        reader = create_nb_reader(str(path), app.env.myst_config, nb_config, text)
        if reader is None:
            continue  # a plain Markdown page
        notebook = reader.read(text)
        if not any(c.cell_type == "code" for c in notebook.cells):
            continue
        try:
            cache.match_cache_notebook(notebook)
            continue  # already executed (an incremental build)
        except KeyError:
            pass
        todo.append((path, notebook, len(text)))
    if not todo:
        return
    todo.sort(key=lambda t: -t[2])  # longest first: the long chapters do not finish last
    jobs = _jobs(len(todo))
    LOGGER.info(f"[parallel_execution] executing {len(todo)} notebooks, {jobs} at a time")
    t0 = time.perf_counter()
    context = multiprocessing.get_context("fork")  # Sphinx's process holds no threads of ours
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_execute, str(p), nbformat.writes(nb), nb_config.execution_timeout,
                               nb_config.execution_allow_errors) for p, nb, _ in todo]
        for fut in as_completed(futures):
            path, executed, seconds, error = fut.result()
            rel = os.path.relpath(path, srcdir)
            if error is not None:
                LOGGER.info(f"[parallel_execution] {rel} failed after {seconds:.1f} s ({error.splitlines()[0]});"
                            " myst-nb executes it again and reports the error")
                continue
            cache.cache_notebook_bundle(CacheBundleIn(nbformat.reads(executed, as_version=4), path,
                                                      data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            LOGGER.info(f"[parallel_execution] {rel} executed in {seconds:.1f} s")
    LOGGER.info(f"[parallel_execution] all notebooks in {time.perf_counter() - t0:.1f} s")


def setup(app):
    app.connect("builder-inited", preexecute, priority=900)  # after myst-nb's create_mystnb_config (500)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
