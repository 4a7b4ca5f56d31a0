"""MultiMNIST (paper section 6): pairs of overlapping digits of different classes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .split import ImageSplit
from .transforms import draw_shifts, shift_images, to_float

__all__ = ["MultiMNIST", "make_multimnist"]

_MARGIN = 4  # the paper's canvas: 28x28 digits on 36x36, i.e. 4 px on every side


@dataclass
class MultiMNIST:
    """Pairs of overlaid digits of different classes (paper section 6).

    The paper only says the digits are "overlaid". Here the overlay is the saturating sum
    ``clamp(first + second, max=1)``: where strokes cross, the ink adds up and is capped, like
    two digits written on the same sheet. A pixelwise max would differ only on the pixels
    where both digits have ink (it never darkens faint overlaps).

    Attributes (for 28x28 MNIST digits, ``K = 10`` classes):
        images: ``float32 (N, 1, 36, 36)`` in ``[0, 1]``, the overlay.
        labels: ``float32 (N, K)`` multi-hot with exactly two ones.
        first, second: ``float32 (N, 1, 36, 36)``, each digit alone at its shifted position
            (the per-digit reconstruction targets).
        first_label, second_label: ``int64 (N,)``, always different.
    """

    images: torch.Tensor
    labels: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    first_label: torch.Tensor
    second_label: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return f"MultiMNIST(n={len(self)}, size={tuple(self.images.shape[-2:])})"


def make_multimnist(split: ImageSplit, n: int, max_shift: int = 4, seed: int = 0) -> MultiMNIST:
    """Generate ``n`` MultiMNIST examples from ``split``, deterministically for a given ``seed``.

    Each ``H x W`` digit is placed in the middle of an ``(H + 8) x (W + 8)`` canvas (36x36 for
    MNIST) and shifted by integer ``dx, dy`` uniform in ``[-max_shift, max_shift]`` (content
    pushed past the canvas when ``max_shift > 4`` is cut). The first digit is uniform over the
    split; the second is a uniformly chosen example of a uniformly chosen *other* class present
    in the split. ``split`` needs class-index labels; ``labels`` has ``split.n_classes`` columns.

    Memory: about 15.5 KB per MNIST example (three float32 canvases).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if split.multi_hot:
        raise ValueError("make_multimnist needs a split with class-index labels, got multi-hot labels")
    n_classes = split.n_classes
    g = torch.Generator().manual_seed(seed)
    labels = split.labels.cpu()
    counts = torch.bincount(labels, minlength=n_classes)  # (K,)
    present = torch.nonzero(counts).flatten()  # classes that can be drawn, sorted
    k = present.numel()
    if k < 2:
        raise ValueError("MultiMNIST needs digits of at least two classes")

    first_idx = torch.randint(len(labels), (n,), generator=g)
    first_label = labels[first_idx]
    # pick the second class as a non-zero offset in the ring of present classes: never equal, uniform
    rank_of = torch.full((n_classes,), -1, dtype=torch.long)
    rank_of[present] = torch.arange(k)
    second_label = present[(rank_of[first_label] + torch.randint(1, k, (n,), generator=g)) % k]
    by_class = torch.argsort(labels, stable=True)  # indices grouped by class
    starts = torch.cumsum(counts, 0) - counts
    offset = (torch.rand(n, generator=g, dtype=torch.float64) * counts[second_label]).long()
    second_idx = by_class[starts[second_label] + torch.minimum(offset, counts[second_label] - 1)]

    images = split.images.cpu()

    def place(idx: torch.Tensor) -> torch.Tensor:
        canvas = F.pad(to_float(images.index_select(0, idx)), (_MARGIN,) * 4)  # (n, C, H + 8, W + 8)
        return shift_images(canvas, draw_shifts(n, max_shift, g))

    first, second = place(first_idx), place(second_idx)
    multi_hot = torch.zeros(n, n_classes)
    multi_hot[torch.arange(n), first_label] = 1.0
    multi_hot[torch.arange(n), second_label] = 1.0
    return MultiMNIST(
        images=torch.clamp(first + second, max=1.0),
        labels=multi_hot,
        first=first,
        second=second,
        first_label=first_label.clone(),
        second_label=second_label.clone(),
    )
