"""MNIST: full data through torchvision, or the small subset shipped with capsedu when offline.

Where the data lives
--------------------
:func:`resolve_root` picks the folder that holds ``MNIST/raw/`` (torchvision's layout):
an explicit ``root`` argument, else ``$CAPSEDU_DATA``, else ``~/.cache/capsedu``.
Loading the 60,000 training digits from the raw IDX files takes about 0.1-0.2 s (plus a
one-off ``import torchvision`` of a few seconds), so nothing is cached between calls.

How the shipped subset was made
-------------------------------
``capsedu/assets/mnist_subset.npz`` holds 5,000 training and 1,000 test digits, 10% per class,
sampled with a seeded ``torch.Generator`` (seed 0) from full MNIST by :func:`build_subset`::

    capsedu make-subset --data <dir-with-full-MNIST> --n-train 5000 --n-test 1000 --seed 0 --into-package

``<dir-with-full-MNIST>`` is the folder that contains ``MNIST/raw/``. The file also stores
the source index of every digit and a JSON ``meta`` string (seed, counts, SHA-256 of the raw
files), so the sample can be audited against the full data set.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import struct
import sys
from typing import Optional, Tuple, Union

import numpy as np
import torch

from .._io import atomic_write
from .split import DataError, ImageSplit

__all__ = ["DATA_ENV", "SUBSET_PATH", "N_CLASSES", "resolve_root", "load_mnist", "build_subset"]

DATA_ENV = "CAPSEDU_DATA"
SUBSET_PATH: pathlib.Path = pathlib.Path(__file__).resolve().parent.parent / "assets" / "mnist_subset.npz"
N_CLASSES = 10

_SPLITS = ("train", "test")
_FILE_PREFIX = {"train": "train", "test": "t10k"}
_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801  # IDX: ubyte data, 3 dims / 1 dim

PathLike = Union[str, "os.PathLike[str]"]


def resolve_root(root: Optional[PathLike] = None) -> pathlib.Path:
    """The folder that holds (or will hold) ``MNIST/raw``.

    Precedence: explicit ``root`` > ``$CAPSEDU_DATA`` > ``~/.cache/capsedu``. ``~`` is expanded
    and relative paths are made absolute, so error messages name a findable place.
    """
    if root is None:
        root = os.environ.get(DATA_ENV) or "~/.cache/capsedu"  # an empty variable counts as unset
    return pathlib.Path(os.path.abspath(os.path.expanduser(os.fspath(root))))


# ----------------------------------------------------------------------------- file checks


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


def _to_split(images: torch.Tensor, labels: torch.Tensor, source: str, origin: str,
              where: str, hint: str) -> ImageSplit:
    """Wrap ``uint8 (N, 28, 28)`` digits as an :class:`ImageSplit`; any problem is a :class:`DataError`."""
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DataError(f"{where}: images are {tuple(images.shape)} {images.dtype}, "
                        f"expected (N, 28, 28) torch.uint8. {hint}")
    try:
        return ImageSplit(images.unsqueeze(1), labels, N_CLASSES, "mnist", source, origin)  # (N, 1, 28, 28)
    except ValueError as e:
        raise DataError(f"{where}: {e}. {hint}") from None


def _short_reason(exc: BaseException) -> str:
    # torchvision's download error lists every mirror; the last line is the actual failure
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1].strip("<>") if lines else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


# ----------------------------------------------------------------------------- loading


def _read_subset(split: str) -> Tuple[ImageSplit, dict]:
    """The shipped subset's ``split`` plus the sizes of both splits (for messages)."""
    path = SUBSET_PATH  # read at call time so tests can point it elsewhere
    hint = ("Reinstall capsedu, or rebuild it from full MNIST with "
            "`capsedu make-subset --data <dir-with-full-MNIST> --into-package`.")
    if not path.is_file():
        raise DataError(f"The shipped MNIST subset {path} is missing. {hint}")
    try:
        with np.load(path, allow_pickle=False) as z:
            images = z[f"{split}_images"]
            labels = z[f"{split}_labels"]
            counts = {s: int(z[f"{s}_labels"].shape[0]) for s in _SPLITS}
    except Exception as e:  # zip, zlib, key and format errors all mean the same thing here
        raise DataError(f"The shipped MNIST subset {path} is corrupt ({type(e).__name__}: {e}). {hint}") from e
    out = _to_split(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), "subset", str(path),
                    f"The shipped MNIST subset {path} is corrupt ({split} split)", hint)
    return out, counts


