"""Fixtures for the tests that drive a real browser (Debian's Chromium through Playwright).

Where Chromium or Playwright is missing these tests skip with the reason, except in CI (``CI`` set),
where a missing browser is a failure: CI installs both (``.ci/run``). Every page is loaded with the
network cut off: any request that is not for a local file, a data: URL or 127.0.0.1 is aborted and
recorded, and the tests assert there were none.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"
_spec = importlib.util.spec_from_file_location("bookbuild", BOOK / "bookbuild.py")
bookbuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bookbuild)
LOCAL_PREFIXES = ("file://", "data:", "blob:", "about:", "http://127.0.0.1", "ws://127.0.0.1")


def _unavailable(reason: str):
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (CI must run the browser tests: .ci/run installs Chromium and Playwright)")
    pytest.skip(reason)


def chromium_executable() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (Playwright ``Browser``) started from the system's executable."""
    executable = chromium_executable()
    if executable is None:
        _unavailable("Chromium not found (install Debian's package: apt-get install chromium, or set CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


class PageLog:
    """What a page did that a reader would not want: console errors, uncaught exceptions, failed
    requests, and requests that tried to leave the machine (aborted)."""

    def __init__(self):
        self.console_errors, self.page_errors, self.failed, self.external = [], [], [], []

    def problems(self):
        return {name: items for name, items in (("console errors", self.console_errors),
                                                ("page errors", self.page_errors),
                                                ("failed requests", self.failed),
                                                ("requests to the network", self.external)) if items}


@pytest.fixture
def offline_page(chromium):
    """``open(url) -> (page, log)``: a new page with the network cut off and its problems recorded."""
    contexts = []

    def open_page(url: str, width: int = 1280, height: int = 900, wait_until: str = "load"):
        context = chromium.new_context(viewport={"width": width, "height": height})
        contexts.append(context)
        log = PageLog()

        def route(r):
            if r.request.url.startswith(LOCAL_PREFIXES):
                r.continue_()
            else:
                log.external.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and log.console_errors.append(f"{m.text} ({m.location})"))
        page.on("pageerror", lambda e: log.page_errors.append(str(e)))
        page.on("requestfailed", lambda r: r.url not in log.external and log.failed.append(f"{r.url}: {r.failure}"))
        page.goto(url, wait_until=wait_until)
        return page, log

    yield open_page
    for context in contexts:
        context.close()


def _text(stream) -> str:
    return stream.decode(errors="replace") if isinstance(stream, bytes) else (stream or "")


def run_build(args, env_extra, timeout):
    """Run a book build in test mode; on failure or timeout, fail with the end of its output (MyST-NB logs
    which chapter it is executing, so a stuck chapter is named)."""
    env = {**os.environ, "CAPSEDU_TEST_MODE": "1", "MPLBACKEND": "Agg", **env_extra}
    try:
        result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(args)} still running after {timeout} s; its output so far:\n"
                    f"{_text(exc.stdout)[-4000:]}\n{_text(exc.stderr)[-4000:]}", pytrace=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """The HTML book and the slide decks, built in test mode from the working tree (as ``make html`` and
    ``make slides`` do, with a fresh cache so every chapter really executes). The decks reuse the
    chapters the HTML build executed."""
    if not (ROOT / "node_modules" / "mathjax" / "package.json").is_file():
        _unavailable("node_modules is missing: run `npm ci` (make test does it)")
    out = tmp_path_factory.mktemp("book")
    env = {"CAPSEDU_BOOK_CACHE": str(out / "cache")}
    run_build(["-m", "sphinx", "-b", "html", "-W", "--keep-going", str(BOOK), str(out / "html")], env, 1500)
    run_build([str(BOOK / "bookbuild.py"), "slides", str(out / "slides")], env, 600)
    return {"html": out / "html", "slides": out / "slides", "cache": out / "cache"}
