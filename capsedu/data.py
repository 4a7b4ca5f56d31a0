"""MNIST for capsule networks: loading, a fast in-memory batcher, and the paper's derived data sets.

What is here
------------
* :func:`load_mnist` reads full MNIST (via ``torchvision``) or, when it cannot be had, a
  small class-balanced subset shipped inside the package, so every notebook runs offline.
* :class:`Batches` keeps a whole split on the device as ``uint8`` and yields float batches,
  optionally with the paper's augmentation (random shifts of up to 2 pixels, :func:`random_shift`).
* :func:`make_multimnist` builds MultiMNIST (section 6): two digits of different classes,
  each shifted by up to 4 pixels, overlaid on a 36x36 canvas.
* :func:`make_affine_test` builds an affNIST-like test set (section 5.2) by applying random
  affine transforms to digits padded to 40x40. The real affNIST is not used because it
  cannot be downloaded offline; the generated set follows its recipe but is not identical.

Where the data lives
--------------------
:func:`resolve_root` picks the folder that holds ``MNIST/raw/`` (torchvision's layout):
an explicit ``root`` argument, else ``$CAPSEDU_DATA``, else ``~/.cache/capsedu``.
Loading the 60,000 training digits from the raw IDX files takes about 0.1-0.2 s (plus a
one-off ``import torchvision`` of a few seconds), so nothing is cached between calls.

How the shipped subset was made
-------------------------------
``capsedu/assets/mnist_subset.npz`` holds 5,000 training and 1,000 test digits, 10% per class,
sampled with a seeded ``torch.Generator`` (seed 0) from full MNIST::

    capsedu make-subset --data <dir-with-full-MNIST>

or, equivalently, without the CLI::

    python -m capsedu.data --data <dir-with-full-MNIST> --n-train 5000 --n-test 1000 --seed 0

``<dir-with-full-MNIST>`` is the folder that contains ``MNIST/raw/``. The file also stores
the source index of every digit and a JSON ``meta`` string (seed, counts, SHA-256 of the raw
files), so the sample can be audited against the full data set.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import struct
import sys
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ._io import atomic_write

__all__ = [
    "DATA_ENV", "SUBSET_PATH", "DataError", "resolve_root", "MNISTSplit", "load_mnist",
    "to_float", "draw_shifts", "shift_images", "random_shift", "Batches",
    "MultiMNIST", "make_multimnist", "pad_to", "random_affine", "make_affine_test", "build_subset",
]

DATA_ENV = "CAPSEDU_DATA"
SUBSET_PATH: pathlib.Path = pathlib.Path(__file__).resolve().parent / "assets" / "mnist_subset.npz"

_SPLITS = ("train", "test")
_FILE_PREFIX = {"train": "train", "test": "t10k"}
_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801  # IDX: ubyte data, 3 dims / 1 dim
_MULTI_CANVAS = 36  # the paper's MultiMNIST canvas: 28 + 2 * 4
_CHUNK = 4096  # bounds the memory of per-example intermediates (affine grids)

PathLike = Union[str, "os.PathLike[str]"]


class DataError(RuntimeError):
    """Data that should be there is missing or unreadable; the message names the file."""


def resolve_root(root: Optional[PathLike] = None) -> pathlib.Path:
    """The folder that holds (or will hold) ``MNIST/raw``.

    Precedence: explicit ``root`` > ``$CAPSEDU_DATA`` > ``~/.cache/capsedu``. ``~`` is expanded
    and relative paths are made absolute, so error messages name a findable place.
    """
    if root is None:
        root = os.environ.get(DATA_ENV) or "~/.cache/capsedu"  # an empty variable counts as unset
    return pathlib.Path(os.path.abspath(os.path.expanduser(os.fspath(root))))


@dataclass
class MNISTSplit:
    """One MNIST split kept compactly in memory; convert batches with :func:`to_float`.

    Attributes:
        images: ``uint8`` ``(N, 28, 28)``, 0 = background.
        labels: ``int64`` ``(N,)`` in ``0..9``.
        source: ``"full"`` (torchvision MNIST) or ``"subset"`` (the shipped sample).
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:  # the dataclass default would print the tensors
        return f"MNISTSplit(n={len(self)}, source={self.source!r})"


