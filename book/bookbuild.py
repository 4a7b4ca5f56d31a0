"""Build helpers shared by the HTML book (``book/conf.py``), the slide decks (``make slides``) and their tests.

Nothing here converts notebooks itself: the HTML book is Sphinx + MyST-NB, the decks are nbconvert's
reveal.js exporter. This module only

* copies the browser assets that the pages load (MathJax, reveal.js, RequireJS, jQuery) from the npm
  packages that ``package.json`` pins (``npm ci`` installs them into ``node_modules/``), so every page works
  without network access;
* reads the executed chapters from the jupyter-cache that MyST-NB fills during ``make html`` (executing
  the missing ones the same way), so the slides do not run the chapters a second time;
* exports one reveal.js deck per chapter, and the reading-group session deck assembled from the cells
  tagged ``session-<part>`` in the chapters, in the order of ``slides/session.ipynb``;
* gives a new chapter the default slide metadata (``annotate``; see "Slide metadata" below).

Run ``python book/bookbuild.py slides OUTPUT_DIR`` (what ``make slides`` does) and
``python book/bookbuild.py annotate book/NN_name.ipynb`` after writing a chapter.

Slide metadata, in the chapters themselves:

* ``slideshow.slide_type`` on every cell (Jupyter's own slideshow field): headings ``##`` open a slide,
  ``###`` a vertical sub-slide, each at the top of its own markdown cell (a cell never runs on past a
  heading: the end of one section would open the next one's slide); a paragraph that reads the output
  above it is a speaker note (``notes``);
  the set-up cell, the solutions and their "## Solutions" heading are ``skip`` (a deck ends with its exercises:
  a heading with nothing under it would be an empty slide). ``annotate`` fills in these defaults where a cell
  has none and leaves every other choice made by hand alone.
* tag ``hide-cell`` on each solution cell (the code cells after "## Solutions"): folded in the HTML book.
* tag ``slides-show-input`` on the few code cells whose *code* the room should see (the equations written
  out); every other code cell shows only its output on the slides.
* tag ``session-<part>`` (parts: ``SESSION_PARTS``) on the cells of the reading-group session deck, and
  ``capsedu.session_notes`` on the first cell of each of its slides: the presenter's notes for the session
  (what to say, what to ask, how long), shown in the speaker view and nowhere else.

On the slides a markdown cell shows its headings, equations, lists, tables and first paragraph; its other
paragraphs become speaker notes (:func:`slide_and_notes`), so the book's prose and the slides come from the
same cells.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import html
import os
import shutil
import sys
from pathlib import Path
import re
from typing import Dict, Iterable, List, Optional, Tuple

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
NODE_MODULES = ROOT / "node_modules"

# What each page needs from each npm package (paths inside the package). MathJax: the TeX-to-HTML
# component, the TeX extensions it loads on demand, its web fonts and the accessibility/menu parts the
# menu can switch on; not its 24 MB of other builds.
ASSETS: Dict[str, List[str]] = {
    "mathjax": ["es5/tex-chtml.js", "es5/input/tex/extensions", "es5/output/chtml/fonts/woff-v2",
                "es5/a11y", "es5/ui", "es5/sre", "LICENSE"],
    "reveal.js": ["dist", "plugin/notes", "LICENSE"],
    "requirejs": ["require.js"],
    "jquery": ["dist/jquery.min.js", "LICENSE.txt"],
}
MATHJAX_SCRIPT = "mathjax/es5/tex-chtml.js"          # relative to the folder the assets are copied to

# The parts of the reading-group session deck, in the deck's order (see slides/session.ipynb).
SESSION_PARTS = ("motivation", "capsule", "routing", "architecture", "margin-loss", "decoder", "experiments",
                 "results", "conclusion")


class MissingAssets(RuntimeError):
    pass


def chapters() -> List[Path]:
    """The chapters in reading order: every ``book/NN_*.ipynb``."""
    return sorted(p for p in BOOK.glob("[0-9][0-9]_*.ipynb"))


def copy_assets(dest: Path, packages: Iterable[str] = tuple(ASSETS), node_modules: Optional[Path] = None) -> Path:
    """Copy the listed files of each npm package to ``dest/<package>/...``; returns ``dest``.

    Raises :class:`MissingAssets` (naming the fix) when ``node_modules`` lacks a package.
    """
    dest = Path(dest)
    for package in packages:
        src = Path(node_modules or NODE_MODULES) / package
        if not (src / "package.json").is_file():
            raise MissingAssets(f"{src} is missing: run `npm ci` in {ROOT} (make html / make slides do it); "
                                f"the book serves {package} itself so that pages work offline")
        for rel in ASSETS[package]:
            s, d = src / rel, dest / package / rel
            d.parent.mkdir(parents=True, exist_ok=True)
            if s.is_dir():
                shutil.copytree(s, d, dirs_exist_ok=True)
            else:
                shutil.copy2(s, d)
    return dest


def mathjax3_config() -> dict:
    """MathJax 3's TeX settings for the book and the decks: the delimiters Jupyter uses."""
    return {"tex": {"inlineMath": [["$", "$"], ["\\(", "\\)"]], "displayMath": [["$$", "$$"], ["\\[", "\\]"]],
                    "processEscapes": True, "processEnvironments": True}}


