"""smallNORB (LeCun, Huang & Bottou, 2004): 24,300 training and 24,300 test stereo pairs of toys, 5 classes.

Where the data lives
--------------------
``<root>/smallnorb/`` (``<root>`` from :func:`~capsedu.data.mnist.resolve_root`: ``root=`` /
``--data``, else ``$CAPSEDU_DATA``, else ``~/.cache/capsedu``) holds the original files from
https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/, either as distributed (``.mat.gz``) or
unpacked (``.mat``)::

    smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat   (24300, 2, 96, 96) uint8: the stereo pairs
    smallnorb-5x46789x9x18x6x2x96x96-training-cat.mat   (24300,) int32: the category, 0..4
    smallnorb-5x46789x9x18x6x2x96x96-training-info.mat  instance, elevation, azimuth, lighting
    smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat    the same for the test set
    smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat
    smallnorb-5x01235x9x18x6x2x96x96-testing-info.mat

Only ``-dat`` and ``-cat`` are read; the ``-info`` files are not needed. capsedu does not download
smallNORB (torchvision has no loader for it): copy the files there yourself.

The file format
---------------
These ``.mat`` files are not MATLAB files but the NORB site's "binary matrix" format, all
little-endian: an int32 magic number giving the element type (``0x1E3D4C55`` bytes,
``0x1E3D4C54`` int32, ...), an int32 number of dimensions ``ndim``, then ``max(3, ndim)`` int32
sizes (unused ones are 1), then the elements in C order. The magic number, the sizes and the file
length are checked before anything is read: a truncated, corrupt or foreign file is a one-line
:class:`~capsedu.data.DataError` naming it.

Resizing
--------
The paper (section 7): "We resized the images into 48 x 48 and during training processed random
32 x 32 crops of them. We passed the central 32 x 32 patch during test." The loader does the
resizing: each 48x48 pixel is the mean of a 2x2 block of the 96x96 original (area averaging, the
exact antialiased resize for a factor of 2), rounded to the nearest integer, halves up. Both
stereo images are kept as the two channels: ``uint8 (N, 2, 48, 48)``. The crops are the training
recipe's (:mod:`capsedu.data.recipes`), not the loader's.
"""
from __future__ import annotations

import gzip
import math
import pathlib
import struct
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .mnist import DATA_ENV, PathLike, _short_reason, resolve_root
from .split import DataError, ImageSplit

__all__ = ["load_smallnorb", "read_norb_matrix", "downsample_2x", "SMALLNORB_FOLDER", "SMALLNORB_FILES",
           "SMALLNORB_URL", "N_CLASSES", "SIZE"]

SMALLNORB_FOLDER = "smallnorb"
SMALLNORB_URL = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
_PREFIX = {"train": "smallnorb-5x46789x9x18x6x2x96x96-training", "test": "smallnorb-5x01235x9x18x6x2x96x96-testing"}
SMALLNORB_FILES: Dict[str, Tuple[str, str, str]] = {
    split: (f"{p}-dat.mat", f"{p}-cat.mat", f"{p}-info.mat") for split, p in _PREFIX.items()
}
N_CLASSES = 5        # animal, human, airplane, truck, car
SIZE = 48            # side after resizing ("resized the images into 48 x 48")
_ORIGINAL = 96

#: element type of each magic number of the binary matrix format
_MAGIC: Dict[int, np.dtype] = {
    0x1E3D4C51: np.dtype("<f4"), 0x1E3D4C53: np.dtype("<f8"), 0x1E3D4C54: np.dtype("<i4"),
    0x1E3D4C55: np.dtype("u1"), 0x1E3D4C56: np.dtype("<i2"),
}
_BYTE_MAGIC, _INT_MAGIC = 0x1E3D4C55, 0x1E3D4C54


def _hint() -> str:
    return f"Delete it and copy an intact file from {SMALLNORB_URL}."


