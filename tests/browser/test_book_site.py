"""The HTML book and the slide decks, built in test mode and read in a real browser with no network."""
from __future__ import annotations

import json

import pytest

from .conftest import BOOK, bookbuild
from .pagecheck import (broken_images, broken_local_links, cut_images, math_report, overflowing_outputs,
                        slide_reports, wait_for_mathjax)

pytestmark = pytest.mark.browser

CHAPTERS = sorted(p.stem for p in BOOK.glob("[0-9][0-9]_*.ipynb"))


def _cells(stem):
    return json.loads((BOOK / f"{stem}.ipynb").read_text(encoding="utf-8"))["cells"]


def _tags(stem):
    return [c.get("metadata", {}).get("tags", []) for c in _cells(stem) if c["cell_type"] == "code"]


def _png_outputs(cells):
    return sum("image/png" in o.get("data", {}) for c in cells if c.cell_type == "code" for o in c.outputs)


def _slide_figures(stem, cache):
    """Figures a chapter's deck must show: those of the cells not skipped on the slides."""
    cells = bookbuild.executed(BOOK / f"{stem}.ipynb", cache).cells       # from the build's cache: no re-run
    return _png_outputs([c for c in cells if c.metadata.get("slideshow", {}).get("slide_type") != "skip"])


def _notes_cells(stem):
    return sum(c.get("metadata", {}).get("slideshow", {}).get("slide_type") == "notes" for c in _cells(stem))


def test_every_book_page_loads_offline_with_equations_typeset_and_no_broken_links(built_book, offline_page):
    site = built_book["html"]
    pages = sorted(site.glob("*.html"))
    assert {f"{c}.html" for c in CHAPTERS} | {"index.html", "facilitator_guide.html"} <= {p.name for p in pages}
    failures = {}
    for path in pages:
        page, log = offline_page(path.as_uri())
        problems = log.problems()
        if wait_for_mathjax(page):
            math = math_report(page, ".math")
            if math["typeset"] != math["math"] or math["errors"]:
                problems["equations not typeset"] = math
        elif page.locator(".math").count():
            problems["equations but no MathJax"] = page.locator(".math").count()
        if broken_images(page):
            problems["broken images"] = broken_images(page)
        if broken_local_links(page, site):
            problems["broken links"] = broken_local_links(page, site)
        if problems:
            failures[path.name] = problems
    assert not failures, failures


