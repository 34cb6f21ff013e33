"""Small Sphinx fixes for the assimilax book (loaded through ``_config.yml`` local_extensions).

1. Jupyter Book 1.0.4 with Sphinx 7.4 emits some inline configuration scripts twice
   (``const THEBE_JS_URL = ...``, ``var togglebuttonSelector = ...``), and the browser reports
   "Identifier 'THEBE_JS_URL' has already been declared" on every page. Drop repeated scripts
   (same file and same inline body) from each page's script list, and, since some copies do not
   come through that list, from the ``<head>`` of every written page, keeping the first.
2. Load ``ipywidgets-mathjax3.js`` (in ``book_static/``) after MathJax on every page, so that
   ipywidgets 8, which typesets with the MathJax 2 API, works with MathJax 3.
"""
from __future__ import annotations

import re
from pathlib import Path


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", str(js)), attrs.get("body"), attrs.get("src"))
        if key in seen:
            continue
        seen.add(key)
        kept.append(js)
    scripts[:] = kept


_INLINE_SCRIPT = re.compile(r"^\s*<script>.*</script>\s*$")


def _dedupe_written_pages(app, exception):
    if exception is not None or app.builder is None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        head, sep, body = text.partition("</head>")
        if not sep:
            continue
        seen, kept, changed = set(), [], False
        for line in head.split("\n"):
            if _INLINE_SCRIPT.match(line):
                if line.strip() in seen:
                    changed = True
                    continue
                seen.add(line.strip())
            kept.append(line)
        if changed:
            page.write_text("\n".join(kept) + sep + body, encoding="utf-8")


def setup(app):
    app.add_js_file("ipywidgets-mathjax3.js", priority=900, defer="defer")
    app.connect("html-page-context", _dedupe_scripts, priority=999)
    app.connect("build-finished", _dedupe_written_pages)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