# ----------------------------------------------------------------------------- loading


def _raw_files(raw: pathlib.Path, split: str) -> Tuple[pathlib.Path, pathlib.Path]:
    prefix = _FILE_PREFIX[split]
    return raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"


def _fix_hint(path: pathlib.Path) -> str:
    return (f"Delete {path} and re-download it (load_mnist(download=True) with internet access), "
            f"or copy an intact file there.")


def _check_idx(path: pathlib.Path, images: bool) -> int:
    """Validate an MNIST IDX file's header against its size; return the number of examples.

    torchvision reads truncated files with ``strict=False`` and fails later with a bare
    reshape error, so the sizes are checked here to name the file and the problem.
    """
    header = 16 if images else 8
    kind = "image" if images else "label"
    size = path.stat().st_size
    if size < header:
        raise DataError(f"MNIST {kind} file {path} is truncated: {size} bytes, shorter than the "
                        f"{header}-byte IDX header. {_fix_hint(path)}")
    with open(path, "rb") as f:
        magic, *dims = struct.unpack(">" + "I" * (header // 4), f.read(header))
    expected_magic = _IMAGE_MAGIC if images else _LABEL_MAGIC
    if magic != expected_magic:
        raise DataError(f"{path} is not an MNIST {kind} file: IDX magic number 0x{magic:08x}, expected "
                        f"0x{expected_magic:08x}. {_fix_hint(path)}")
    if images and dims[1:] != [28, 28]:
        raise DataError(f"MNIST image file {path} holds {dims[1]}x{dims[2]} images, expected 28x28. "
                        f"{_fix_hint(path)}")
    expected_size = header + int(np.prod(dims))
    if size != expected_size:
        raise DataError(f"MNIST {kind} file {path} is truncated or corrupt: {size} bytes, but its header "
                        f"promises {dims[0]} {kind}s ({expected_size} bytes). {_fix_hint(path)}")
    return dims[0]


def _check_pair(image_path: pathlib.Path, label_path: pathlib.Path) -> None:
    n_images, n_labels = _check_idx(image_path, True), _check_idx(label_path, False)
    if n_images != n_labels:
        raise DataError(f"{image_path} holds {n_images} images but {label_path} holds {n_labels} labels; "
                        f"one of them is from a different download. {_fix_hint(image_path)}")


def _validate_split(images: torch.Tensor, labels: torch.Tensor, where: str, hint: str = "") -> None:
    """Shape, dtype and label-range checks shared by full and subset loading."""
    problem = None
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        problem = f"images are {tuple(images.shape)} {images.dtype}, expected (N, 28, 28) torch.uint8"
    elif labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        problem = f"labels have shape {tuple(labels.shape)} for {images.shape[0]} images"
    elif labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 9):
        problem = f"labels span {int(labels.min())}..{int(labels.max())}, expected 0..9"
    if problem:
        raise DataError(f"{where}: {problem}. {hint}".rstrip())


def _short_reason(exc: BaseException) -> str:
    # torchvision's download error lists every mirror; the last line is the actual failure
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1].strip("<>") if lines else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _read_subset(split: str) -> Tuple[MNISTSplit, dict]:
    """The shipped subset's ``split`` plus the sizes of both splits (for messages)."""
    path = SUBSET_PATH  # read at call time so tests can point it elsewhere
    hint = ("Reinstall capsedu, or rebuild it from full MNIST with "
            "`capsedu make-subset --data <dir-with-full-MNIST>`.")
    if not path.is_file():
        raise DataError(f"The shipped MNIST subset {path} is missing. {hint}")
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z[f"{split}_images"]
            labels = z[f"{split}_labels"]
            counts = {s: int(z[f"{s}_labels"].shape[0]) for s in _SPLITS}
    except Exception as e:  # zip, zlib, key and format errors all mean the same thing here
        raise DataError(f"The shipped MNIST subset {path} is corrupt ({type(e).__name__}: {e}). {hint}") from e
    out = MNISTSplit(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), "subset")
    _validate_split(out.images, out.labels, f"The shipped MNIST subset {path} is corrupt ({split} split)", hint)
    return out, counts


