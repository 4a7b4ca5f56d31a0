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


def overflowing_outputs(page, selector: str) -> list:
    """Printed outputs (``selector``: their ``pre`` and table elements) wider than the box they sit in, i.e.
    with a part hidden or behind a scroll bar; each as its first 80 characters."""
    return page.evaluate("""(sel) => Array.from(document.querySelectorAll(sel))
        .filter(e => e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right >
                     e.parentElement.getBoundingClientRect().right + 1)
        .map(e => e.textContent.trim().slice(0, 80))""", selector)


def cut_images(page, container: str) -> list:
    """Images drawn partly outside the nearest ``container`` element (or outside the window)."""
    return page.evaluate("""(sel) => Array.from(document.images).filter(i => i.offsetParent !== null).filter(i => {
        const r = i.getBoundingClientRect(), box = (i.closest(sel) || document.documentElement).getBoundingClientRect();
        return r.left < box.left - 1 || r.right > box.right + 1 || r.right > window.innerWidth + 1;
    }).map(i => (i.alt || i.src).slice(0, 60))""", container)


# How a slide is read in the browser: its layout size, its content size, what is cut, its notes. A slide is
# "content" when it has more than a heading and a line (a figure, an output, a list, a table or code).
SLIDE_REPORT = """() => {
    const slide = Reveal.getCurrentSlide(), cfg = Reveal.getConfig(), scale = Reveal.getScale();
    const box = document.querySelector('.reveal .slides').getBoundingClientRect();
    const shown = Array.from(slide.querySelectorAll('img, pre, table, mjx-math'))     // mjx-math: a typeset equation
        .filter(e => !e.closest('aside.notes') && e.offsetParent !== null);
    const cut = shown.filter(e => {
        const r = e.getBoundingClientRect();
        return r.top < -1 || r.bottom > window.innerHeight + 1 || r.left < -1 || r.right > window.innerWidth + 1
               || (e.tagName === 'PRE' && e.scrollWidth > e.clientWidth + 1);
    }).map(e => e.tagName + ' ' + (e.alt || e.textContent || '').trim().slice(0, 50));
    const notes = Array.from(slide.querySelectorAll('aside.notes')).filter(n => n.closest('section') === slide)
        .map(n => n.textContent.trim()).join(' ');
    const text_px = Array.from(slide.querySelectorAll('p, li, pre, td'))
        .filter(e => !e.closest('aside.notes') && e.offsetParent !== null && e.textContent.trim())
        .map(e => parseFloat(getComputedStyle(e).fontSize) * scale);
    return {index: Reveal.getIndices(), title: (slide.querySelector('h1, h2, h3') || {}).textContent || '',
            height: slide.scrollHeight, width: slide.scrollWidth, limit: [cfg.width, cfg.height], cut: cut,
            content: slide.querySelectorAll('img, .jp-OutputArea, table, ul, ol, pre').length > 0,
            notes: notes.length,
            smallest_text_px: text_px.length ? Math.min(...text_px) : null};
}"""


def slide_reports(page) -> list:
    """Go through every slide of the loaded deck (vertical ones too) and report each (``SLIDE_REPORT``)."""
    reports = []
    page.evaluate("() => Reveal.configure({transition: 'none', backgroundTransition: 'none'})")   # measure at rest
    for h, v in page.evaluate("""() => Reveal.getSlides().map(s => {
            const stack = s.parentElement.closest('section');
            const top = Array.from(document.querySelectorAll('.reveal .slides > section'));
            return stack ? [top.indexOf(stack), Array.from(stack.children).filter(c => c.tagName === 'SECTION')
                                                     .indexOf(s)] : [top.indexOf(s), 0];
        })"""):
        page.evaluate("([h, v]) => Reveal.slide(h, v)", [h, v])
        page.wait_for_function("([h, v]) => Reveal.getIndices().h === h && (Reveal.getIndices().v || 0) === v",
                               arg=[h, v], timeout=5_000)
        page.wait_for_timeout(50)
        reports.append(page.evaluate(SLIDE_REPORT))
    return reports
