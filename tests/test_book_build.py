"""book/bookbuild.py: slide metadata in the chapters, the session deck, what the decks hide, offline assets.
(The builds themselves are exercised in a browser by tests/browser.)"""
import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bookbuild", ROOT / "book" / "bookbuild.py")
bookbuild = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bookbuild)


def _chapter(*cells):
    return new_notebook(cells=list(cells))


@pytest.mark.parametrize("path", bookbuild.chapters(), ids=lambda p: p.stem)
def test_every_chapter_has_slide_metadata_and_folded_solutions(path):
    nb = nbformat.read(path, as_version=4)
    problems = bookbuild.metadata_problems(nb)
    assert not problems, (f"{path.name}: {problems[:5]}; run `python book/bookbuild.py annotate {path.relative_to(ROOT)}` "
                          "(it keeps every choice already made)")


def test_annotate_fills_defaults_folds_solutions_skips_their_heading_and_keeps_choices():
    nb = _chapter(new_markdown_cell("# Chapter 9"), new_code_cell("%matplotlib inline\nimport torch"),
                  new_markdown_cell("## 9.1 A section"), new_code_cell("print(1)"),
                  new_markdown_cell("What the output above shows."),
                  new_markdown_cell("### A subsection"),
                  new_markdown_cell("Kept on the slide by hand."), new_code_cell("plot()"),
                  new_markdown_cell("## Summary"), new_markdown_cell("## Exercises"),
                  new_markdown_cell("## Solutions"), new_code_cell("# Exercise 1"),
                  new_markdown_cell("## Slide map\n\n| slide | section |"))
    nb.cells[6].metadata["slideshow"] = {"slide_type": "-"}           # a person's choice
    sources = [c.source for c in nb.cells]
    bookbuild.annotate(nb)
    types = [c.metadata["slideshow"]["slide_type"] for c in nb.cells]
    assert types == ["slide", "skip", "slide", "-", "notes", "subslide", "-", "-", "slide", "slide", "skip", "skip",
                     "notes"]
    assert nb.cells[11].metadata["tags"] == ["hide-cell"]
    assert [c.source for c in nb.cells] == sources
    assert bookbuild.metadata_problems(nb) == []
    nb.cells[11].metadata["tags"] = []
    nb.cells[3].metadata["tags"] = ["session-lunch"]
    nb.cells[10].metadata["slideshow"]["slide_type"] = "slide"        # the "## Solutions" heading alone on a slide
    assert len(bookbuild.metadata_problems(nb)) == 3


def test_session_deck_puts_tagged_cells_after_their_part_in_chapter_order(tmp_path):
    frame = _chapter(new_markdown_cell("# Session"),
                     new_markdown_cell("## 1. Routing"), new_markdown_cell("## 2. Motivation"),
                     new_markdown_cell("After the motivation part"))
    frame.cells[1].metadata["capsedu"] = {"session_part": "routing"}
    frame.cells[2].metadata["capsedu"] = {"session_part": "motivation"}
    nbformat.write(frame, tmp_path / "session.ipynb")
    one = _chapter(new_markdown_cell("## a"), new_code_cell("b"), new_code_cell("c"))
    one.cells[0].metadata.update(tags=["session-motivation"], slideshow={"slide_type": "slide"})
    one.cells[2].metadata.update(tags=["session-motivation"], slideshow={"slide_type": "-"})
    two = _chapter(new_markdown_cell("## d"))
    two.cells[0].metadata.update(tags=["session-routing", "session-motivation"])
    deck = bookbuild.session_deck({"01": one, "02": two}, tmp_path / "session.ipynb")
    assert [c.source for c in deck.cells] == ["# Session", "## 1. Routing", "## d", "## 2. Motivation", "## a", "c",
                                              "## d", "After the motivation part"]
    # "c" continued a slide whose previous cell ("b") is not in the deck: it opens a sub-slide
    assert deck.cells[5].metadata["slideshow"]["slide_type"] == "subslide"
    assert one.cells[2].metadata["slideshow"]["slide_type"] == "-"          # the chapter is left alone
    frame.cells[1].metadata["capsedu"] = {"session_part": "lunch"}
    nbformat.write(frame, tmp_path / "session.ipynb")
    with pytest.raises(ValueError, match="lunch"):
        bookbuild.session_deck({"01": one}, tmp_path / "session.ipynb")


