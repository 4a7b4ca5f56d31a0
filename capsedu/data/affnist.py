"""affNIST's test set (Tieleman, https://www.cs.toronto.edu/~tijmen/affNIST/), read from its MATLAB files when present.

The paper's section 5.2 tests on it. Its page describes the set: MNIST digits under "various reasonable
affine transformations", 40x40 pixels "with significant translations involved, so much of the challenge
for the models is to learn that a digit means the same thing in the upper right corner as it does in the
lower left corner"; the test data transforms the 10,000 MNIST test digits, 32 randomly chosen versions of
each. It is not downloaded here (copy it by hand): :func:`has_affnist` says whether it is there, and the
affine-robustness experiment then tests on it instead of the generated set
(:func:`capsedu.data.make_affine_test`).

Where the data lives
--------------------
``<root>/affnist/test_batches/1.mat`` ... ``32.mat``: the page's ``32x/transformed/test_batches.zip``
unzipped into ``<root>/affnist`` (any numbered subset of the 32 files also works). Each file holds the
struct ``affNISTdata`` whose ``image`` field is ``uint8 (1600, N)``, one 40x40 image per column, and whose
``label_int`` field holds the ``N`` digits. Each 1600-vector is read row by row into 40x40, as public
readers of these files do. Every name, shape and label is checked; a file that does not fit is a one-line
:class:`~capsedu.data.DataError` naming it.
"""
from __future__ import annotations

import pathlib
import re
from typing import List, Optional

import numpy as np
import torch

from .mnist import DATA_ENV, PathLike, _short_reason, resolve_root
from .split import DataError, ImageSplit

__all__ = ["load_affnist_test", "has_affnist", "affnist_batches", "read_affnist_mat", "AFFNIST_FOLDER",
           "AFFNIST_URL"]

AFFNIST_FOLDER = pathlib.Path("affnist") / "test_batches"
AFFNIST_URL = "https://www.cs.toronto.edu/~tijmen/affNIST/"
SIZE = 40
N_CLASSES = 10

_HINT = (f"Copy affNIST's test batches by hand: unzip 32x/transformed/test_batches.zip from {AFFNIST_URL} into "
         f"<data root>/affnist")


def affnist_batches(root: Optional[PathLike] = None) -> List[pathlib.Path]:
    """The numbered ``.mat`` files in ``<root>/affnist/test_batches``, in number order (``[]`` when none).

    Raises:
        DataError: the folder holds a ``.mat`` file that is not named ``<number>.mat``.
    """
    folder = resolve_root(root) / AFFNIST_FOLDER
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.mat"))
    foreign = [p.name for p in files if not re.fullmatch(r"[0-9]+\.mat", p.name)]
    if foreign:
        raise DataError(f"{folder} holds {', '.join(foreign)}; affNIST's test batches are named 1.mat ... 32.mat")
    return sorted(files, key=lambda p: int(p.stem))


def has_affnist(root: Optional[PathLike] = None) -> bool:
    """Whether affNIST's test batches are under ``root`` (see the module docstring)."""
    return bool(affnist_batches(root))


def read_affnist_mat(path: pathlib.Path) -> tuple:
    """One test batch: ``uint8 (N, 1, 40, 40)`` images and ``int64 (N,)`` digits.

    Raises:
        DataError: naming ``path`` when it is truncated, not a MATLAB file, lacks ``affNISTdata`` or its
            ``image`` / ``label_int`` fields, or its sizes or labels do not fit.
    """
    import scipy.io  # deferred: only the .mat readers need scipy

    with open(path, "rb") as f:
        try:
            mat = scipy.io.loadmat(f, variable_names=("affNISTdata",))
        except Exception as e:  # ValueError, TypeError, MatReadError, OSError for a truncated file
            raise DataError(f"affNIST file {path} is truncated or corrupt ({type(e).__name__}: "
                            f"{_short_reason(e)}). {_HINT}") from None
    data = mat.get("affNISTdata")
    fields = getattr(getattr(data, "dtype", None), "names", None) or ()
    if data is None or data.size != 1 or not {"image", "label_int"} <= set(fields):
        raise DataError(f"{path} is not an affNIST file: it lacks the struct affNISTdata with fields image and "
                        f"label_int. {_HINT}")
    record = data.flat[0]
    image, labels = np.asarray(record["image"]), np.asarray(record["label_int"])
    if image.dtype != np.uint8 or image.ndim != 2 or image.shape[0] != SIZE * SIZE:
        raise DataError(f"affNIST file {path} is corrupt: image is {image.dtype} {image.shape}, expected uint8 "
                        f"(1600, N). {_HINT}")
    n = image.shape[1]
    labels = labels.reshape(-1)
    if labels.size != n or not np.issubdtype(labels.dtype, np.number):
        raise DataError(f"affNIST file {path} is corrupt: {n} images but label_int is {labels.dtype} "
                        f"{labels.shape}. {_HINT}")
    if n and (labels.min() < 0 or labels.max() > 9 or np.any(labels != np.round(labels))):
        raise DataError(f"affNIST file {path} is corrupt: labels span {labels.min():g}..{labels.max():g}, expected "
                        f"the digits 0..9. {_HINT}")
    images = np.ascontiguousarray(image.T.reshape(n, 1, SIZE, SIZE))
    return images, labels.astype(np.int64)


def load_affnist_test(root: Optional[PathLike] = None, n: Optional[int] = None) -> ImageSplit:
    """affNIST's test set (all batches present, in number order), or its first ``n`` examples.

    Raises:
        DataError: no batch is there (the message names the folder and where to get the files), or a
            file is corrupt (the message names it).
    """
    files = affnist_batches(root)
    if not files:
        raise DataError(f"affNIST is not available: no test batches in {resolve_root(root) / AFFNIST_FOLDER}. "
                        f"{_HINT}, or point ${DATA_ENV} or --data at a folder that holds {AFFNIST_FOLDER}/1.mat.")
    images, labels, have = [], [], 0
    for path in files:
        if n is not None and have >= n:
            break
        x, y = read_affnist_mat(path)
        images.append(x)
        labels.append(y)
        have += len(y)
    x, y = np.concatenate(images)[:n], np.concatenate(labels)[:n]
    return ImageSplit(torch.from_numpy(x), torch.from_numpy(y), N_CLASSES, "affnist", "full",
                      str(files[0].parent))