def test_mode() -> bool:
    """Whether ``CAPSEDU_TEST_MODE`` asks for the fast test-mode build (the library's own rule)."""
    sys.path.insert(0, str(ROOT))
    from capsedu.teaching.settings import test_mode as _test_mode
    return _test_mode()


def cache_path(test: Optional[bool] = None) -> Path:
    """Where executed chapters are cached (a jupyter-cache, filled by MyST-NB and read by the slides).

    jupyter-cache re-executes a chapter whose code changed; the folder name adds what the code does not
    show: the mode (test-mode outputs never stand in for reading-mode ones) and a digest of the library,
    the recorded benchmarks and experiment records that chapters 4, 7 and 8 read, and the data setting,
    so a change there re-executes every chapter. ``CAPSEDU_BOOK_CACHE`` overrides the folder.
    """
    if os.environ.get("CAPSEDU_BOOK_CACHE"):
        return Path(os.environ["CAPSEDU_BOOK_CACHE"])
    if test is None:
        test = test_mode()
    return ROOT / "build" / "book" / ("test" if test else "reading") / f"cache-{_inputs_digest()}"


def _inputs_digest() -> str:
    digest = hashlib.sha256(os.environ.get("CAPSEDU_DATA", "").encode())
    for folder in (ROOT / "capsedu", ROOT / "benchmarks" / "results", ROOT / "experiments" / "results"):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def executed(notebook: Path, cache_dir: Path, timeout: int = 1800):
    """The chapter with its outputs: from the jupyter-cache when its code is unchanged, else executed (in
    the book folder, as MyST-NB does) and added to the cache."""
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.executors import load_executor

    notebook = Path(notebook).resolve()
    cache = get_cache(str(cache_dir))
    nb = nbformat.read(notebook, as_version=4)
    try:
        _, merged = cache.merge_match_into_notebook(nb)
        return merged
    except KeyError:
        pass
    cache.add_nb_to_project(str(notebook))
    result = load_executor("local-serial", cache).run_and_cache(filter_pks=[
        r.pk for r in cache.list_project_records() if Path(r.uri) == Path(notebook)], timeout=timeout,
        allow_errors=False)
    if result.errored:
        raise RuntimeError(f"{notebook.name} failed to execute; see `jupyter-cache project list` in {cache_dir}")
    _, merged = cache.merge_match_into_notebook(nb)
    return merged


# ----------------------------------------------------------------------------- slide metadata

SOLUTION_TAG = "hide-cell"


def _starts_solutions(cell) -> bool:
    return cell.cell_type == "markdown" and any(l.startswith("## Solutions") for l in cell.source.splitlines())


def _ends_solutions(cell) -> bool:
    return cell.cell_type == "markdown" and cell.source.lstrip().startswith("## ")


def solution_cells(nb) -> List[int]:
    """Indices of the code cells between a "## Solutions" heading and the next ``##`` heading."""
    inside, found = False, []
    for i, cell in enumerate(nb.cells):
        if _starts_solutions(cell):
            inside = True
        elif _ends_solutions(cell):
            inside = False
        elif inside and cell.cell_type == "code":
            found.append(i)
    return found


