"""A generated affNIST-like test set (paper section 5.2): padded digits under random affine warps, optionally
moved anywhere on the canvas, as affNIST's digits are."""
from __future__ import annotations

from typing import Optional

import torch

from .split import ImageSplit
from .transforms import RandomAffine, pad_to, shift_images, to_float

__all__ = ["make_affine_test", "ink_box", "AFFNIST_LIKE"]

_CHUNK = 4096  # bounds the memory of per-example intermediates (affine grids)

#: The settings of the calibrated set the affine-robustness experiment tests on (``make_affine_test(split,
#: **AFFNIST_LIKE)``). affNIST's page (https://www.cs.toronto.edu/~tijmen/affNIST/) documents "significant
#: translations": a digit may sit "in the upper right corner" or "in the lower left corner" of the 40x40 image,
#: so each warped digit is moved to a uniformly random position at which its ink stays on the canvas. The page
#: text available here gives no numeric ranges for rotation, shear and scale; those keep RandomAffine's
#: defaults (rotation +-20 degrees, shear +-0.1, x and y scale 0.8-1.2), which are our choice, not affNIST's.
AFFNIST_LIKE = dict(size=40, anywhere=True)


def ink_box(images: torch.Tensor) -> torch.Tensor:
    """``int64 (N, 4)``: each image's ``(left, top, right, bottom)`` columns and rows holding any ink (> 0),
    inclusive; ``(0, 0, W - 1, H - 1)`` for an image without ink."""
    ink = images.amax(dim=1) > 0                       # (N, H, W)
    n, h, w = ink.shape
    cols, rows = ink.any(dim=1), ink.any(dim=2)         # (N, W), (N, H)
    empty = ~cols.any(dim=1)

    def first(mask: torch.Tensor) -> torch.Tensor:
        return mask.int().argmax(dim=1)

    left, top = first(cols), first(rows)
    right, bottom = w - 1 - first(cols.flip(1)), h - 1 - first(rows.flip(1))
    box = torch.stack([left, top, right, bottom], dim=1).long()
    box[empty] = torch.tensor([0, 0, w - 1, h - 1])
    return box


def _move_anywhere(images: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Shift each image so that its ink box lands at the position ``fractions`` (``(N, 2)`` in ``[0, 1)``) picks
    uniformly among the whole-pixel positions at which the box stays inside the image."""
    h, w = images.shape[-2:]
    left, top, right, bottom = ink_box(images).unbind(dim=1)
    span_x, span_y = (w - 1 - right) + left + 1, (h - 1 - bottom) + top + 1   # possible positions per axis
    dx = (fractions[:, 0] * span_x).floor().long() - left
    dy = (fractions[:, 1] * span_y).floor().long() - top
    return shift_images(images, torch.stack([dx, dy], dim=1))


def make_affine_test(
    split: ImageSplit, n: Optional[int] = None, size: int = 40, seed: int = 0, anywhere: bool = False,
    **affine_kwargs
) -> ImageSplit:
    """A *generated* affNIST-like robustness test set: the first ``n`` digits, padded and randomly warped.

    The paper (section 5.2) trains on MNIST digits placed at random on a 40x40 canvas
    (:class:`~capsedu.data.RandomPlacement`) and tests on affNIST. When affNIST's files are there,
    :func:`capsedu.data.affnist.load_affnist_test` reads them; this generates a set after its recipe
    instead: each digit is centred on a ``size`` x ``size`` canvas (:func:`pad_to`) and warped by
    :class:`RandomAffine` (``affine_kwargs`` override its ranges: ``max_rotation``, ``max_shear``,
    ``scale_range``, ``max_translate``). With ``anywhere`` the warp translates nothing (unless
    ``max_translate`` is given) and each warped digit then moves to a uniformly random position at which
    all its ink stays on the canvas (:data:`AFFNIST_LIKE`, affNIST's "significant translations").
    Accuracies on it compare models here, not with the paper's 79 % on affNIST.

    Returns:
        An :class:`ImageSplit` named ``"affnist-like"`` with ``source="generated"``:
        ``float32 (n, C, size, size)`` images in ``[0, 1]`` and ``split``'s first ``n`` labels,
        the same for the same arguments.
    """
    n = len(split) if n is None else min(n, len(split))
    g = torch.Generator().manual_seed(seed)
    if anywhere:
        affine_kwargs.setdefault("max_translate", 0)
    warp = RandomAffine(**affine_kwargs)  # an unknown argument is a TypeError naming it
    params = warp.draw(n, g)  # (n, 6), drawn at once: chunking can't change results
    # drawn after the warps, so a set without `anywhere` is the one earlier releases made
    fractions = torch.rand(n, 2, generator=g, dtype=torch.float64) if anywhere else None
    source = split.images[:n]
    chunks = []  # each (chunk, C, size, size)
    for lo in range(0, n, _CHUNK):
        warped = warp.apply(pad_to(to_float(source[lo:lo + _CHUNK]), size), params[lo:lo + _CHUNK])
        chunks.append(_move_anywhere(warped, fractions[lo:lo + _CHUNK]) if anywhere else warped)
    images = torch.cat(chunks) if chunks else torch.zeros(0, split.image_shape[0], size, size)
    # bilinear weights summing to 1 can overshoot 1 by a rounding error
    images.clamp_(0.0, 1.0)
    where = ", then moved anywhere on the canvas" if anywhere else ""
    origin = f"{warp!r}{where} on {size}x{size}, seed {seed}, of {split.name} {split.source} ({split.origin})"
    return ImageSplit(images, split.labels[:n].clone(), split.n_classes, "affnist-like", "generated", origin)