def _open(path: pathlib.Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _read_at_most(f, limit: int, chunk: int = 1 << 24) -> bytearray:
    """Up to ``limit`` bytes of ``f``, read ``chunk`` bytes at a time (never one ``limit``-sized request)."""
    out = bytearray()
    while len(out) < limit:
        piece = f.read(min(chunk, limit - len(out)))
        if not piece:
            break
        out += piece
    return out


def read_norb_matrix(path: pathlib.Path, magic: int) -> np.ndarray:
    """Read a binary-matrix file (``.mat`` or ``.mat.gz``) whose element type is ``magic``'s.

    Raises:
        DataError: naming ``path`` for a wrong magic number, an impossible header, or a length
            that does not match the sizes in the header (truncated or padded).
    """
    hint = _hint()
    try:
        with _open(path) as f:
            head = f.read(8)
            if len(head) < 8:
                raise DataError(f"smallNORB file {path} is truncated: {len(head)} bytes, shorter than the header. "
                                f"{hint}")
            found, ndim = struct.unpack("<ii", head)
            if found != magic:
                kind = "byte" if magic == _BYTE_MAGIC else "int32"
                raise DataError(f"{path} is not a smallNORB {kind} matrix: magic number 0x{found & 0xFFFFFFFF:08X}, "
                                f"expected 0x{magic:08X}. {hint}")
            if not 1 <= ndim <= 8:
                raise DataError(f"smallNORB file {path} is corrupt: its header gives {ndim} dimensions. {hint}")
            n_sizes = max(3, ndim)
            raw_sizes = f.read(4 * n_sizes)
            if len(raw_sizes) < 4 * n_sizes:
                raise DataError(f"smallNORB file {path} is truncated inside its header. {hint}")
            shape = struct.unpack(f"<{n_sizes}i", raw_sizes)[:ndim]
            if any(s < 0 for s in shape):
                raise DataError(f"smallNORB file {path} is corrupt: its header gives sizes {shape}. {hint}")
            dtype = _MAGIC[magic]
            header = 8 + 4 * n_sizes
            expected = math.prod(shape) * dtype.itemsize  # Python integers: no overflow for a corrupt header
            # a plain file's length is known before reading; a gzipped one is read up to one byte
            # past what the header promises, in chunks, so a corrupt header cannot ask for terabytes
            gzipped = path.suffix == ".gz"
            body = _read_at_most(f, expected + 1) if gzipped else None
            length = len(body) if gzipped else path.stat().st_size - header
            if length != expected:
                more, unpacked = ("+" if length > expected else ""), (" unpacked" if gzipped else "")
                raise DataError(f"smallNORB file {path} is truncated or corrupt: {header + length}{more} bytes"
                                f"{unpacked}, but its header promises shape {shape} ({header + expected} bytes). "
                                f"{hint}")
            if gzipped:
                return np.frombuffer(body, dtype=dtype).reshape(shape)
            return np.fromfile(f, dtype=dtype, count=expected // dtype.itemsize).reshape(shape)
    except DataError:
        raise
    except (EOFError, gzip.BadGzipFile, struct.error, ValueError) as e:  # a damaged .gz stream
        raise DataError(f"smallNORB file {path} is truncated or corrupt ({type(e).__name__}: {_short_reason(e)}). "
                        f"{hint}") from None


def downsample_2x(images: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Halve the height and width of ``uint8 (N, C, H, W)`` images by 2x2 area averaging.

    Each output pixel is the mean of its 2x2 block, rounded to the nearest integer (halves up),
    computed exactly in integers. Works in chunks of ``chunk`` images to bound memory.
    """
    n, c, h, w = images.shape
    if h % 2 or w % 2:
        raise ValueError(f"images must have an even height and width, got {h}x{w}")
    out = np.empty((n, c, h // 2, w // 2), dtype=np.uint8)
    for lo in range(0, n, chunk):
        block = images[lo:lo + chunk].astype(np.uint16).reshape(-1, c, h // 2, 2, w // 2, 2)
        out[lo:lo + chunk] = (block.sum(axis=(3, 5)) + 2) // 4  # (n, C, H/2, W/2); at most 4 * 255 + 2
    return out


def _find(folder: pathlib.Path, name: str) -> Optional[pathlib.Path]:
    """``name`` in ``folder``, unpacked or gzipped (the unpacked file wins), or ``None``."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_smallnorb(
    split: str = "train",
    *,
    root: Optional[PathLike] = None,
    download: bool = True,
    subset: Optional[bool] = None,
    verbose: bool = True,
) -> ImageSplit:
    """Load a smallNORB split: ``uint8 (N, 2, 48, 48)`` stereo pairs resized from 96x96, ``int64 (N,)`` labels ``0..4``.

    Args:
        split: ``"train"`` or ``"test"`` (24,300 pairs each).
        root: folder holding ``smallnorb/``; see :func:`~capsedu.data.mnist.resolve_root`.
        download: accepted for the common loader signature; smallNORB is never downloaded.
        subset: only ``None`` or ``False``: no subset of smallNORB is shipped.
        verbose: accepted for the common loader signature (nothing is printed).

    Classes: 0 animal, 1 human, 2 airplane, 3 truck, 4 car. Loading the training set reads 448 MB
    and keeps 112 MB.

    Raises:
        DataError: a file is missing (the message names the files, the folder and the URL) or
            corrupt (the message names it), or ``subset=True``.
    """
    if split not in SMALLNORB_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if subset:
        raise DataError("no subset is shipped for smallnorb: only MNIST has one; drop --subset / subset=True "
                        "and give the full data (--data / $CAPSEDU_DATA)")
    folder = resolve_root(root) / SMALLNORB_FOLDER
    dat_name, cat_name, _info = SMALLNORB_FILES[split]
    dat_path, cat_path = _find(folder, dat_name), _find(folder, cat_name)
    if dat_path is None or cat_path is None:
        missing = [n for n, p in ((dat_name, dat_path), (cat_name, cat_path)) if p is None]
        raise DataError(f"smallNORB ({split}) is not available: missing {' and '.join(missing)} (or .gz) in "
                        f"{folder}. capsedu does not download smallNORB: get the files from {SMALLNORB_URL} "
                        f"into that folder, or point ${DATA_ENV} or --data at a folder that holds "
                        f"{SMALLNORB_FOLDER}/.")
    images = read_norb_matrix(dat_path, _BYTE_MAGIC)
    if images.ndim != 4 or images.shape[1:] != (2, _ORIGINAL, _ORIGINAL):
        raise DataError(f"smallNORB file {dat_path} holds an array of shape {images.shape}, expected "
                        f"(N, 2, {_ORIGINAL}, {_ORIGINAL}) stereo pairs. {_hint()}")
    labels = read_norb_matrix(cat_path, _INT_MAGIC)
    if labels.shape != (images.shape[0],):
        raise DataError(f"{dat_path} holds {images.shape[0]} image pairs but {cat_path} holds labels of shape "
                        f"{labels.shape}; one of them is from a different download. {_hint()}")
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DataError(f"smallNORB file {cat_path} is corrupt: labels span {labels.min()}..{labels.max()}, "
                        f"expected 0..{N_CLASSES - 1}. {_hint()}")
    resized = downsample_2x(images)  # (N, 2, 48, 48)
    return ImageSplit(torch.from_numpy(resized), torch.from_numpy(labels.astype(np.int64)), N_CLASSES,
                      "smallnorb", "full", str(folder))
