"""Every built page, loaded in headless Chromium: no JavaScript console error, no missing image,
widgets rendered from the book's own JavaScript, and a screenshot under ``_build/screenshots/``.

The browser is driven over the Chrome DevTools Protocol on a pipe (``--remote-debugging-pipe``:
messages are JSON terminated by a NUL byte, the browser reads fd 3 and writes fd 4), so no
third-party driver is needed. The machine has no network access worth relying on, so anything
a page fetches from outside the book shows up as a console error. Skipped, with a message, only
when no Chromium is installed (``.ci/run`` installs Debian's ``chromium``).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--hide-scrollbars", "--remote-debugging-pipe"]
WIDTH = 1280
MAX_SHOT_HEIGHT = 16000


class CDP:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, user_data_dir: str):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        hi_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)

        def child_fds():  # the browser reads commands on fd 3 and writes replies on fd 4
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, pass_fds=(3, 4, hi_r, hi_w))
        for fd in (to_browser_r, from_browser_w, hi_r, hi_w):
            os.close(fd)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict | None:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply is None:
                raise TimeoutError(f"no reply to {method} within {timeout} s")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if any(e.get("method") == method for e in self.events):
                return True
            msg = self._read_message(deadline)
            if msg is None:
                return False
            self.events.append(msg)

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (msg := self._read_message(deadline)) is not None:
            self.events.append(msg)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src") or "")


def built_pages(html_dir: Path) -> list[Path]:
    skip = ("_static", "_sources", "_images", "reports")
    return sorted(p for p in html_dir.rglob("*.html")
                  if not p.relative_to(html_dir).parts[0] in skip)


def console_errors(events: list[dict]) -> list[str]:
    errors = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            errors.append("Uncaught " + (d.get("exception", {}).get("description") or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console.error: " + " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
    return errors


WAIT_READY = """
new Promise(resolve => {
  const mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
  const start = Date.now();
  const widgetsDone = () => !document.querySelector(
      'script[type="application/vnd.jupyter.widget-view+json"]')
    || document.querySelectorAll('.jupyter-widgets').length > 0 || Date.now() - start > 20000;
  const poll = () => widgetsDone() ? setTimeout(() => resolve(true), 500) : setTimeout(poll, 200);
  (mj ? mj.then(poll, poll) : poll());
})
"""

PAGE_FACTS = """
JSON.stringify({
  broken: Array.from(document.images)
      .filter(i => i.complete && i.naturalWidth === 0 && i.getAttribute('loading') !== 'lazy')
      .map(i => i.currentSrc || i.src),
  widgetViews: document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]').length,
  widgets: document.querySelectorAll('.jupyter-widgets').length,
  sliders: document.querySelectorAll('.widget-slider, .jupyter-widget-slider').length,
  widgetImages: Array.from(document.querySelectorAll('.widget-image, .jupyter-widget-image'))
      .filter(i => i.naturalWidth > 0).length,
  widgetErrors: (document.body.innerText.match(/Error displaying widget[^\\n]*/g) || []),
  mathErrors: document.querySelectorAll('mjx-merror, .MathJax_Error').length,
  unrenderedMath: document.querySelectorAll('.math:not(:has(mjx-container))').length,
  height: Math.ceil(document.documentElement.scrollHeight),
})
"""


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (apt-get install chromium): rendered pages not checked")
    with tempfile.TemporaryDirectory(prefix="assimilax-chromium-") as profile:
        cdp = CDP(profile)
        try:
            yield cdp
        finally:
            cdp.close()


def test_rendered_pages(book_build, browser):
    if book_build.returncode != 0 or not book_build.html_dir.is_dir():
        pytest.fail("the book did not build (see test_chapters.py); no pages to render")
    html_dir = book_build.html_dir
    shots = html_dir.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    pages = built_pages(html_dir)
    assert pages, "no HTML page was built"
    problems: dict[str, list[str]] = {}

    for page in pages:
        rel = page.relative_to(html_dir).as_posix()
        issues = []
        # 1. every <img> in the HTML points at a file that exists in the build
        parser = _Images()
        parser.feed(page.read_text())
        for src in parser.srcs:
            if not src:
                issues.append("<img> without src")
            elif not re.match(r"(data|blob):", src):
                if re.match(r"(https?:)?//", src):
                    issues.append(f"image from the network: {src}")
                elif not (page.parent / unquote(urlsplit(src).path)).is_file():
                    issues.append(f"missing image file: {src}")

        # 2. load the page in the browser and collect console errors
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget",
                               {"targetId": target, "flatten": True})["sessionId"]
        browser.events.clear()
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                     session=session)
        browser.send("Page.navigate", {"url": page.as_uri()}, session=session)
        if not browser.wait_event("Page.loadEventFired", timeout=60):
            issues.append("page did not finish loading within 60 s")
        for attempt in range(3):  # a redirect page (index.html) navigates away once more
            try:
                browser.send("Runtime.evaluate", {"expression": WAIT_READY, "awaitPromise": True},
                             session=session, timeout=60)
                break
            except RuntimeError as exc:
                if "navigated" not in str(exc) or attempt == 2:
                    raise
                browser.events[:] = [e for e in browser.events if e.get("method") != "Page.loadEventFired"]
                browser.wait_event("Page.loadEventFired", timeout=30)
        browser.pump(0.5)
        facts = json.loads(browser.send(
            "Runtime.evaluate", {"expression": PAGE_FACTS, "returnByValue": True},
            session=session)["result"]["value"])
        issues += console_errors(browser.events)
        issues += [f"broken image in the browser: {s}" for s in facts["broken"]]
        issues += [f"math error ({facts['mathErrors']} formulas)"] if facts["mathErrors"] else []
        issues += [f"math not typeset ({facts['unrenderedMath']} blocks)"] if facts["unrenderedMath"] else []
        if facts["widgetViews"]:
            if not facts["widgets"]:
                issues.append(f"{facts['widgetViews']} widget views on the page, none rendered")
            issues += facts["widgetErrors"]

        # 3. a full-page screenshot
        height = min(max(facts["height"], 900), MAX_SHOT_HEIGHT)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
                     session=session)
        browser.pump(0.3)
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session, timeout=120)
        out = shots / (rel.removesuffix(".html").replace("/", "__") + ".png")
        out.write_bytes(base64.b64decode(shot["data"]))
        browser.send("Target.closeTarget", {"targetId": target})
        if issues:
            problems[rel] = issues

    report = "\n".join(f"{page}:\n  " + "\n  ".join(v) for page, v in problems.items())
    assert not problems, f"problems on {len(problems)} of {len(pages)} pages:\n{report}"
