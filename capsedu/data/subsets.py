"""Seeded, class-balanced random subsets of a split (learning from less data, chapter 7.5).

"The first n digits" of MNIST are not balanced (the first 100 hold five 5s and six 2s), and one
fixed subset confounds the size of a training set with the luck of which digits it holds; drawing
several seeded balanced subsets per size separates the two.
"""
from __future__ import annotations

import dataclasses

import torch

from .split import DataError, ImageSplit

__all__ = ["balanced_indices", "balanced_subset"]


def balanced_indices(labels: torch.Tensor, n: int, n_classes: int, seed: int) -> torch.Tensor:
    """Indices of ``n`` examples drawn at random, ``n // n_classes`` of each class.

    When ``n`` is not a multiple of ``n_classes``, ``n % n_classes`` classes chosen at random get one
    example more. The same ``(labels, n, seed)`` always gives the same indices.

    Args:
        labels: ``int64 (N,)`` class indices.
        n: how many examples, ``1 <= n <= N``.
        n_classes: the number of classes.
        seed: seeds the draw (a ``torch.Generator`` of its own; the global generator is untouched).

    Returns:
        ``int64 (n,)`` indices into ``labels``, in increasing order.

    Raises:
        DataError: a class holds fewer examples than its share.
        ValueError: ``n`` out of range or multi-hot ``labels``.
    """
    if labels.dim() != 1:
        raise ValueError("a class-balanced subset needs class-index labels, not multi-hot ones")
    if not 1 <= n <= labels.numel():
        raise ValueError(f"a subset needs 1 to {labels.numel()} examples, got {n}")
    g = torch.Generator().manual_seed(seed)
    counts = torch.full((n_classes,), n // n_classes, dtype=torch.long)
    counts[torch.randperm(n_classes, generator=g)[: n % n_classes]] += 1
    chosen = []
    for c in range(n_classes):
        members = torch.nonzero(labels == c).flatten()
        if members.numel() < counts[c]:
            raise DataError(f"class {c} has {members.numel()} examples, a balanced subset of {n} needs {int(counts[c])}")
        chosen.append(members[torch.randperm(members.numel(), generator=g)[: counts[c]]])
    return torch.cat(chosen).sort().values


def balanced_subset(split: ImageSplit, n: int, seed: int) -> ImageSplit:
    """The ``n`` examples of :func:`balanced_indices` as a split; ``origin`` records the draw."""
    index = balanced_indices(split.labels, n, split.n_classes, seed)
    return dataclasses.replace(split, images=split.images[index], labels=split.labels[index],
                               origin=f"{n} class-balanced examples (seed {seed}) of {split.origin}")