def load_mnist(
    split: str = "train",
    root: Optional[PathLike] = None,
    download: bool = True,
    subset: Optional[bool] = None,
    verbose: bool = True,
) -> MNISTSplit:
    """Load an MNIST split as ``uint8`` images and ``int64`` labels.

    Args:
        split: ``"train"`` or ``"test"``.
        root: folder holding ``MNIST/raw``; see :func:`resolve_root`.
        download: let torchvision fetch missing files.
        subset: ``True`` always uses the shipped subset (5,000 / 1,000 digits); ``False``
            requires full MNIST and raises :class:`DataError` otherwise; ``None`` (auto) uses
            full MNIST when it is present or downloadable, else the subset.
        verbose: in auto mode, print one line to stderr when falling back to the subset.

    A file that is present but corrupt is always an error, never a reason to fall back:
    silently training on 5,000 digits instead of 60,000 would be a worse surprise.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if subset:
        return _read_subset(split)[0]

    root_path = resolve_root(root)
    raw = root_path / "MNIST" / "raw"
    image_path, label_path = _raw_files(raw, split)
    for path, is_images in ((image_path, True), (label_path, False)):
        if path.is_file():  # before any download: a corrupt file must not be masked by a fallback
            _check_idx(path, is_images)

    import torchvision  # deferred: only full-data loading needs it

    try:
        ds = torchvision.datasets.MNIST(str(root_path), train=(split == "train"), download=download)
    except Exception as e:
        # torchvision needs all four files, whatever the split
        missing = [p.name for s in _SPLITS for p in _raw_files(raw, s) if not p.is_file()]
        if not missing:  # everything is there, so reading failed: corrupt, not absent
            _check_pair(image_path, label_path)
            raise DataError(f"torchvision could not read MNIST {split} files in {raw} "
                            f"({type(e).__name__}: {_short_reason(e)}). {_fix_hint(image_path)}") from e
        reason = _short_reason(e) if download else "download=False"
        if subset is False:
            raise DataError(
                f"Full MNIST ({split}) is not available under {root_path}: missing {', '.join(missing)} in {raw}, "
                f"and it could not be downloaded ({reason}). Put the raw IDX files there, point "
                f"${DATA_ENV} or root= at a folder containing MNIST/raw, or allow download with internet access."
            ) from e
        out, counts = _read_subset(split)
        if verbose:
            print(f"capsedu: full MNIST not found under {root_path} and could not be downloaded ({reason}); "
                  f"using the shipped subset ({counts['train']} train / {counts['test']} test digits).",
                  file=sys.stderr)
        return out

    images, labels = ds.data.contiguous(), ds.targets.to(torch.int64).contiguous()
    _validate_split(images, labels, f"MNIST {split} files {image_path} / {label_path} are corrupt",
                    _fix_hint(image_path))
    return MNISTSplit(images, labels, "full")


# ----------------------------------------------------------------------------- tensors and augmentation


def to_float(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` ``(N, H, W)`` or ``(N, 1, H, W)`` -> ``float32`` ``(N, 1, H, W)`` in ``[0, 1]``.

    A channel axis is added only when missing, so ``(N, C, H, W)`` keeps its ``C``. Floating
    inputs are assumed to be in ``[0, 1]`` already and are only cast.
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)  # (N, 1, H, W)
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, H, W) or (N, C, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if images.is_floating_point():
        return images.to(torch.float32)
    raise TypeError(f"expected uint8 or floating images, got {images.dtype}")


def _generator_device(generator: Optional[torch.Generator]) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def draw_shifts(
    n: int,
    max_shift: int,
    generator: Optional[torch.Generator] = None,
    device: Union[str, torch.device, None] = None,
) -> torch.Tensor:
    """``n`` integer shifts ``(dx, dy)``, each uniform in ``[-max_shift, max_shift]``: ``int64 (n, 2)``.

    Drawn on the generator's device (CPU for ``None``, i.e. the global generator), then moved
    to ``device``, so a CPU generator gives the same shifts whatever device the images are on.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator,
                           device=_generator_device(generator))
    return shifts if device is None else shifts.to(device)


