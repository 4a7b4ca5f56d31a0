"""Tiny CIFAR-10, SVHN and smallNORB files in each data set's real on-disk format, for the loader tests.

Every writer takes a seeded ``numpy.random.Generator`` (or a seed) so the files are the same on
every run, and returns the arrays it wrote, so tests can compare what the loaders read back.
"""
from __future__ import annotations

import gzip
import pathlib
import pickle
import struct
from typing import Dict, Tuple

import numpy as np

from capsedu.data.cifar10 import CIFAR10_FILES, CIFAR10_FOLDER
from capsedu.data.smallnorb import SMALLNORB_FILES, SMALLNORB_FOLDER
from capsedu.data.svhn import SVHN_FILES, SVHN_FOLDER

BYTE_MAGIC, INT_MAGIC = 0x1E3D4C55, 0x1E3D4C54


def write_cifar10_batch(path: pathlib.Path, images: np.ndarray, labels: np.ndarray, protocol: int = 2) -> None:
    """A CIFAR-10 python batch: a pickled dict with ``b"data"`` uint8 ``(N, 3072)`` and ``b"labels"``."""
    batch = {b"batch_label": path.name.encode(), b"labels": [int(v) for v in labels],
             b"data": images.reshape(len(images), 3 * 32 * 32), b"filenames": [b"img_%d.png" % i for i in range(len(images))]}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def write_cifar10(root: pathlib.Path, per_batch: int = 4, seed: int = 0,
                  protocol: int = 2) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """All six CIFAR-10 files (``per_batch`` images in each) plus ``batches.meta`` under ``root``."""
    rng = np.random.default_rng(seed)
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, names in CIFAR10_FILES.items():
        parts = []
        for name in names:
            images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
            labels = rng.integers(0, 10, per_batch)
            write_cifar10_batch(folder / name, images, labels, protocol)
            parts.append((images, labels))
        written[split] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                             b"ship", b"truck"], b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return written


def write_svhn_mat(path: pathlib.Path, images: np.ndarray, digits: np.ndarray) -> None:
    """An SVHN ``.mat``: ``X`` uint8 ``(32, 32, 3, N)`` and ``y`` ``(N, 1)`` with the digit 0 written as 10."""
    import scipy.io

    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    scipy.io.savemat(str(path), {"X": np.ascontiguousarray(images.transpose(2, 3, 1, 0)), "y": y})


def write_svhn(root: pathlib.Path, n: int = 12, seed: int = 0) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """``train_32x32.mat`` and ``test_32x32.mat`` with ``n`` images each; returns ``(N, 3, 32, 32)`` images, digits."""
    rng = np.random.default_rng(seed)
    folder = root / SVHN_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, name in SVHN_FILES.items():
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        digits = np.arange(n) % 10  # every digit, 0 included, so the 10 -> 0 mapping is exercised
        write_svhn_mat(folder / name, images, digits)
        written[split] = (images, digits)
    return written


def write_norb_matrix(path: pathlib.Path, array: np.ndarray, magic: int, gz: bool = False) -> None:
    """The NORB binary matrix format: int32 magic, int32 ndim, max(3, ndim) int32 sizes, the data (little-endian)."""
    sizes = list(array.shape) + [1] * max(0, 3 - array.ndim)
    dtype = "u1" if magic == BYTE_MAGIC else "<i4"
    payload = struct.pack(f"<ii{len(sizes)}i", magic, array.ndim, *sizes) + array.astype(dtype).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload, compresslevel=1)
    path.write_bytes(payload)


def write_smallnorb(root: pathlib.Path, n: int = 8, seed: int = 0,
                    gz: bool = False) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """The four ``-dat`` / ``-cat`` files (``n`` 2x96x96 stereo pairs each) and the two ``-info`` files."""
    rng = np.random.default_rng(seed)
    folder = root / SMALLNORB_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, (dat, cat, info) in SMALLNORB_FILES.items():
        images = rng.integers(0, 256, (n, 2, 96, 96), dtype=np.uint8)
        labels = np.arange(n) % 5
        write_norb_matrix(folder / dat, images, BYTE_MAGIC, gz)
        write_norb_matrix(folder / cat, labels, INT_MAGIC, gz)
        write_norb_matrix(folder / info, rng.integers(0, 9, (n, 4)), INT_MAGIC, gz)
        written[split] = (images, labels)
    return written