def default_slide_type(nb, index: int) -> str:
    """The slide type a cell gets unless a person chose one (see the module docstring)."""
    cell = nb.cells[index]
    if index == 0:
        return "slide"
    if index in solution_cells(nb) or _starts_solutions(cell):
        return "skip"
    if cell.cell_type == "code":
        return "skip" if "%matplotlib" in cell.source else "-"
    lines = cell.source.splitlines()
    if lines and lines[0].startswith(("## Slide map", "## Slides covered")):
        return "notes"                               # the map to the deck: for the presenter
    if any(l.startswith("## ") for l in lines):
        return "slide"
    if any(l.startswith("### ") for l in lines):
        return "subslide"
    if nb.cells[index - 1].cell_type == "code":
        return "notes"                               # a paragraph that reads the output above it
    return "-"


def annotate(nb):
    """Give every cell without one its default slide type; fold (``hide-cell``) and skip the solutions.
    Sources and every existing choice stay as they are. Returns ``nb``."""
    solutions = set(solution_cells(nb))
    for i, cell in enumerate(nb.cells):
        slide = cell.metadata.setdefault("slideshow", {})
        if i in solutions:
            slide["slide_type"] = "skip"
            tags = cell.metadata.setdefault("tags", [])
            if SOLUTION_TAG not in tags:
                tags.append(SOLUTION_TAG)
        elif _starts_solutions(cell):
            slide["slide_type"] = "skip"             # its solutions are skipped: the heading alone would be empty
        elif "slide_type" not in slide:
            slide["slide_type"] = default_slide_type(nb, i)
    return nb


def metadata_problems(nb) -> List[str]:
    """What ``annotate`` would still change, session tags naming unknown parts, and markdown cells that run
    on into the next section (on the slides, their first part would land on that section's slide)."""
    problems = []
    solutions = set(solution_cells(nb))
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags", [])
        lines = cell.source.splitlines() if cell.cell_type == "markdown" else []
        if any(l.startswith(("## ", "### ")) and any(x.strip() for x in lines[:k]) for k, l in enumerate(lines)):
            problems.append(f"cell {i}: text before a section heading; split the cell at the heading")
        if "slide_type" not in cell.metadata.get("slideshow", {}):
            problems.append(f"cell {i}: no slideshow.slide_type")
        if i in solutions and (SOLUTION_TAG not in tags or cell.metadata["slideshow"].get("slide_type") != "skip"):
            problems.append(f"cell {i}: a solution not tagged {SOLUTION_TAG} and skipped on slides")
        if _starts_solutions(cell) and cell.metadata.get("slideshow", {}).get("slide_type") != "skip":
            problems.append(f"cell {i}: the \"## Solutions\" heading is not skipped on slides (an empty slide)")
        for tag in tags:
            if tag.startswith("session-") and tag[len("session-"):] not in SESSION_PARTS:
                problems.append(f"cell {i}: tag {tag!r} names no session part {SESSION_PARTS}")
    return problems


# ----------------------------------------------------------------------------- slides

SLIDE_TEMPLATES = BOOK / "slides" / "templates"
SESSION_FRAME = BOOK / "slides" / "session.ipynb"
SHOW_INPUT_TAG = "slides-show-input"      # code cells whose source the decks show (all others: output only)
ASSET_DIR = "assets"                      # next to the decks
SLIDE_SIZE = (1280, 720)                  # every slide is laid out at this size (tests/browser checks it fits)
SESSION_NOTES_KEY = "session_notes"       # capsedu.session_notes of a chapter cell: the session deck's notes


SLIDE_PARAGRAPH_CHARS = 480      # a longer first paragraph keeps only its first sentences on the slide
SLIDE_LEAD_CHARS = 300           # ... as many as fit in this many characters (at least one)
_KEPT_BLOCK = re.compile(r"^(#|\$\$|\* |- |\d+\. |\||>|```)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z*(])")
_ABBREVIATION = re.compile(r"(\b(Figs?|Eqs?|eqs?|al|e\.g|i\.e|vs|cf|Sec|No)|\b[A-Z])\.$")   # "Fig. 4", "G. Hinton"