def test_a_markdown_cell_that_runs_on_past_a_section_heading_is_reported():
    nb = _chapter(new_markdown_cell("## 1.1 A section"), new_markdown_cell("Reads the figure above.\n\n### 1.2 Next"),
                  new_markdown_cell("## Summary\n\n## Exercises"))
    bookbuild.annotate(nb)
    assert [p.split(":")[0] for p in bookbuild.metadata_problems(nb)] == ["cell 1", "cell 2"]


def test_session_part_cells_follow_the_marked_frame_cell_and_its_notes(tmp_path):
    frame = _chapter(new_markdown_cell("# Title"), new_markdown_cell("## The paper's table"),
                     new_markdown_cell("What to say about it."), new_markdown_cell("## Next"))
    frame.cells[1].metadata["capsedu"] = {"session_part": "results"}
    frame.cells[2].metadata["slideshow"] = {"slide_type": "notes"}
    nbformat.write(frame, tmp_path / "session.ipynb")
    chapter = _chapter(new_markdown_cell("## 7.2 Ours"))
    chapter.cells[0].metadata.update(tags=["session-results"], slideshow={"slide_type": "slide"})
    deck = bookbuild.session_deck({"07": chapter}, tmp_path / "session.ipynb")
    assert [c.source for c in deck.cells] == ["# Title", "## The paper's table", "What to say about it.",
                                               "## 7.2 Ours", "## Next"]


def test_session_frame_has_every_part_once_in_the_deck_order_and_each_part_has_cells():
    frame = nbformat.read(bookbuild.SESSION_FRAME, as_version=4)
    parts = [c.metadata.get("capsedu", {}).get("session_part") for c in frame.cells]
    assert [p for p in parts if p] == list(bookbuild.SESSION_PARTS)
    tagged = set()
    for path in bookbuild.chapters():
        for cell in nbformat.read(path, as_version=4).cells:
            tagged.update(t[len("session-"):] for t in cell.metadata.get("tags", []) if t.startswith("session-"))
    assert tagged == set(bookbuild.SESSION_PARTS)


def test_slides_show_only_tagged_code_and_no_widget_state():
    nb = _chapter(new_code_cell("x = 1"), new_code_cell("eq = 2"), new_markdown_cell("text"))
    nb.cells[1].metadata["tags"] = ["slides-show-input"]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    ready = bookbuild.for_slides(nb)
    assert ready.cells[0].metadata["transient"] == {"remove_source": True}
    assert "transient" not in ready.cells[1].metadata and "transient" not in ready.cells[2].metadata
    assert "widgets" not in ready.metadata and "widgets" in nb.metadata          # the input is not modified


def test_slides_keep_headings_equations_lists_and_the_lead_and_move_the_rest_to_notes():
    lead = "First sentence with $a. b$ math inside. " + "Second sentence. " * 30
    text = f"## 3.3 Eqs\n\n{lead}\n\n$$c = 1$$\n\nAn explanation.\n\n* a list\n* kept\n\n| a | b |\n|---|---|"
    shown, notes = bookbuild.slide_and_notes(text)
    assert shown.split("\n\n") == ["## 3.3 Eqs", "First sentence with $a. b$ math inside. " + "Second sentence. " * 14
                                    + "Second sentence.", "$$c = 1$$", "* a list\n* kept", "| a | b |\n|---|---|"]
    assert notes.split("\n\n") == ["Second sentence. " * 14 + "Second sentence.", "An explanation."]
    assert bookbuild.slide_and_notes("## Short\n\nOne paragraph.") == ("## Short\n\nOne paragraph.", "")
    cited = "As Sabour et al. (2017, Appendix A, Figs. A.1 and A.2) and G. Hinton say. " + "Then more. " * 40
    assert bookbuild.slide_and_notes(cited)[0].startswith("As Sabour et al. (2017, Appendix A, Figs. A.1 and A.2) and "
                                                          "G. Hinton say. Then more.")


