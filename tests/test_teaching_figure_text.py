"""The chapters' diagrams and figures (capsedu.teaching) keep their text readable where the HTML book shows
them: every figure is shown at most as wide as the text column, so a wide figure is scaled down, and its
text with it. Each figure is drawn headless from small seeded inputs and saved as the chapters save it."""
import io
import struct

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.text import Text

from capsedu import BaselineCNN, CapsNet
from capsedu.teaching import (affine, agreement, architecture, curves, decoder, images, margin, motivation,
                              multimnist, routing_after_2017, squashing)
from capsedu.teaching.interactive import STATIC_DPI

# Width in CSS px of the HTML book's text column in a 1280 px wide window (sphinx-book-theme 1.4 on
# pydata-sphinx-theme 0.20, with the left navigation and the right "on this page" sidebar shown, as on every
# chapter): measured in Chromium as the width at which a 1200 px wide output image is drawn
# (``.cell_output img { max-width: 100% }``, book/_static/book.css), the way tests/browser/test_book_site.py
# opens the pages. At 1440 px the column is 790 px, so 1280 px is the narrower, stricter case.
COLUMN_PX = 688
# The smallest text size, in CSS px at that width, that the book accepts (about 8 pt on paper).
MIN_TEXT_PX = 11.0
# The inline backend saves a chapter's figures at the figure's dpi (matplotlib's default, 100) with
# bbox_inches="tight"; the widgets' static renderings are saved at interactive.STATIC_DPI.
NOTEBOOK_DPI = 100


@pytest.fixture(autouse=True)
def _matplotlib_state():
    """Every figure a test draws is closed and matplotlib's settings are as they were before it."""
    before = set(plt.get_fignums())
    with matplotlib.rc_context():
        yield
    for number in set(plt.get_fignums()) - before:
        plt.close(number)


def text_sizes_at_column_width(fig, dpi: float):
    """``(png width, [(px, text)])``: each text the figure draws when saved as a chapter saves it, with its size
    in CSS px once the image is shown in the column (scaled down to ``COLUMN_PX`` if wider)."""
    drawn = {}                                    # a tight bounding box draws the figure twice: each text once
    draw = Text.draw

    def record(text, renderer):                   # Text.draw draws nothing for a hidden or empty text
        if text.get_visible() and text.get_text().strip():
            drawn.setdefault(id(text), text)
        return draw(text, renderer)

    buffer = io.BytesIO()
    Text.draw = record
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        Text.draw = draw
    png_width = struct.unpack(">I", buffer.getvalue()[16:20])[0]     # the IHDR chunk: width, height
    scale = min(1.0, COLUMN_PX / png_width)
    return png_width, [(t.get_fontsize() * dpi / 72 * scale, t.get_text()) for t in drawn.values()]


def _paper_rows():
    torch.manual_seed(0)
    return architecture.layer_table(CapsNet("paper"))


def _layer_costs():
    rows = _paper_rows()
    architecture.plot_layer_costs(rows, times={r.name: 0.01 for r in rows})
    return plt.gcf()


def _training_curves():
    steps = np.linspace(1.0, 0.1, 40)
    curves.plot_training_curves(curves.smooth_histories(
        {"CapsNet": {"loss": list(steps), "accuracy": list(1 - steps)},
         "CNN baseline": {"loss": list(steps * 0.9), "accuracy": list(0.95 - steps)}}, window=5))
    return plt.gcf()


def _perturbation_grid():
    decoder.plot_perturbation_grid(torch.rand(16, 11, 28, 28, generator=torch.Generator().manual_seed(0)),
                                   title="digit 3")
    return plt.gcf()


def _strongest_dimensions():
    grid = torch.rand(4, 11, 28, 28, generator=torch.Generator().manual_seed(0))
    return decoder.plot_strongest_dimensions([(f"digit {d}", grid, [f"dim {k}" for k in range(4)])
                                              for d in range(4)])[0]


def _image_rows():                                  # chapter 6.2: ten digits, four rows
    batch = torch.rand(10, 28, 28, generator=torch.Generator().manual_seed(0))
    return images.show_image_rows([batch] * 4, row_titles=["input", "w = 0", "w = 0.0005", "w = 0.05"],
                                  captions=[str(k) for k in range(10)])


def _routing_procedures_widget():
    u_hat, basis = routing_after_2017.lift_toy(agreement.toy_votes()[0])
    return routing_after_2017.routing_procedures_widget(u_hat, basis, procedure="dynamic", iterations=1).figure


