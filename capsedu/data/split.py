"""The one in-memory data set type: a labelled stack of images, whatever the data set."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Tuple

import torch

from ..checks import check_int

__all__ = ["DataError", "ImageSplit"]


class DataError(RuntimeError):
    """Data that should be there is missing or unreadable; the message names the file."""


@dataclass(eq=False, repr=False)
class ImageSplit:
    """One split of an image data set, kept compactly in memory (convert batches with ``to_float``).

    Attributes:
        images: ``(N, C, H, W)``, either ``uint8`` in ``0..255`` or floating in ``[0, 1]``.
        labels: ``int64 (N,)`` class indices in ``0..n_classes-1``, or floating ``(N, n_classes)``
            multi-hot targets in ``[0, 1]`` (e.g. MultiMNIST's two digits per image).
        n_classes: number of classes, also for splits in which some classes are absent.
        name: the data set, e.g. ``"mnist"``.
        source: how the data was obtained, in one word: ``"full"`` (the complete data set),
            ``"subset"`` (the sample shipped with capsedu) or ``"generated"`` (made by code here).
            Messages print it (``"subset MNIST"``) and checkpoints record it as ``data_source``.
        origin: where exactly it came from: a folder, a file, or the recipe that generated it.

    Construction checks shapes, dtypes and ranges and raises a one-line :class:`ValueError`.
    """

    images: torch.Tensor
    labels: torch.Tensor
    n_classes: int
    name: str
    source: str
    origin: str

    def __post_init__(self) -> None:
        problem = _problem(self.images, self.labels, self.n_classes)
        if problem:
            raise ValueError(problem)

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def multi_hot(self) -> bool:
        """Whether ``labels`` are ``(N, n_classes)`` multi-hot targets rather than class indices."""
        return self.labels.dim() == 2

    def take(self, n: int) -> "ImageSplit":
        """The first ``n`` examples (all of them if ``n >= len(self)``), sharing memory with ``self``."""
        check_int(n, "n", low=0)
        return dataclasses.replace(self, images=self.images[:n], labels=self.labels[:n])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:  # the dataclass default would print the tensors
        c, h, w = self.image_shape
        dtype = str(self.images.dtype).replace("torch.", "")
        labels = f"{self.n_classes} classes" + (", multi-hot" if self.multi_hot else "")
        return (f"ImageSplit({self.name} {self.source}, n={len(self)}, {c}x{h}x{w} {dtype}, {labels}, "
                f"origin={self.origin!r})")


def _problem(images: torch.Tensor, labels: torch.Tensor, n_classes: int) -> str:
    """What is wrong with a split's tensors, in one line without a final period, or ``""``."""
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        return f"images and labels must be tensors, got {type(images).__name__} and {type(labels).__name__}"
    if images.dim() != 4:
        return f"images must be (N, C, H, W), got shape {tuple(images.shape)}"
    if images.dtype != torch.uint8 and not images.is_floating_point():
        return f"images must be uint8 (0..255) or floating (0..1), got {images.dtype}"
    try:
        check_int(n_classes, "n_classes", low=1)
    except ValueError as exc:
        return str(exc)
    n = images.shape[0]
    expected = "int64 class indices (N,) or floating multi-hot (N, n_classes)"
    if labels.dtype == torch.int64:
        if labels.dim() != 1 or labels.shape[0] != n:
            return f"labels have shape {tuple(labels.shape)} for {n} images, expected ({n},)"
    elif labels.is_floating_point():
        if tuple(labels.shape) != (n, n_classes):
            return f"multi-hot labels have shape {tuple(labels.shape)}, expected ({n}, {n_classes})"
    else:
        return f"labels must be {expected}, got {labels.dtype} {tuple(labels.shape)}"
    if labels.numel():
        lo, hi = torch.aminmax(labels)
        top = n_classes - 1 if labels.dtype == torch.int64 else 1
        if not (lo >= 0 and hi <= top):  # phrased so that NaN fails too
            return f"labels span {_num(lo)}..{_num(hi)}, expected 0..{top}"
    if images.is_floating_point() and images.numel():
        lo, hi = torch.aminmax(images)
        if not (lo >= 0 and hi <= 1):
            return f"floating images span {_num(lo)}..{_num(hi)}, expected 0..1 (divide uint8 pixels by 255)"
    return ""


def _num(x: torch.Tensor) -> str:
    return str(int(x)) if not x.is_floating_point() else f"{float(x):g}"
