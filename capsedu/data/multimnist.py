"""MultiMNIST (paper section 6): pairs of overlapping digits of different classes.

Two levels:

* :func:`make_multimnist` makes ``n`` pairs at once (a :class:`MultiMNIST`), for figures and tests.
* :class:`PairBatches` makes them batch by batch for training (section 6 generates pairs "on the fly":
  fresh pairs every epoch) and for a fixed test set, resumable at any batch like :class:`~capsedu.data.Batches`.

Both makers go through :func:`sample_pairs` (every random choice, cheap) and :func:`render_pairs`
(the canvases), so ``PairBatches`` with ``seed=s`` yields exactly the pairs of
``make_multimnist(split, n, seed=s)``. A batch of pairs is ``(Pairs, labels)``: :class:`Pairs` holds the
overlay the model sees and each digit alone, the targets of its reconstructions. How much the two digits
overlap (the paper's "80 %") is measured in :mod:`capsedu.teaching.overlap`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ..checks import check_int
from .split import ImageSplit
from .transforms import draw_shifts, shift_images, to_float

__all__ = ["MultiMNIST", "Pairs", "PairDraw", "PairBatches", "sample_pairs", "render_pairs", "make_multimnist",
           "pair_test_batches", "TEST_PAIRS", "TEST_SEED", "MAX_SHIFT"]

_MARGIN = 4  # the paper's canvas: 28x28 digits on 36x36, i.e. 4 px on every side
MAX_SHIFT = 4  # section 6: "Each digit is shifted up to 4 pixels in each direction"

#: The fixed MultiMNIST test set of training runs: this many pairs of test digits, drawn with this seed.
#: (The paper tests on 10M pairs, 1K per test digit; 10,000 pairs put the error's standard error near 0.2 %.)
TEST_PAIRS = 10_000
TEST_SEED = 0


class Pairs(NamedTuple):
    """The images of a batch of MultiMNIST pairs, each ``float32 (B, C, H, W)`` on one device.

    A pair batch is ``(pairs, labels)`` with ``labels`` ``int64 (B, 2)`` = (first class, second class);
    the model sees only :attr:`overlay`, and each digit is reconstructed against its own canvas.
    """

    overlay: torch.Tensor   # the two digits overlaid: the model's input
    first: torch.Tensor     # the first digit alone, at its shifted position
    second: torch.Tensor    # the second digit alone

    @property
    def device(self) -> torch.device:
        return self.overlay.device

    @property
    def size(self) -> int:
        """Number of pairs."""
        return int(self.overlay.shape[0])

    def select(self, rows: Union[slice, torch.Tensor]) -> "Pairs":
        """The pairs at ``rows`` (a slice or indices)."""
        return Pairs(*(t[rows] for t in self))


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

    def as_batch(self) -> Tuple[Pairs, torch.Tensor]:
        """The pairs as one pair batch, as :class:`PairBatches` yields them: ``(Pairs, labels int64 (N, 2))``."""
        return (Pairs(self.images, self.first, self.second),
                torch.stack([self.first_label, self.second_label], dim=1))


@dataclass(frozen=True)
class PairDraw:
    """Every random choice behind ``n`` MultiMNIST pairs: which source digits, and their shifts.

    Attributes:
        first_idx, second_idx: ``int64 (n,)`` indices into the source split.
        first_label, second_label: ``int64 (n,)`` their classes, always different.
        first_shift, second_shift: ``int64 (n, 2)`` each digit's ``(dx, dy)`` on the canvas.
    """

    first_idx: torch.Tensor
    second_idx: torch.Tensor
    first_label: torch.Tensor
    second_label: torch.Tensor
    first_shift: torch.Tensor
    second_shift: torch.Tensor

    def __len__(self) -> int:
        return int(self.first_idx.shape[0])

    def slice(self, lo: int, hi: int) -> "PairDraw":
        """Pairs ``lo`` to ``hi - 1``."""
        return PairDraw(**{f.name: getattr(self, f.name)[lo:hi] for f in fields(self)})


def _check_source(split: ImageSplit) -> None:
    if not isinstance(split, ImageSplit):
        raise ValueError(f"MultiMNIST needs an ImageSplit of source digits, got {type(split).__name__}")
    if split.multi_hot:
        raise ValueError("make_multimnist needs a split with class-index labels, got multi-hot labels")


def sample_pairs(split: ImageSplit, n: int, max_shift: int = MAX_SHIFT,
               generator: Optional[torch.Generator] = None) -> PairDraw:
    """Draw ``n`` pairs from ``split`` (section 6's recipe; no images are touched).

    The first digit is uniform over the split; the second is a uniformly chosen example of a
    uniformly chosen *other* class present in the split; each digit gets a shift ``(dx, dy)``
    uniform in ``[-max_shift, max_shift]``. Draws come from ``generator`` (a CPU generator) in
    this order: first indices, second classes, second examples, first shifts, second shifts.
    """
    _check_source(split)
    check_int(n, "n", low=0)
    n_classes = split.n_classes
    g = generator
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
    first_shift = draw_shifts(n, max_shift, g)
    second_shift = draw_shifts(n, max_shift, g)
    return PairDraw(first_idx, second_idx, first_label.clone(), second_label.clone(), first_shift, second_shift)


def render_pairs(images: torch.Tensor, draw: PairDraw) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The canvases of the pairs in ``draw``: ``(overlay, first, second)``, each ``float32 (n, C, H + 8, W + 8)``.

    Args:
        images: the source split's images ``(N, C, H, W)`` (``uint8`` or floating in [0, 1]), on the
            device where the canvases are wanted.
        draw: from :func:`sample_pairs` on the same split.

    Each digit is placed in the middle of the canvas (4 px of margin on every side: 36x36 for MNIST)
    and shifted by its ``(dx, dy)`` (content pushed past the canvas, for shifts over 4, is cut).
    """
    def place(idx: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        # index_select: much cheaper than advanced indexing on the CPU
        canvas = F.pad(to_float(images.index_select(0, idx.to(images.device))), (_MARGIN,) * 4)
        return shift_images(canvas, shifts)

    first = place(draw.first_idx, draw.first_shift)
    second = place(draw.second_idx, draw.second_shift)
    return torch.clamp(first + second, max=1.0), first, second


def make_multimnist(split: ImageSplit, n: int, max_shift: int = MAX_SHIFT, seed: int = 0) -> MultiMNIST:
    """Generate ``n`` MultiMNIST examples from ``split``, deterministically for a given ``seed``.

    Each ``H x W`` digit is placed in the middle of an ``(H + 8) x (W + 8)`` canvas (36x36 for
    MNIST) and shifted by integer ``dx, dy`` uniform in ``[-max_shift, max_shift]`` (content
    pushed past the canvas when ``max_shift > 4`` is cut). The first digit is uniform over the
    split; the second is a uniformly chosen example of a uniformly chosen *other* class present
    in the split (:func:`sample_pairs`). ``split`` needs class-index labels; ``labels`` has
    ``split.n_classes`` columns.

    Memory: about 15.5 KB per MNIST example (three float32 canvases); :class:`PairBatches` makes
    pairs batch by batch instead.
    """
    draw = sample_pairs(split, n, max_shift, torch.Generator().manual_seed(seed))
    images, first, second = render_pairs(split.images.cpu(), draw)
    multi_hot = torch.zeros(n, split.n_classes)
    multi_hot[torch.arange(n), draw.first_label] = 1.0
    multi_hot[torch.arange(n), draw.second_label] = 1.0
    return MultiMNIST(images=images, labels=multi_hot, first=first, second=second,
                      first_label=draw.first_label, second_label=draw.second_label)


class PairBatches:
    """MultiMNIST batches made on the fly from a split's digits (section 6), resumable at any batch.

    Only the source digits are kept (on ``device``, as they are, e.g. ``uint8``); each batch's
    canvases are rendered there when it is needed, so 60,000 pairs per epoch cost no memory.

    Yields pair batches ``(pairs, labels)`` on ``device``: :class:`Pairs` of ``float32 (B, C, H + 8, W + 8)``
    canvases (the overlay the model sees, each digit alone), the batches of
    :class:`~capsedu.objectives.PairMarginLoss`, and labels ``int64 (B, 2)`` = (first class, second class).

    Args:
        split: the source digits (class-index labels), e.g. MNIST's training split.
        n: pairs per pass.
        batch_size: pairs per batch.
        generator: fresh pairs every pass. Each pass (``iter()`` / :meth:`iter_from`) first draws one
            seed from ``generator`` and makes the pass's pairs as ``make_multimnist(split, n,
            max_shift, seed)`` would (:attr:`pass_seed`). As with :class:`~capsedu.data.Batches`, a
            pass is reproduced exactly from ``generator``'s state at its start, which is what
            :func:`capsedu.train.fit` saves and restores to resume an epoch.
        seed: the same pairs on every pass, ``make_multimnist(split, n, max_shift, seed)`` (a fixed
            test set). Give exactly one of ``generator`` and ``seed``.
        max_shift: largest shift of each digit, in pixels (4 in the paper).
        device: where the digits live and batches are made.
        limit: yield only the first ``limit`` of the ``n`` pairs (the same pairs as without it).
    """

    def __init__(self, split: ImageSplit, n: int, batch_size: int, *, generator: Optional[torch.Generator] = None,
                 seed: Optional[int] = None, max_shift: int = MAX_SHIFT,
                 device: Union[str, torch.device] = "cpu", limit: Optional[int] = None) -> None:
        _check_source(split)
        if (generator is None) == (seed is None):
            raise ValueError("PairBatches needs exactly one of generator (fresh pairs every pass) and seed "
                             "(the same pairs every pass)")
        check_int(n, "n", low=1)
        check_int(batch_size, "batch_size", low=1)
        if limit is not None:
            check_int(limit, "limit", low=1)
        check_int(max_shift, "max_shift", low=0)
        # fail now, not at the first batch, on a split with fewer than two classes (a throwaway generator:
        # building the batches must not move the global RNG, which initialises the model)
        sample_pairs(split, 0, generator=torch.Generator())
        self.split = split
        self.n = n
        self.batch_size = batch_size
        self.generator = generator
        self.seed = seed
        self.max_shift = max_shift
        self.device = torch.device(device)
        self.limit = limit
        self.pass_seed: Optional[int] = seed  #: the seed of the latest pass's pairs
        self._images: Optional[torch.Tensor] = None

    @property
    def num_examples(self) -> int:
        """Pairs per pass."""
        return self.n if self.limit is None else min(self.n, self.limit)

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        """``(C, H, W)`` of the overlay the model sees: ``(1, 36, 36)`` for MNIST."""
        c, h, w = self.split.image_shape
        return c, h + 2 * _MARGIN, w + 2 * _MARGIN

    def __len__(self) -> int:
        return -(-self.num_examples // self.batch_size)

    def __iter__(self) -> Iterator[Tuple[Pairs, torch.Tensor]]:
        return self.iter_from(0)

    def draw(self) -> PairDraw:
        """Start a pass: draw its seed (fresh mode) and all its pairs' random choices."""
        if self.generator is not None:
            # one number per pass from the run's generator: the pass is then make_multimnist(..., seed)
            self.pass_seed = int(torch.randint(0, 2 ** 63 - 1, (1,), generator=self.generator))
        draw = sample_pairs(self.split, self.n, self.max_shift, torch.Generator().manual_seed(self.pass_seed))
        return draw.slice(0, self.num_examples)

    def iter_from(self, start_batch: int) -> Iterator[Tuple[Pairs, torch.Tensor]]:
        """One pass starting at batch ``start_batch`` (for resuming mid-epoch): the same draws as
        ``iter(self)``, the same batches minus the first ``start_batch``. In fresh mode call it with
        ``generator`` in its start-of-pass state."""
        check_int(start_batch, "start_batch", low=0)
        if self._images is None:
            self._images = self.split.images.to(self.device)
        draw = self.draw()  # eagerly, before the first batch: skipped batches consume the same randomness
        return self._generate(self._images, draw, start_batch)

    def _generate(self, images: torch.Tensor, draw: PairDraw,
                  start_batch: int) -> Iterator[Tuple[Pairs, torch.Tensor]]:
        b = self.batch_size
        for i in range(start_batch, len(self)):
            part = draw.slice(i * b, (i + 1) * b)
            labels = torch.stack([part.first_label, part.second_label], dim=1).to(self.device)
            yield Pairs(*render_pairs(images, part)), labels

    def __repr__(self) -> str:
        mode = "fresh pairs every pass" if self.generator is not None else f"seed={self.seed}"
        return (f"PairBatches(n={self.num_examples}, batch_size={self.batch_size}, batches={len(self)}, {mode}, "
                f"max_shift={self.max_shift}, device={str(self.device)!r})")


def pair_test_batches(test_digits: ImageSplit, batch_size: int, device: Union[str, torch.device] = "cpu",
                      limit: Optional[int] = None) -> PairBatches:
    """The fixed MultiMNIST test set of training runs and ``capsedu evaluate``: :data:`TEST_PAIRS` pairs of
    ``test_digits`` drawn with :data:`TEST_SEED` (``limit``: only the first ``limit`` of them)."""
    return PairBatches(test_digits, TEST_PAIRS, batch_size, seed=TEST_SEED, device=device, limit=limit)