def _affine_widget():
    torch.manual_seed(0)
    digits = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    digits[:, 0, 6:22, 12:16] = 255                                   # a vertical bar
    models = CapsNet("small", image_size=40).eval(), BaselineCNN(image_size=40, channels=(8, 8, 8)).eval()
    return affine.affine_widget(*models, digits).figure


def _affine_sweep():                                # as chapter 7.4 draws it: three panels, 10 x 3.2 in
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    values = np.linspace(-60, 60, 9)
    row = {"values": values, "CapsNet": np.linspace(0.2, 0.99, 9), "CNN": np.linspace(0.1, 0.98, 9)}
    affine.plot_sweep(axes, {name: row for name in ("rotation", "shear", "scale")})
    return fig


def _multimnist_pairs():                            # chapter 7.3's columns: four right, two forced, one wrong
    g = torch.Generator().manual_seed(0)
    kinds = ["R"] * 4 + ["P", "R", "*"]
    return multimnist.draw_pairs([multimnist.PairColumn(k, kind, torch.rand(36, 36, generator=g),
                                                        torch.rand(2, 36, 36, generator=g), (k, 9 - k), (k, 9 - k))
                                  for k, kind in enumerate(kinds)])


def _margin_loss():
    margin.plot_margin_loss(margin.margin_loss_curves())
    return plt.gcf()


# (name, chapter, build -> Figure, dpi at which the book saves it)
FIGURES = [
    ("transforming auto-encoder diagram", "1.8", lambda: (motivation.draw_transforming_autoencoder(), plt.gcf())[1],
     NOTEBOOK_DPI),
    ("capsule schema with routing", "3.5", lambda: (agreement.draw_capsule_schema(), plt.gcf())[1], NOTEBOOK_DPI),
    ("CapsNet data flow diagram", "4.6", lambda: architecture.draw_capsnet_diagram(_paper_rows())[0], NOTEBOOK_DPI),
    ("layer costs", "4.7", _layer_costs, NOTEBOOK_DPI),
    ("training curves", "5", _training_curves, NOTEBOOK_DPI),
    ("margin loss", "5", _margin_loss, NOTEBOOK_DPI),
    ("perturbation grid", "6", _perturbation_grid, NOTEBOOK_DPI),
    ("strongest dimensions", "6", _strongest_dimensions, NOTEBOOK_DPI),
    ("rows of images", "6", _image_rows, NOTEBOOK_DPI),
    ("pooling widget", "1", lambda: motivation.pooling_widget().figure, STATIC_DPI),
    ("squash widget", "2", lambda: squashing.squash_widget().figure, STATIC_DPI),
    ("routing widget", "3", lambda: agreement.routing_widget().figure, STATIC_DPI),
    ("margin loss widget", "5", lambda: margin.margin_loss_widget().figure, STATIC_DPI),
    ("routing procedures widget", "10", _routing_procedures_widget, STATIC_DPI),
    ("affine widget", "7", _affine_widget, STATIC_DPI),
    ("MultiMNIST pairs", "7.3", _multimnist_pairs, NOTEBOOK_DPI),
    ("accuracy under affine warps", "7.4", _affine_sweep, NOTEBOOK_DPI),
]


@pytest.mark.parametrize("name, chapter, build, dpi", FIGURES, ids=[f[0] for f in FIGURES])
def test_diagram_text_is_readable_at_the_book_column_width(name, chapter, build, dpi):
    png_width, sizes = text_sizes_at_column_width(build(), dpi)
    assert sizes, f"{name} (chapter {chapter}) draws no text"
    small = sorted({(round(px, 1), text) for px, text in sizes if px < MIN_TEXT_PX})
    assert not small, (f"{name} (chapter {chapter}): a {png_width} px wide image shown {COLUMN_PX} px wide draws "
                       f"text under {MIN_TEXT_PX} px: {small[:5]}")


def test_text_size_follows_the_scale_at_which_the_column_shows_the_figure():
    """The measure itself: 10 pt at 100 dpi is 13.9 px; a figure twice the column's width shows it at half that."""
    for width_in, expected in ((4.0, 10 * 100 / 72), (2 * COLUMN_PX / 100, 10 * 100 / 72 / 2)):
        fig = plt.figure(figsize=(width_in, 2))
        fig.text(0.0, 0.0, "a", fontsize=10)
        fig.text(1.0, 1.0, "b", fontsize=10, ha="right", va="top")
        fig.text(0.5, 0.5, "hidden", visible=False)
        _, sizes = text_sizes_at_column_width(fig, 100)
        assert [text for _, text in sizes] == ["a", "b"]
        assert sizes[0][0] == pytest.approx(expected, rel=0.03)