def shift_images(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Translate each image by its own integer ``(dx, dy)``, filling the uncovered border with 0.

    ``out[b, c, y, x] = images[b, c, y - dy, x - dx]`` (0 where that falls outside), so positive
    ``dx`` moves content right and positive ``dy`` moves it down; content shifted out is lost.

    Args:
        images: ``(B, C, H, W)`` float tensor.
        shifts: ``(B, 2)`` integer tensor of ``(dx, dy)``.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    b, c, h, w = images.shape
    shifts = shifts.to(device=images.device, dtype=torch.long)
    dx, dy = shifts[:, 0:1], shifts[:, 1:2]  # (B, 1)
    rows = torch.arange(h, device=images.device) - dy  # (B, H) source row of each output row
    cols = torch.arange(w, device=images.device) - dx  # (B, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
    # one flat gather with clamped indices; the mask then zeroes what came from outside
    flat = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # (B, H, W)
    out = images.reshape(b, c, h * w).gather(2, flat.reshape(b, 1, h * w).expand(b, c, h * w))
    out = out.reshape(b, c, h, w)
    # where, not multiply: 0 * inf would leak NaN into the border
    return torch.where(inside[:, None], out, out.new_zeros(()))


def random_shift(
    images: torch.Tensor,
    max_shift: int = 2,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """The paper's augmentation: shift each image independently by up to ``max_shift`` pixels.

    ``dx`` and ``dy`` are integers drawn uniformly from ``[-max_shift, max_shift]`` by
    :func:`draw_shifts` (so ``draw_shifts(len(images), max_shift, g)`` with an identically
    seeded ``g`` reproduces them); the border is zero-filled (:func:`shift_images`).
    ``max_shift=0`` returns ``images`` itself and draws nothing.

    Args:
        images: ``(B, C, H, W)`` floating tensor on any device.
        generator: may live on the CPU even when ``images`` are on a GPU.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if max_shift == 0:
        return images
    return shift_images(images, draw_shifts(images.shape[0], max_shift, generator, images.device))


# ----------------------------------------------------------------------------- batching


class Batches:
    """A fast in-memory loader: the whole split lives on ``device``; batches are cut there.

    The ``uint8`` images are moved to ``device`` once (on first iteration) and each batch is
    indexed, converted to ``float32`` in ``[0, 1]`` and augmented on that device, which is
    much faster than a ``DataLoader`` over single images for a data set this small.

    Args:
        split: an :class:`MNISTSplit` or an ``(images, labels)`` pair; images ``(N, H, W)`` or
            ``(N, C, H, W)``, ``uint8`` (scaled by 1/255) or float (used as is).
        batch_size: examples per batch.
        shuffle: draw a fresh permutation from ``generator`` for every epoch.
        augment_shift: if > 0, shift every image by up to this many pixels (:func:`random_shift`).
        device: where batches are produced.
        generator: source of all randomness (``None``: torch's global CPU generator).
        drop_last: drop a final batch smaller than ``batch_size``.
        limit: use only the first ``limit`` examples (before shuffling), e.g. for quick runs.

    Yields ``(images float32 (B, C, H, W), labels (B,))`` on ``device``.

    Each epoch draws its permutation and all its shifts from ``generator`` when iteration
    starts (``iter()``), before the first batch, so the draws do not depend on how many
    batches are consumed. Hence :meth:`iter_from` reproduces an interrupted epoch exactly,
    provided the generator is in the state it had at the start of that epoch (save
    ``generator.get_state()`` at every epoch start to resume).
    """

    def __init__(
        self,
        split: Union[MNISTSplit, Tuple[torch.Tensor, torch.Tensor]],
        batch_size: int,
        shuffle: bool = False,
        augment_shift: int = 0,
        device: Union[str, torch.device] = "cpu",
        generator: Optional[torch.Generator] = None,
        drop_last: bool = False,
        limit: Optional[int] = None,
    ) -> None:
        images, labels = (split.images, split.labels) if isinstance(split, MNISTSplit) else split
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if augment_shift < 0:
            raise ValueError(f"augment_shift must be >= 0, got {augment_shift}")
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit must be >= 1 or None, got {limit}")
            images, labels = images[:limit], labels[:limit]
        self.images, self.labels = images, labels  # stay where they are until first iteration
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment_shift = augment_shift
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
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        if self._on_device is None:
            self._on_device = (self.images.to(self.device), self.labels.to(self.device))
        images, labels = self._on_device
        n, g = self.num_examples, self.generator
        # every draw of the epoch happens here, eagerly, so skipped batches consume the same randomness
        order = (torch.randperm(n, generator=g, device=_generator_device(g)).to(self.device)
                 if self.shuffle else None)
        shifts = draw_shifts(n, self.augment_shift, g, self.device) if self.augment_shift > 0 else None
        return self._generate(images, labels, order, shifts, start_batch)

    def _generate(self, images: torch.Tensor, labels: torch.Tensor, order: Optional[torch.Tensor],
                  shifts: Optional[torch.Tensor], start_batch: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n, b = self.num_examples, self.batch_size
        for i in range(start_batch, len(self)):
            lo, hi = i * b, min((i + 1) * b, n)
            if order is None:
                xb, yb = images[lo:hi], labels[lo:hi]
            else:  # index_select: much cheaper than advanced indexing on CPU
                xb, yb = images.index_select(0, order[lo:hi]), labels.index_select(0, order[lo:hi])
            x = to_float(xb)  # (B, C, H, W)
            if shifts is not None:
                x = shift_images(x, shifts[lo:hi])
            yield x, yb

    def __repr__(self) -> str:
        return (f"Batches(n={self.num_examples}, batch_size={self.batch_size}, batches={len(self)}, "
                f"shuffle={self.shuffle}, augment_shift={self.augment_shift}, device={str(self.device)!r})")


# ----------------------------------------------------------------------------- MultiMNIST


@dataclass
class MultiMNIST:
    """Pairs of overlaid digits of different classes (paper section 6).

    The paper only says the digits are "overlaid". Here the overlay is the saturating sum
    ``clamp(first + second, max=1)``: where strokes cross, the ink adds up and is capped, like
    two digits written on the same sheet. A pixelwise max would differ only on the pixels
    where both digits have ink (it never darkens faint overlaps).

    Attributes:
        images: ``float32 (N, 1, 36, 36)`` in ``[0, 1]``, the overlay.
        labels: ``float32 (N, 10)`` multi-hot with exactly two ones.
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


def make_multimnist(split: MNISTSplit, n: int, max_shift: int = 4, seed: int = 0) -> MultiMNIST:
    """Generate ``n`` MultiMNIST examples from ``split``, deterministically for a given ``seed``.

    Each 28x28 digit is placed in the middle of a 36x36 canvas (offset 4, 4) and shifted by
    integer ``dx, dy`` uniform in ``[-max_shift, max_shift]`` (content pushed past the canvas
    when ``max_shift > 4`` is cut). The first digit is uniform over the split; the second is a
    uniformly chosen example of a uniformly chosen *other* class present in the split.

    Memory: about 15.5 KB per example (three float32 canvases).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    g = torch.Generator().manual_seed(seed)
    labels = split.labels.cpu()
    counts = torch.bincount(labels, minlength=10)  # (10,)
    present = torch.nonzero(counts).flatten()  # classes that can be drawn, sorted
    k = present.numel()
    if k < 2:
        raise ValueError("MultiMNIST needs digits of at least two classes")

    first_idx = torch.randint(len(labels), (n,), generator=g)
    first_label = labels[first_idx]
    # pick the second class as a non-zero offset in the ring of present classes: never equal, uniform
    rank_of = torch.full((10,), -1, dtype=torch.long)
    rank_of[present] = torch.arange(k)
    second_label = present[(rank_of[first_label] + torch.randint(1, k, (n,), generator=g)) % k]
    by_class = torch.argsort(labels, stable=True)  # indices grouped by class
    starts = torch.cumsum(counts, 0) - counts
    offset = (torch.rand(n, generator=g, dtype=torch.float64) * counts[second_label]).long()
    second_idx = by_class[starts[second_label] + torch.minimum(offset, counts[second_label] - 1)]

    pad = (_MULTI_CANVAS - 28) // 2
    images = split.images.cpu()

    def place(idx: torch.Tensor) -> torch.Tensor:
        canvas = F.pad(to_float(images.index_select(0, idx)), (pad, pad, pad, pad))  # (n, 1, 36, 36)
        return shift_images(canvas, draw_shifts(n, max_shift, g))

    first, second = place(first_idx), place(second_idx)
    multi_hot = torch.zeros(n, 10)
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


# ----------------------------------------------------------------------------- affNIST-like test set


def pad_to(images: torch.Tensor, size: int = 40) -> torch.Tensor:
    """Centre ``(B, C, H, W)`` images on a zero canvas: ``(B, C, size, size)``.

    With an odd margin the extra pixel goes to the right / bottom.
    """
    h, w = images.shape[-2:]
    if size < h or size < w:
        raise ValueError(f"size {size} is smaller than the images ({h}x{w})")
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(images, (left, size - w - left, top, size - h - top))


def _affine_theta(
    n: int, height: int, width: int, max_rotation: float, max_shear: float,
    scale_range: Sequence[float], max_translate: int, generator: Optional[torch.Generator],
) -> torch.Tensor:
    """Random ``(n, 2, 3)`` matrices for ``F.affine_grid`` (``align_corners=False``), in float64.

    The transform is built in pixel units about the image centre,
    ``p_out = R(angle) @ Shear @ diag(sx, sy) @ p_in + t``, then inverted (``affine_grid``
    maps output positions to input positions) and rescaled to normalised coordinates, so
    non-square images rotate without distortion and translations are whole pixels.
    """
    dev = _generator_device(generator)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=dev, dtype=torch.float64)

    angle = torch.deg2rad(uniform(-max_rotation, max_rotation))
    shear = uniform(-max_shear, max_shear)
    sx, sy = uniform(*scale_range), uniform(*scale_range)
    t = torch.randint(-max_translate, max_translate + 1, (n, 2), generator=generator, device=dev).double()
    cos, sin, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    rot = torch.stack([cos, -sin, sin, cos], -1).view(n, 2, 2)
    shr = torch.stack([one, shear, zero, one], -1).view(n, 2, 2)
    scl = torch.stack([sx, zero, zero, sy], -1).view(n, 2, 2)
    inv = torch.linalg.inv(rot @ shr @ scl)  # (n, 2, 2)
    to_norm = torch.tensor([2.0 / width, 2.0 / height], dtype=torch.float64, device=dev)  # pixels -> [-1, 1]
    lin = to_norm[:, None] * inv / to_norm[None, :]  # D @ inv @ D^-1
    offset = -to_norm * (inv @ t.unsqueeze(-1)).squeeze(-1)  # -D @ inv @ t
    return torch.cat([lin, offset.unsqueeze(-1)], dim=-1)


def _apply_theta(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(
    images: torch.Tensor,
    max_rotation: float = 20.0,
    max_shear: float = 0.1,
    scale_range: Sequence[float] = (0.8, 1.2),
    max_translate: int = 6,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Apply an independent random affine transform to every image, zeros outside.

    Per image: rotation uniform in ``±max_rotation`` degrees, horizontal shear factor uniform
    in ``±max_shear``, x and y scale each uniform in ``scale_range``, and an integer
    translation in ``[-max_translate, max_translate]`` pixels per axis. Bilinear sampling via
    ``F.affine_grid`` / ``F.grid_sample``; the identity parameters reproduce the input.

    Args:
        images: ``(B, C, H, W)`` float tensor (pad first, e.g. :func:`pad_to`, to leave room).
        generator: may live on the CPU even when ``images`` are on a GPU.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    b, _, h, w = images.shape
    theta = _affine_theta(b, h, w, max_rotation, max_shear, scale_range, max_translate, generator)
    return _apply_theta(images, theta)


def make_affine_test(
    split: MNISTSplit, n: Optional[int] = None, size: int = 40, seed: int = 0, **affine_kwargs
) -> Tuple[torch.Tensor, torch.Tensor]:
    """An affNIST-like robustness test set: the first ``n`` digits, padded and randomly warped.

    The paper (section 5.2) trains on MNIST digits placed at random on a 40x40 canvas and
    tests on affNIST. affNIST itself is not downloadable offline, so this generates a similar
    set: each digit is centred on a ``size`` x ``size`` canvas (:func:`pad_to`) and transformed
    by :func:`random_affine` (``affine_kwargs`` override its ranges). It is *not* the real
    affNIST, so accuracies are comparable across models here but not with the paper's 79%.

    Returns:
        ``(images float32 (n, 1, size, size), labels int64 (n,))``, the same for the same seed.
    """
    n = len(split) if n is None else min(n, len(split))
    g = torch.Generator().manual_seed(seed)
    params = dict(max_rotation=20.0, max_shear=0.1, scale_range=(0.8, 1.2), max_translate=6)
    unknown = set(affine_kwargs) - set(params)
    if unknown:
        raise TypeError(f"unknown affine arguments: {sorted(unknown)}")
    params.update(affine_kwargs)
    theta = _affine_theta(n, size, size, generator=g, **params)  # drawn at once: chunking can't change results
    source = split.images[:n]
    chunks = [  # each (chunk, 1, size, size)
        _apply_theta(pad_to(to_float(source[lo:lo + _CHUNK]), size), theta[lo:lo + _CHUNK])
        for lo in range(0, n, _CHUNK)
    ]
    images = torch.cat(chunks) if chunks else torch.zeros(0, 1, size, size)
    return images, split.labels[:n].clone()


# ----------------------------------------------------------------------------- the shipped subset


def _balanced_indices(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` distinct indices, ``n // 10`` per class (the remainder to the lowest classes), shuffled."""
    perm = torch.randperm(len(labels), generator=generator)
    permuted = labels[perm]
    picked = []
    for c in range(10):  # ten classes: a Python loop here costs nothing
        want = n // 10 + (1 if c < n % 10 else 0)
        pool = perm[permuted == c]
        if pool.numel() < want:
            raise ValueError(f"class {c} has only {pool.numel()} examples, {want} requested")
        picked.append(pool[:want])
    chosen = torch.cat(picked)
    # shuffled so that any prefix (Batches(limit=...)) is class-mixed too
    return chosen[torch.randperm(len(chosen), generator=generator)]


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_subset(
    out_path: PathLike = SUBSET_PATH,
    root: Optional[PathLike] = None,
    n_train: int = 5000,
    n_test: int = 1000,
    seed: int = 0,
) -> pathlib.Path:
    """Write a class-balanced random sample of full MNIST to ``out_path`` (``.npz``).

    Stores ``uint8`` arrays ``{train,test}_images`` ``(n, 28, 28)`` and ``{train,test}_labels``
    ``(n,)``, ``int32`` ``{train,test}_indices`` (positions in torchvision's MNIST order) and a
    JSON ``meta`` string. Uses one ``torch.Generator`` seeded with ``seed``, so the same inputs
    give the same sample. The file is written to a temporary name and renamed, so a crash
    never leaves a half-written subset behind.
    """
    out = pathlib.Path(out_path)
    root_path = resolve_root(root)
    g = torch.Generator().manual_seed(seed)
    arrays = {}
    meta = {"seed": seed, "n_train": n_train, "n_test": n_test, "made_by": "capsedu.data.build_subset",
            "indices": "positions in torchvision.datasets.MNIST(train=...) order", "per_class": {},
            "sha256": {}}
    for split, n in (("train", n_train), ("test", n_test)):
        full = load_mnist(split, root=root_path, subset=False)
        idx = _balanced_indices(full.labels, n, g)
        arrays[f"{split}_images"] = full.images[idx].numpy().astype(np.uint8)
        arrays[f"{split}_labels"] = full.labels[idx].numpy().astype(np.uint8)
        arrays[f"{split}_indices"] = idx.numpy().astype(np.int32)
        meta["per_class"][split] = torch.bincount(full.labels[idx], minlength=10).tolist()
        for path in _raw_files(root_path / "MNIST" / "raw", split):
            if path.is_file():  # absent only for torchvision's legacy processed/*.pt layout
                meta["sha256"][path.name] = _sha256(path)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))  # a unicode scalar: loads without pickle

    return atomic_write(out, lambda f: np.savez_compressed(f, **arrays))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m capsedu.data``: rebuild the shipped subset from full MNIST."""
    parser = argparse.ArgumentParser(prog="python -m capsedu.data",
                                     description="Rebuild the shipped MNIST subset from full MNIST.")
    parser.add_argument("--data", default=None,
                        help=f"folder containing MNIST/raw (default: ${DATA_ENV} or ~/.cache/capsedu)")
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(SUBSET_PATH))
    args = parser.parse_args(argv)
    try:
        path = build_subset(args.out, root=args.data, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    except (DataError, ValueError) as e:
        print(f"capsedu: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