def test_chapter_pages_have_contents_prev_next_figures_and_collapsed_solutions(built_book, offline_page):
    site = built_book["html"]
    page, _ = offline_page((site / "index.html").as_uri())
    contents = page.locator(".bd-article .toctree-wrapper a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert contents == [f"{c}.html" for c in CHAPTERS] + ["facilitator_guide.html"]

    total_figures = total_solutions = 0
    for i, stem in enumerate(CHAPTERS):
        page, _ = offline_page((site / f"{stem}.html").as_uri())
        wait_for_mathjax(page)
        previous = page.locator("a.left-prev").get_attribute("href")
        following = page.locator("a.right-next").get_attribute("href")
        assert previous == ("index.html" if i == 0 else f"{CHAPTERS[i - 1]}.html"), stem
        if i + 1 < len(CHAPTERS):
            assert following == f"{CHAPTERS[i + 1]}.html", stem
        figures = _png_outputs(bookbuild.executed(BOOK / f"{stem}.ipynb", built_book["cache"]).cells)
        assert page.locator(".cell_output img").count() >= figures, f"{stem}: figures missing"
        total_figures += figures
        solutions = sum("hide-cell" in tags for tags in _tags(stem))     # tests/test_book_build.py checks the tags
        total_solutions += solutions
        folded = page.locator("details.hide")                 # the solutions, and code folded above its output
        assert folded.count() == solutions + sum("hide-input" in tags for tags in _tags(stem)), stem
        assert all(not d.evaluate("d => d.open") for d in folded.all()), f"{stem}: a solution is not collapsed"
        if solutions:
            assert not folded.first.locator(".cell_input").is_visible()
            folded.first.locator("summary").click()
            assert folded.first.locator(".cell_input").is_visible()
    assert total_figures >= 20 and total_solutions >= 3 * len(CHAPTERS)


def test_printed_outputs_fit_the_text_column_and_no_figure_is_cut(built_book, offline_page):
    """At a 1280 px window, no printed result hides a part behind a scroll bar or past the column's edge."""
    failures = {}
    for stem in CHAPTERS:
        page, _ = offline_page((built_book["html"] / f"{stem}.html").as_uri(), width=1280)
        wide = overflowing_outputs(page, ".cell_output pre, .cell_output table")
        cut = cut_images(page, ".bd-article")
        if wide or cut:
            failures[stem] = {"outputs wider than the column": wide, "figures cut": cut}
    assert not failures, failures


def test_every_slide_fits_1280x720_with_readable_text_and_session_slides_have_notes(built_book, offline_page):
    """No slide of any deck is taller or wider than the screen or cuts a figure, an equation, an output or
    code; no text is smaller than 14 px; every content slide of the session deck has speaker notes (what to say
    and ask)."""
    width, height = bookbuild.SLIDE_SIZE
    failures = {}
    for deck in sorted(built_book["slides"].glob("*.slides.html")):
        page, _ = offline_page(deck.as_uri(), width=width, height=height)
        page.wait_for_selector(".reveal.ready", timeout=30_000)
        wait_for_mathjax(page)                                  # equations are measured typeset
        for r in slide_reports(page):
            problems = []
            if r["height"] > r["limit"][1] or r["width"] > r["limit"][0]:
                problems.append(f"{r['width']}x{r['height']} px, more than {r['limit'][0]}x{r['limit'][1]}")
            if r["cut"]:
                problems.append(f"cut: {r['cut']}")
            if r["smallest_text_px"] is not None and r["smallest_text_px"] < 14:
                problems.append(f"text of {r['smallest_text_px']:.1f} px")
            if deck.name == "session.slides.html" and r["content"] and r["notes"] < 80:
                problems.append("no speaker notes")
            if problems:
                failures[f"{deck.name} {r['index']['h']}.{r['index'].get('v') or 0} {r['title'][:40]!r}"] = problems
    assert not failures, failures


def test_widgets_show_static_figures_and_how_to_run_them_live(built_book, offline_page):
    site = built_book["html"]
    with_widgets = [c for c in CHAPTERS if "_widget(" in (BOOK / f"{c}.ipynb").read_text(encoding="utf-8")]
    assert "03_routing" in with_widgets and "06_decoder" in with_widgets
    for stem in with_widgets:
        page, _ = offline_page((site / f"{stem}.html").as_uri())
        static = page.locator(".capsedu-static-widget")
        assert static.count() >= 1, f"{stem}: no static rendering of its widget"
        assert "JupyterLab" in static.first.inner_text()
        assert static.first.locator("figure").count() >= 2, f"{stem}: fewer than two settings shown"
        assert not broken_images(page)
        assert page.locator(".jupyter-widgets, script[type='application/vnd.jupyter.widget-view+json']").count() == 0


def test_slide_decks_open_offline_with_figures_notes_and_only_the_tagged_code(built_book, offline_page):
    slides = built_book["slides"]
    decks = sorted(slides.glob("*.slides.html"))
    assert {d.name for d in decks} == {f"{c}.slides.html" for c in CHAPTERS} | {"session.slides.html"}
    index, log = offline_page((slides / "index.html").as_uri())
    assert not log.problems() and not broken_local_links(index, slides)
    failures = {}
    for deck in decks:
        page, log = offline_page(deck.as_uri())
        page.wait_for_selector(".reveal.ready", timeout=30_000)
        problems = log.problems()
        stem = deck.name.split(".")[0]
        math = math_report(page, ".reveal") if wait_for_mathjax(page) else None
        has_math = stem == "session" or "$" in "".join(c["source"] if isinstance(c["source"], str) else "".join(c["source"])
                                                     for c in _cells(stem) if c["cell_type"] == "markdown")
        if math is None or math["errors"] or math["raw_dollars"] or (has_math and not math["containers"]):
            problems["equations"] = math
        if broken_images(page):
            problems["broken images"] = broken_images(page)
        shown = page.locator(".reveal .slides img").count()
        if shown < (10 if stem == "session" else _slide_figures(stem, built_book["cache"])):
            problems["figures"] = shown
        notes = page.locator("aside.notes").count()      # the notes cells, and the prose moved off the slides
        if notes < (1 if stem == "session" else _notes_cells(stem)):
            problems["speaker notes"] = notes
        if stem != "session":
            tagged = sum("slides-show-input" in t for t in _tags(stem))
            code = page.locator(".jp-CodeCell .jp-InputArea").count()
            if code != tagged:
                problems["code shown"] = (code, tagged)
        if problems:
            failures[deck.name] = problems
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => location.hash.length > 2", timeout=5_000)
    assert not failures, failures


def test_session_deck_follows_the_reading_group_order(built_book, offline_page):
    page, _ = offline_page((built_book["slides"] / "session.slides.html").as_uri())
    page.wait_for_selector(".reveal.ready", timeout=30_000)
    headings = page.locator(".reveal .slides h2").all_inner_texts()
    parts = ["Motivation", "The capsule", "Routing by agreement", "The CapsNet architecture", "The margin loss",
             "The decoder", "Experiments", "Conclusion"]
    positions = []
    for n, part in enumerate(parts, 1):
        matches = [i for i, h in enumerate(headings) if h.strip().lower().startswith(f"{n}. {part}".lower())]
        assert matches, f"no divider for part {n} ({part}) in {headings[:12]}"
        positions.append(matches[0])
    assert positions == sorted(positions)
    assert page.locator(".reveal .slides > section").count() >= 30
