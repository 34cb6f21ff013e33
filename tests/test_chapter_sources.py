"""Static checks of the chapters' MyST sources, run without executing anything (seconds).

The executed build (``test_chapters.py``) catches the same mistakes, but only after about
25 minutes of execution; these fail at once.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((REPO_ROOT / "chapters").glob("*.md"))

# myst-nb 1.x: ``{glue:text}`` is a role only; these are its directives.
GLUE_DIRECTIVES = {"glue", "glue:any", "glue:figure", "glue:math", "glue:md"}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_glue_directives_exist(chapter):
    bad = [(i + 1, m.group(1)) for i, line in enumerate(chapter.read_text().splitlines())
           if (m := re.match(r"^\s*(?:```|:::)\{(glue[^}]*)\}", line)) and m.group(1) not in GLUE_DIRECTIVES]
    assert not bad, f"{chapter.name}: unknown glue directive(s) (line, name): {bad}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_glued_keys_are_glued(chapter):
    """Every key a chapter's text pastes is glued by a code cell of the same chapter."""
    text = chapter.read_text()
    pasted = set(re.findall(r"\{glue(?::[a-z]+)?\}`([A-Za-z0-9_]+)", text))
    pasted |= set(re.findall(r"^\s*```\{glue(?::[a-z]+)?\}\s+([A-Za-z0-9_]+)", text, flags=re.M))
    glued = set(re.findall(r"glue\(\s*[\"']([A-Za-z0-9_]+)[\"']", text))
    # keys built in a loop (glue(f"{name}_l2_{tag}", ...)): each f-string is a pattern
    fstrings = re.findall(r'glue\(\s*f"([^"]+)"', text) + re.findall(r"glue\(\s*f'([^']+)'", text)
    patterns = [re.compile("".join("[A-Za-z0-9_]*" if part.startswith("{") else re.escape(part)
                                   for part in re.split(r"(\{[^}]*\})", f)) + "$") for f in fstrings]
    missing = sorted(k for k in pasted if k not in glued and not any(p.match(k) for p in patterns))
    assert not missing, f"{chapter.name}: pasted but never glued: {missing}"
