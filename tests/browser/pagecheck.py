"""Checks run inside a loaded page (shared by the HTML book and the slide tests)."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

MATHJAX_DONE = """() => (window.MathJax && MathJax.startup && MathJax.startup.promise)
    ? MathJax.startup.promise.then(() => true) : false"""


def wait_for_mathjax(page, timeout_ms: int = 30_000) -> bool:
    """True once MathJax has typeset the page; False if the page loads no MathJax."""
    page.wait_for_function("() => document.readyState === 'complete'", timeout=timeout_ms)
    return bool(page.evaluate(MATHJAX_DONE))


def broken_images(page) -> list:
    return page.evaluate("""() => Array.from(document.images)
        .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 120))""")


def math_report(page, selector: str) -> dict:
    """How many math elements (``selector``) the page has, how many MathJax typeset, and MathJax errors."""
    return page.evaluate("""(sel) => {
        const math = Array.from(document.querySelectorAll(sel));
        return {math: math.length,
                typeset: math.filter(m => m.querySelector('mjx-container') || m.tagName === 'MJX-CONTAINER').length,
                containers: document.querySelectorAll('mjx-container').length,
                errors: Array.from(document.querySelectorAll('mjx-merror, [data-mjx-error]'))
                             .map(e => e.getAttribute('data-mjx-error') || e.textContent).slice(0, 5),
                raw_dollars: Array.from(document.querySelectorAll('p, li'))
                             .filter(e => /\\$[^$\\s][^$]*\\$/.test(e.textContent) && !e.closest('pre, code'))
                             .map(e => e.textContent.slice(0, 80)).slice(0, 5)};
    }""", selector)


_ID = re.compile(r'\bid="([^"]+)"')


def broken_local_links(page, site_root: Path) -> list:
    """Links of the page to files under ``site_root`` that do not exist, or to anchors that the target
    page does not have. Links to the web are not followed (the tests run offline)."""
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    ids_cache = {}
    broken = []
    for href in hrefs:
        url = urlparse(href)
        if url.scheme != "file":
            continue
        target = Path(unquote(url.path))
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(href)
            continue
        if url.fragment and target.suffix == ".html":
            if target not in ids_cache:
                ids_cache[target] = set(_ID.findall(target.read_text(encoding="utf-8")))
            if unquote(url.fragment) not in ids_cache[target]:
                broken.append(href)
    return broken
