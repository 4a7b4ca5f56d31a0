"""Drawing helpers shared by the chapters' figures: grids of grey images, and tensors or arrays as numpy.

Every chapter module draws its own figures beside what it computes (``plot_*``, ``draw_*``); each drawing
function draws into the given axes (or makes a figure) and returns what it drew, so tests can check the
plotted values without a screen.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]

__all__ = ["ArrayLike", "as_numpy", "show_images", "show_image_rows", "draw_flow"]


def as_numpy(x: ArrayLike) -> np.ndarray:
    """A tensor (detached, on the CPU) or a sequence as a numpy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _as_images(x: ArrayLike) -> np.ndarray:
    x = x.detach().float().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float32)
    return x.reshape(x.shape[0], x.shape[-2], x.shape[-1]).numpy()


def show_images(axes, images, titles: Optional[Sequence[str]] = None, cmap: str = "gray_r") -> list:
    """Draw ``images`` (a sequence or a ``(N, [1,] H, W)`` tensor) into ``axes`` side by side, no ticks.

    Returns the list of ``AxesImage`` artists.
    """
    artists = []
    for k, ax in enumerate(np.atleast_1d(axes)):
        img = as_numpy(images[k])
        artists.append(ax.imshow(img.reshape(img.shape[-2:]), cmap=cmap))
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    return artists


def show_image_rows(rows: Sequence[ArrayLike], row_titles: Optional[Sequence[str]] = None,
                    captions: Optional[Sequence[str]] = None, size: float = 1.1) -> Figure:
    """A grid of grey images: ``rows`` is a list of image batches ``(n, [1,] H, W)`` of equal ``n``.

    ``captions`` (optional) is a list of ``n`` strings written above the first row. Returns the figure.
    A row of many images is drawn smaller (at most 8.5 inches of images in a row), so that the book, which
    shows a figure at most as wide as its text column, does not scale the captions below 11 px.
    """
    arrays = [_as_images(r) for r in rows]
    n = arrays[0].shape[0]
    size = min(size, 8.5 / n)
    # rows at least an inch apart, so that row titles such as 'w = 0.0005' do not run into each other
    fig, axes = plt.subplots(len(arrays), n, figsize=(size * n, max(size, 1.0) * len(arrays) + 0.3), squeeze=False)
    for i, arr in enumerate(arrays):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(arr[j], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and captions is not None:
                ax.set_title(captions[j], fontsize=11)
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=11)
    fig.tight_layout()
    return fig


def draw_flow(ax, boxes: Mapping[str, Tuple[float, float, str, str]], arrows: Sequence[Tuple[str, str, str]],
              size: Tuple[float, float] = (2.2, 0.9), fontsize: float = 11) -> Dict[str, object]:
    """A diagram of boxes joined by arrows, for the chapters' schemas; the axes' frame is switched off.

    ``boxes``: name -> ``(x, y, text, colour)``, the box's centre in data units; ``arrows``:
    ``(from, to, label)`` between box names, from the edge of one box to the edge of the other. Returns
    ``{"texts": {name: box text}, "arrows": [(from, to, label)]}``, what was drawn.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    w, h = size
    for x, y, text, colour in boxes.values():
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc=colour, ec="black"))
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    for start, end, label in arrows:
        (x0, y0), (x1, y1) = boxes[start][:2], boxes[end][:2]
        dx, dy = x1 - x0, y1 - y0
        # leave each box where the line from centre to centre crosses its edge
        shrink = min(w / 2 / abs(dx) if dx else np.inf, h / 2 / abs(dy) if dy else np.inf) + 0.06 / np.hypot(dx, dy)
        a, b = (x0 + shrink * dx, y0 + shrink * dy), (x1 - shrink * dx, y1 - shrink * dy)
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=16, color="black"))
        if label:                          # above a horizontal arrow, beside a vertical one
            mx, my = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
            beside = abs(dy) > abs(dx)
            ax.text(mx + (0.12 if beside else 0), my + (0 if beside else 0.12), label, fontsize=fontsize - 1,
                    ha="left" if beside else "center", va="center" if beside else "bottom")
    xs = [x for x, *_ in boxes.values()]
    ys = [y for _, y, *_ in boxes.values()]
    ax.set_xlim(min(xs) - w / 2 - 0.2, max(xs) + w / 2 + 0.2)
    ax.set_ylim(min(ys) - h / 2 - 0.3, max(ys) + h / 2 + 0.5)
    ax.axis("off")
    return {"texts": {name: text for name, (_, _, text, _) in boxes.items()}, "arrows": list(arrows)}