def slide_and_notes(markdown: str) -> Tuple[str, str]:
    """Split a markdown cell into what its slide shows and what the presenter reads in the notes.

    The slide keeps headings, display equations, lists, tables, quotes and code, and the first paragraph
    of prose (only its first sentences if it is longer than ``SLIDE_PARAGRAPH_CHARS``); the other
    paragraphs are the book's explanation and become speaker notes. Returns ``(slide, notes)``.
    """
    shown, notes, prose_seen = [], [], False
    for block in (b.rstrip() for b in re.split(r"\n\s*\n", markdown.strip()) if b.strip()):
        if _KEPT_BLOCK.match(block.lstrip()):
            shown.append(block)
        elif prose_seen:
            notes.append(block)
        else:
            prose_seen = True
            first, *rest = _lead(block) if len(block) > SLIDE_PARAGRAPH_CHARS else (block,)
            shown.append(first)
            notes.extend(rest)
    return "\n\n".join(shown), "\n\n".join(notes)


def _lead(paragraph: str) -> Tuple[str, ...]:
    """``(lead, rest)``: the paragraph's first sentences, as many as fit in ``SLIDE_LEAD_CHARS`` (at least
    one), and the rest; sentences end only outside inline math. The whole paragraph if none ends there."""
    ends = [m for m in _SENTENCE_END.finditer(paragraph)
            if paragraph[:m.start()].count("$") % 2 == 0 and not _ABBREVIATION.search(paragraph[:m.start()])]
    if not ends:
        return (paragraph,)
    cut = ([m for m in ends if m.start() <= SLIDE_LEAD_CHARS] or ends[:1])[-1]
    return paragraph[:cut.start()], paragraph[cut.end():]


def for_slides(nb):
    """A copy of an executed notebook ready for the reveal.js exporter: code shown only where tagged
    ``slides-show-input`` (nbconvert's ``transient.remove_source``); each shown markdown cell cut to what a
    slide holds, the rest of its text following as speaker notes (:func:`slide_and_notes`); and no widget
    state, so each widget shows its static rendering instead of loading the widget manager from the web."""
    import nbformat

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type == "code" and SHOW_INPUT_TAG not in cell.metadata.get("tags", []):
            cell.metadata.setdefault("transient", {})["remove_source"] = True
        if cell.cell_type == "markdown" and cell.metadata.get("slideshow", {}).get("slide_type") not in ("notes",
                                                                                                          "skip"):
            cell.source, notes = slide_and_notes(cell.source)
            if notes:
                cells.append(nbformat.v4.new_markdown_cell(notes, metadata={"slideshow": {"slide_type": "notes"}}))
    nb.cells = cells
    return nb


def session_deck(executed_chapters: Dict[str, "object"], frame_path: Path = SESSION_FRAME):
    """The reading-group session deck: the frame notebook's cells (title, part dividers, the paper's table,
    conclusion) with, after each cell marked ``capsedu.session_part = P`` and its speaker notes, every chapter
    cell tagged ``session-P`` in reading order. A selected cell that continues a slide whose start was not
    selected opens a new one."""
    import nbformat

    frame = nbformat.read(frame_path, as_version=4)
    deck = nbformat.v4.new_notebook(metadata=copy.deepcopy(frame.metadata))
    pending = None
    for cell in [*frame.cells, None]:
        if pending and (cell is None or cell.metadata.get("slideshow", {}).get("slide_type") != "notes"):
            deck.cells.extend(_session_cells(executed_chapters, pending))
            pending = None
        if cell is None:
            break
        deck.cells.append(copy.deepcopy(cell))
        part = cell.metadata.get("capsedu", {}).get("session_part")
        if part and part not in SESSION_PARTS:
            raise ValueError(f"{frame_path.name}: unknown session part {part!r}; parts: {SESSION_PARTS}")
        pending = part or pending
    return deck


def _session_cells(executed_chapters: Dict[str, "object"], part: str) -> list:
    """Copies of the chapters' cells tagged ``session-<part>``, in reading order, each followed by its
    presenter notes for the session (``capsedu.session_notes``: what to say, what to ask, how long)."""
    import nbformat

    cells = []
    for nb in executed_chapters.values():
        previous_taken = False
        for chapter_cell in nb.cells:
            taken = f"session-{part}" in chapter_cell.metadata.get("tags", [])
            if taken:
                c = copy.deepcopy(chapter_cell)
                slide = c.metadata.setdefault("slideshow", {})
                if not previous_taken and slide.get("slide_type", "-") in ("-", "fragment"):
                    slide["slide_type"] = "subslide"
                cells.append(c)
                presenter = c.metadata.get("capsedu", {}).get(SESSION_NOTES_KEY)
                if presenter:
                    cells.append(nbformat.v4.new_markdown_cell(presenter, metadata={"slideshow": {"slide_type": "notes"}}))
            previous_taken = taken
    return cells