def load_mnist(
    split: str = "train",
    root: Optional[PathLike] = None,
    download: bool = True,
    subset: Optional[bool] = None,
    verbose: bool = True,
) -> ImageSplit:
    """Load an MNIST split: ``uint8 (N, 1, 28, 28)`` images and ``int64 (N,)`` labels in ``0..9``.

    Args:
        split: ``"train"`` or ``"test"``.
        root: folder holding ``MNIST/raw``; see :func:`resolve_root`.
        download: let torchvision fetch missing files.
        subset: ``True`` always uses the shipped subset (5,000 / 1,000 digits); ``False``
            requires full MNIST and raises :class:`DataError` otherwise; ``None`` (auto) uses
            full MNIST when it is present or downloadable, else the subset.
        verbose: in auto mode, print one line to stderr when falling back to the subset.

    The result's ``source`` is ``"full"`` (``origin``: the raw folder) or ``"subset"``
    (``origin``: the ``.npz`` file). Auto mode falls back to the subset only when none of the
    four raw files is there: a file that is present but corrupt, a directory or a broken link
    in a file's place, or a set of files with one missing is always an error naming the file,
    never a reason to fall back (silently training on 5,000 digits instead of 60,000 would be
    a worse surprise).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if subset:
        return _read_subset(split)[0]

    root_path = resolve_root(root)
    raw = root_path / "MNIST" / "raw"
    image_path, label_path = _raw_files(raw, split)
    every_file = [p for s in _SPLITS for p in _raw_files(raw, s)]
    for path in every_file:  # torchvision needs all four; a directory or a broken link in their place is no file
        if os.path.lexists(path) and not path.is_file():
            what = "a directory" if path.is_dir() else ("a broken link" if path.is_symlink() else "not a regular file")
            raise DataError(f"MNIST file {path} is {what}. {_fix_hint(path)}")
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
        present = [p.name for p in every_file if p.is_file()]
        if present:  # part of the full data: falling back would hide which file is missing
            raise DataError(
                f"Full MNIST under {raw} is incomplete: missing {', '.join(missing)} (present: {', '.join(present)}), "
                f"and it could not be downloaded ({reason}). Copy the missing files there, or use the shipped "
                f"subset explicitly (subset=True, --subset)."
            ) from e
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

    return _to_split(ds.data.contiguous(), ds.targets.to(torch.int64).contiguous(), "full", str(raw),
                     f"MNIST {split} files {image_path} / {label_path} are corrupt", _fix_hint(image_path))


# ----------------------------------------------------------------------------- the shipped subset


def _balanced_indices(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` distinct indices, ``n // 10`` per class (the remainder to the lowest classes), shuffled."""
    perm = torch.randperm(len(labels), generator=generator)
    permuted = labels[perm]
    picked = []
    for c in range(N_CLASSES):  # ten classes: a Python loop here costs nothing
        want = n // N_CLASSES + (1 if c < n % N_CLASSES else 0)
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
    out_path: PathLike,
    root: Optional[PathLike] = None,
    n_train: int = 5000,
    n_test: int = 1000,
    seed: int = 0,
) -> pathlib.Path:
    """Write a class-balanced random sample of full MNIST to ``out_path`` (``.npz``); ``capsedu make-subset``.

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
        arrays[f"{split}_images"] = full.images[idx, 0].numpy().astype(np.uint8)  # (n, 28, 28)
        arrays[f"{split}_labels"] = full.labels[idx].numpy().astype(np.uint8)
        arrays[f"{split}_indices"] = idx.numpy().astype(np.int32)
        meta["per_class"][split] = torch.bincount(full.labels[idx], minlength=N_CLASSES).tolist()
        for path in _raw_files(root_path / "MNIST" / "raw", split):
            if path.is_file():  # absent only for torchvision's legacy processed/*.pt layout
                meta["sha256"][path.name] = _sha256(path)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))  # a unicode scalar: loads without pickle

    return atomic_write(out, lambda f: np.savez_compressed(f, **arrays))