def test_slides_show_each_cells_explanation_as_notes_and_the_session_deck_adds_presenter_notes(tmp_path):
    chapter = _chapter(new_markdown_cell("## 1.1 A slide\n\nShown.\n\nExplained."), new_code_cell("plot()"))
    chapter.cells[0].metadata.update(tags=["session-motivation"], slideshow={"slide_type": "slide"},
                                     capsedu={"session_notes": "Say this; ask that (2 min)."})
    chapter.cells[1].metadata.update(tags=["session-motivation"], slideshow={"slide_type": "-"})
    ready = bookbuild.for_slides(chapter)
    assert [(c.source, c.metadata["slideshow"]["slide_type"]) for c in ready.cells[:2]] == [
        ("## 1.1 A slide\n\nShown.", "slide"), ("Explained.", "notes")]
    frame = _chapter(new_markdown_cell("## 1. Motivation"))
    frame.cells[0].metadata["capsedu"] = {"session_part": "motivation"}
    nbformat.write(frame, tmp_path / "session.ipynb")
    deck = bookbuild.session_deck({"01": chapter}, tmp_path / "session.ipynb")
    assert [c.source for c in deck.cells] == ["## 1. Motivation", chapter.cells[0].source,
                                               "Say this; ask that (2 min).", "plot()"]
    assert deck.cells[2].metadata["slideshow"]["slide_type"] == "notes"


def test_copy_assets_names_the_fix_when_node_modules_is_missing(tmp_path):
    with pytest.raises(bookbuild.MissingAssets, match="npm ci"):
        bookbuild.copy_assets(tmp_path / "out", node_modules=tmp_path / "nothing")


def test_copy_assets_copies_only_the_listed_files(tmp_path):
    modules = tmp_path / "node_modules"
    package = modules / "requirejs"
    package.mkdir(parents=True)
    (package / "package.json").write_text("{}")
    (package / "require.js").write_text("// r.js")
    (package / "bin").mkdir()
    (package / "bin" / "r.js").write_text("// not served")
    out = bookbuild.copy_assets(tmp_path / "site", packages=["requirejs"], node_modules=modules)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["requirejs/require.js"]


def test_executed_chapters_are_cached_per_mode(monkeypatch):
    monkeypatch.delenv("CAPSEDU_BOOK_CACHE", raising=False)
    test, reading = bookbuild.cache_path(True), bookbuild.cache_path(False)
    assert test != reading and test.parent.name == "test" and reading.parent.name == "reading"
    monkeypatch.setenv("CAPSEDU_BOOK_CACHE", "/elsewhere")
    assert bookbuild.cache_path(True) == Path("/elsewhere")


def test_cache_folder_changes_with_the_library_and_the_records_chapters_read(monkeypatch, tmp_path):
    monkeypatch.delenv("CAPSEDU_BOOK_CACHE", raising=False)
    for folder in ("capsedu", "benchmarks/results", "experiments/results/mnist_table/cpu"):
        (tmp_path / folder).mkdir(parents=True)
    monkeypatch.setattr(bookbuild, "ROOT", tmp_path)
    empty = bookbuild.cache_path(True)
    (tmp_path / "experiments/results/mnist_table/cpu/baseline-seed0.json").write_text("{}")
    with_record = bookbuild.cache_path(True)
    (tmp_path / "capsedu" / "squash.py").write_text("")
    with_code = bookbuild.cache_path(True)
    assert len({empty, with_record, with_code}) == 3
    assert with_code == bookbuild.cache_path(True)