def slide_exporter():
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    config = Config()
    config.SlidesExporter.reveal_url_prefix = f"{ASSET_DIR}/reveal.js"
    config.SlidesExporter.reveal_width, config.SlidesExporter.reveal_height = (str(n) for n in SLIDE_SIZE)
    config.SlidesExporter.exclude_input_prompt = config.SlidesExporter.exclude_output_prompt = True
    config.SlidesExporter.reveal_number = "c/t"
    config.SlidesExporter.reveal_theme = "white"          # its fonts ship with reveal.js ("simple" loads web fonts)
    config.SlidesExporter.require_js_url = f"{ASSET_DIR}/requirejs/require.js"
    config.SlidesExporter.jquery_url = f"{ASSET_DIR}/jquery/dist/jquery.min.js"
    config.SlidesExporter.mathjax_url = f"{ASSET_DIR}/{MATHJAX_SCRIPT}"
    return SlidesExporter(config=config, template_name="capsedu_reveal",
                          extra_template_basedirs=[str(SLIDE_TEMPLATES)])


def build_slides(out: Path, cache_dir: Optional[Path] = None, names: Optional[Iterable[str]] = None) -> List[Path]:
    """Write ``NN_name.slides.html`` for each chapter, ``session.slides.html`` and an ``index.html`` listing
    them, with the assets they load, to ``out``. Returns the deck paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    copy_assets(out / ASSET_DIR)
    cache_dir = cache_dir or cache_path()
    wanted = set(names) if names else None
    executed_chapters = {p.stem: executed(p, cache_dir) for p in chapters() if wanted is None or p.stem in wanted}
    exporter = slide_exporter()
    resources = {"capsedu_mathjax_config": mathjax3_config()}
    decks = []
    items = [(name, nb, _title(nb, name)) for name, nb in executed_chapters.items()]
    if wanted is None or "session" in wanted:
        items.append(("session", session_deck(executed_chapters), "Reading-group session (60-90 minutes)"))
    for name, nb, title in items:
        nb = for_slides(nb)
        nb.metadata["title"] = title
        body, _ = exporter.from_notebook_node(nb, resources={**resources, "metadata": {"name": name}})
        path = out / f"{name}.slides.html"
        path.write_text(body, encoding="utf-8")
        decks.append(path)
    links = "\n".join(f'<li><a href="{d.name}">{html.escape(t)}</a></li>' for d, (_, _, t) in zip(decks, items))
    (out / "index.html").write_text(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>capsedu slides</title></head>"
        "<body><h1>Capsule Networks: slide decks</h1><p>One reveal.js deck per chapter and one for a 60-90 "
        "minute reading-group session. Keys: arrows to move, <kbd>S</kbd> for the speaker notes, <kbd>F</kbd> "
        f"for full screen, <kbd>Esc</kbd> for the overview.</p><ul>\n{links}\n</ul></body></html>\n",
        encoding="utf-8")
    return decks


def _title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0][2:].strip()
    return fallback


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    slides = sub.add_parser("slides", help="build the reveal.js decks (executing chapters not yet cached)")
    slides.add_argument("out", type=Path)
    slides.add_argument("--only", nargs="*", help="deck names (chapter file stems, or 'session')")
    notes = sub.add_parser("annotate", help="give chapters the default slide metadata (sources unchanged)")
    notes.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "annotate":
        import nbformat

        for path in args.notebooks:
            nb = nbformat.read(path, as_version=4)
            nbformat.write(annotate(nb), path)
            print(f"{path}: {len(nb.cells)} cells annotated")
        return 0
    try:
        decks = build_slides(args.out, names=args.only)
    except MissingAssets as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(decks)} decks in {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through make slides and the tests
    sys.exit(main())
