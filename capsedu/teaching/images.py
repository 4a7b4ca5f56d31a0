"""Drawing helpers shared by the chapters' figures: grids of grey images, and tensors or arrays as numpy.

Every chapter module draws its own figures beside what it computes (``plot_*``, ``draw_*``); each drawing
function draws into the given axes (or makes a figure) and returns what it drew, so tests can check the
plotted values without a screen.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]

__all__ = ["ArrayLike", "as_numpy", "show_images", "show_image_rows"]


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
    """
    arrays = [_as_images(r) for r in rows]
    n = arrays[0].shape[0]
    fig, axes = plt.subplots(len(arrays), n, figsize=(size * n, size * len(arrays) + 0.3), squeeze=False)
    for i, arr in enumerate(arrays):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(arr[j], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and captions is not None:
                ax.set_title(captions[j], fontsize=8)
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
    fig.tight_layout()
    return fig
