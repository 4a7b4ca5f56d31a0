"""A fast in-memory batcher whose epochs can be resumed at any batch."""
from __future__ import annotations

from typing import Iterator, Optional, Tuple, Union

import torch

from .split import ImageSplit
from ..checks import check_int
from .transforms import Transform, _generator_device, to_float

__all__ = ["Batches"]


class Batches:
    """The whole split lives on ``device``; batches are cut, scaled and augmented there.

    The images (``uint8`` for a loaded data set) are moved to ``device`` once, on first
    iteration, and each batch is indexed, converted to ``float32`` in ``[0, 1]`` and transformed
    on that device, which is much faster than a ``DataLoader`` over single images for data
    sets of this size.

    Args:
        split: an :class:`ImageSplit` or an ``(images, labels)`` pair; images ``(N, C, H, W)``,
            ``uint8`` (scaled by 1/255) or float in ``[0, 1]`` (used as is); labels ``(N,)`` class
            indices or ``(N, n_classes)`` multi-hot, passed through unchanged.
        batch_size: examples per batch.
        shuffle: draw a fresh permutation from ``generator`` for every epoch.
        augment: a transform applied to every batch, e.g. ``RandomShift(2)`` (the paper's MNIST
            augmentation), ``RandomCrop(24)`` for training or ``CenterCrop(24)`` for testing.
        device: where batches are produced.
        generator: source of all randomness (``None``: torch's global CPU generator).
        drop_last: drop a final batch smaller than ``batch_size``.
        limit: use only the first ``limit`` examples (before shuffling), e.g. for quick runs.

    Yields ``(images float32 (B, C', H', W'), labels)`` on ``device``, where ``(C', H', W')``
    is ``augment.output_shape(C, H, W)``.

    Each epoch draws its permutation, then all its transform parameters, from ``generator``
    when iteration starts (``iter()``), before the first batch, so the draws do not depend on
    how many batches are consumed. Hence :meth:`iter_from` reproduces an interrupted epoch
    exactly, provided the generator is in the state it had at the start of that epoch (save
    ``generator.get_state()`` at every epoch start to resume).
    """

    def __init__(
        self,
        split: Union[ImageSplit, Tuple[torch.Tensor, torch.Tensor]],
        batch_size: int,
        shuffle: bool = False,
        augment: Optional[Transform] = None,
        device: Union[str, torch.device] = "cpu",
        generator: Optional[torch.Generator] = None,
        drop_last: bool = False,
        limit: Optional[int] = None,
    ) -> None:
        images, labels = (split.images, split.labels) if isinstance(split, ImageSplit) else split
        if images.dim() != 4:
            raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if images.shape[0] == 0:
            where = f" ({split.origin})" if isinstance(split, ImageSplit) else ""
            raise ValueError(f"no examples to batch{where}: an empty split neither trains nor tests anything")
        check_int(batch_size, "batch_size", low=1)
        if augment is not None:
            if not isinstance(augment, Transform):
                raise TypeError(f"augment must be a Transform such as RandomShift(2), got {augment!r}")
            augment.output_shape(*images.shape[1:])  # fail now, not at the first batch, if images do not fit
        if limit is not None:
            check_int(limit, "limit", low=1)
            images, labels = images[:limit], labels[:limit]
        self.images, self.labels = images, labels  # stay where they are until first iteration
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.device = torch.device(device)
        self.generator = generator
        self.drop_last = drop_last
        self._on_device: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    @property
    def num_examples(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        return self.iter_from(0)

    def iter_from(self, start_batch: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Iterate over one epoch starting at batch ``start_batch`` (for resuming mid-epoch).

        Makes the same random draws as ``iter(self)`` and yields the same batches minus the
        first ``start_batch``; call it with ``generator`` in its start-of-epoch state.
        """
        check_int(start_batch, "start_batch", low=0)
        if self._on_device is None:
            self._on_device = (self.images.to(self.device), self.labels.to(self.device))
        images, labels = self._on_device
        n, g = self.num_examples, self.generator
        # every draw of the epoch happens here, eagerly, so skipped batches consume the same randomness
        order = (torch.randperm(n, generator=g, device=_generator_device(g)).to(self.device)
                 if self.shuffle else None)
        params = self.augment.draw(n, g).to(self.device) if self.augment is not None else None  # (n, P)
        return self._generate(images, labels, order, params, start_batch)

    def _generate(self, images: torch.Tensor, labels: torch.Tensor, order: Optional[torch.Tensor],
                  params: Optional[torch.Tensor], start_batch: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n, b = self.num_examples, self.batch_size
        for i in range(start_batch, len(self)):
            lo, hi = i * b, min((i + 1) * b, n)
            if order is None:
                xb, yb = images[lo:hi], labels[lo:hi]
            else:  # index_select: much cheaper than advanced indexing on CPU
                xb, yb = images.index_select(0, order[lo:hi]), labels.index_select(0, order[lo:hi])
            x = to_float(xb)  # (B, C, H, W)
            if params is not None:  # parameters go by position in the epoch, like the permutation
                x = self.augment.apply(x, params[lo:hi])  # (B, C', H', W')
            yield x, yb

    def __repr__(self) -> str:
        return (f"Batches(n={self.num_examples}, batch_size={self.batch_size}, batches={len(self)}, "
                f"shuffle={self.shuffle}, augment={self.augment!r}, device={str(self.device)!r})")
