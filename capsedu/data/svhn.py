"""SVHN (Street View House Numbers, cropped digits): 73,257 training and 26,032 test colour images, 32x32.

Where the data lives
--------------------
``<root>/svhn/train_32x32.mat`` and ``<root>/svhn/test_32x32.mat``, where ``<root>`` comes from
:func:`~capsedu.data.mnist.resolve_root` (``root=`` / ``--data``, else ``$CAPSEDU_DATA``, else
``~/.cache/capsedu``); ``<root>/svhn`` is the folder handed to torchvision's downloader, which
fetches the files from http://ufldl.stanford.edu/housenumbers/ (MD5-checked) when they are
missing and ``download=True``. The paper trains on "the small training set of SVHN with only
73257 images" (section 7), so the 531,131-image ``extra`` set is not offered.

The files are MATLAB (v5) ``.mat`` files read with ``scipy.io.loadmat``: ``X``, ``uint8
(32, 32, 3, N)``, and ``y``, ``(N, 1)`` labels ``1..10`` where 10 stands for the digit 0. Labels
are returned as the digit itself (10 becomes 0, as torchvision does). Every size is checked; a
truncated, corrupt or foreign file is a one-line :class:`~capsedu.data.DataError` naming it.

:mod:`capsedu.data.recipes` pairs this data set with the ``"svhn"`` CapsNet preset (conv1 with 64
channels, 16 types of 6-D primary capsules, 8-D digit capsules) and no augmentation, since the
paper describes none for SVHN.
"""
from __future__ import annotations

import pathlib
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ._download import torchvision_output
from .mnist import DATA_ENV, PathLike, _short_reason, resolve_root
from .split import DataError, ImageSplit

__all__ = ["load_svhn", "read_mat", "SVHN_FOLDER", "SVHN_FILES", "SVHN_URL", "N_CLASSES"]

SVHN_FOLDER = "svhn"
SVHN_FILES: Dict[str, str] = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
N_CLASSES = 10


def _fix_hint() -> str:
    return (f"Delete it and download it again (load_svhn(download=True) with internet access, or from "
            f"{SVHN_URL}).")


def read_mat(path: pathlib.Path) -> Tuple[np.ndarray, np.ndarray]:
    """One SVHN ``.mat`` file: ``uint8 (N, 3, 32, 32)`` images and ``int64 (N,)`` digits ``0..9``.

    Raises:
        DataError: naming ``path`` when it is truncated, not a MATLAB file, lacks ``X`` or ``y``,
            or its sizes or labels do not fit.
    """
    import scipy.io  # deferred: only SVHN needs scipy

    hint = _fix_hint()
    with open(path, "rb") as f:  # an unreadable file is an OSError; what scipy raises below is about the contents
        try:
            mat = scipy.io.loadmat(f, variable_names=("X", "y"))
        except Exception as e:  # ValueError, TypeError, MatReadError, and OSError for a truncated file
            raise DataError(f"SVHN file {path} is truncated or corrupt ({type(e).__name__}: {_short_reason(e)}). "
                            f"{hint}") from None
    missing = [k for k in ("X", "y") if k not in mat]
    if missing:
        raise DataError(f"{path} is not an SVHN file: it lacks the variable(s) {', '.join(missing)}. {hint}")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataError(f"SVHN file {path} is corrupt: X is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N). "
                        f"{hint}")
    n = x.shape[3]
    if y.size != n or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"SVHN file {path} is corrupt: {n} images but y is {y.dtype} {y.shape}. {hint}")
    labels = y.reshape(n)
    if labels.size and (labels.min() < 1 or labels.max() > 10 or np.any(labels != np.round(labels))):
        raise DataError(f"SVHN file {path} is corrupt: labels span {labels.min():g}..{labels.max():g}, "
                        f"expected the integers 1..10. {hint}")
    labels = labels.astype(np.int64) % 10  # SVHN writes the digit 0 as 10
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (32, 32, 3, N) -> (N, 3, 32, 32)
    return images, labels


def _download(folder: pathlib.Path, split: str, verbose: bool) -> None:
    """Fetch one split's file into ``folder`` with torchvision's MD5-checking downloader."""
    from torchvision.datasets import SVHN
    from torchvision.datasets import utils as tv_utils

    url, filename, md5 = SVHN.split_list[split]
    with torchvision_output(verbose):
        tv_utils.download_url(url, str(folder), filename, md5)


def load_svhn(
    split: str = "train",
    *,
    root: Optional[PathLike] = None,
    download: bool = True,
    subset: Optional[bool] = None,
    verbose: bool = True,
) -> ImageSplit:
    """Load an SVHN split: ``uint8 (N, 3, 32, 32)`` images and ``int64 (N,)`` labels, the digits ``0..9``.

    Args:
        split: ``"train"`` (73,257 images) or ``"test"`` (26,032).
        root: folder holding ``svhn/``; see :func:`~capsedu.data.mnist.resolve_root`.
        download: fetch the split's file when it is missing.
        subset: only ``None`` or ``False``: no subset of SVHN is shipped.
        verbose: show torchvision's download messages and progress bar.

    Raises:
        DataError: the file is missing and cannot be downloaded (the message names it, the folder
            and the URL), the file is corrupt (the message names it), or ``subset=True``.
    """
    if split not in SVHN_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if subset:
        raise DataError("no subset is shipped for svhn: only MNIST has one; drop --subset / subset=True "
                        "and give the full data (--data / $CAPSEDU_DATA)")
    root_path = resolve_root(root)
    folder = root_path / SVHN_FOLDER
    path = folder / SVHN_FILES[split]
    reason = "download=False"
    if not path.is_file() and download:
        try:
            _download(folder, split, verbose)
        except Exception as e:
            reason = _short_reason(e)
    if not path.is_file():
        raise DataError(f"SVHN ({split}) is not available: missing {path.name} in {folder}, and it could not be "
                        f"downloaded ({reason}). Download {SVHN_URL}{path.name} into {folder}, or point "
                        f"${DATA_ENV} or --data at a folder that holds {SVHN_FOLDER}/{path.name}.")
    images, labels = read_mat(path)
    return ImageSplit(torch.from_numpy(images), torch.from_numpy(labels), N_CLASSES, "svhn", "full", str(folder))
