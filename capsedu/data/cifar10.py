"""CIFAR-10 from its Python batches: 50,000 training and 10,000 test colour images, 32x32, 10 classes.

Where the data lives
--------------------
``<root>/cifar-10-batches-py/`` (torchvision's layout), where ``<root>`` comes from
:func:`~capsedu.data.mnist.resolve_root` (``root=`` / ``--data``, else ``$CAPSEDU_DATA``, else
``~/.cache/capsedu``): ``data_batch_1`` ... ``data_batch_5`` (training) and ``test_batch`` (test),
as extracted from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz. When files are missing
and ``download=True``, torchvision's downloader fetches that archive (163 MB, MD5-checked) and
extracts it there.

Reading the batches safely
--------------------------
Each batch is a pickled dict: ``data``, ``uint8 (N, 3072)`` (the red, green and blue 32x32 planes
of an image, row by row) and ``labels``, ``N`` integers in ``0..9``. Unpickling can run any code
a file names, so the batches are read with an unpickler that builds only dicts, lists, strings,
numbers and numpy arrays (torchvision's ``CIFAR10`` calls ``pickle.load`` as is). Every size is
checked; a truncated, corrupt or foreign file is a one-line :class:`~capsedu.data.DataError`
naming it.

The paper (section 7) trains on 24x24 patches: :mod:`capsedu.data.recipes` pairs this data set
with random 24x24 crops for training, the central 24x24 patch for testing, and the ``"cifar10"``
CapsNet preset.
"""
from __future__ import annotations

import pathlib
import pickle
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ._download import torchvision_output
from .mnist import DATA_ENV, PathLike, _short_reason, resolve_root
from .split import DataError, ImageSplit

__all__ = ["load_cifar10", "read_batch", "CIFAR10_FOLDER", "CIFAR10_FILES", "CIFAR10_URL", "N_CLASSES"]

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES: Dict[str, Tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
N_CLASSES = 10
_SIDE, _CHANNELS = 32, 3


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1"); nothing else is allowed
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_constructors() -> Dict[Tuple[str, str], Any]:
    reconstruct = np.zeros(0).__reduce__()[0]          # how numpy pickles an array (protocols 0-4)
    frombuffer = np.zeros(0).__reduce_ex__(5)[0]       # ... and with protocol 5
    allowed: Dict[Tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_encode}
    for package in ("numpy.core", "numpy._core"):     # numpy 1 and numpy 2 spell the module differently
        allowed[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _ForeignObject(pickle.UnpicklingError):
    """The pickle names a callable other than numpy's array constructors."""


class _ArrayUnpickler(pickle.Unpickler):
    """Builds plain containers and numpy arrays; refuses every other class a pickle names."""

    _ALLOWED = _numpy_constructors()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise _ForeignObject(f"{module}.{name}") from None


def _fix_hint(folder: pathlib.Path) -> str:
    return (f"Delete it and download CIFAR-10 again (load_cifar10(download=True) with internet access, or "
            f"extract {CIFAR10_URL} into {folder.parent}).")


def read_batch(path: pathlib.Path) -> Tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch file: ``uint8 (N, 3, 32, 32)`` images and ``int64 (N,)`` labels.

    Raises:
        DataError: naming ``path`` when it cannot be read, is truncated, holds anything but a
            CIFAR-10 batch, or its sizes or labels do not fit.
    """
    hint = _fix_hint(path.parent)
    try:
        with open(path, "rb") as f:
            # the original batches were written by Python 2: its byte strings decode as latin-1
            batch = _ArrayUnpickler(f, encoding="latin1").load()
    except OSError:
        raise
    except _ForeignObject as e:
        raise DataError(f"{path} is not a CIFAR-10 batch: it asks to run {e}, which capsedu does not unpickle "
                        f"(a batch holds only a dict of numpy arrays and lists). {hint}") from None
    except Exception as e:  # truncation (EOFError), garbage (UnpicklingError), ...
        raise DataError(f"CIFAR-10 batch {path} is truncated or corrupt ({type(e).__name__}: "
                        f"{_short_reason(e)}). {hint}") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict. {hint}")
    # Python 2 keys arrive as str, keys written by Python 3 as bytes
    entries = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
    missing = [k for k in ("data", "labels") if k not in entries]
    if missing:
        raise DataError(f"{path} is not a CIFAR-10 batch: it lacks {', '.join(missing)}. {hint}")
    data, labels = entries["data"], entries["labels"]
    n_pixels = _CHANNELS * _SIDE * _SIDE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != n_pixels:
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"CIFAR-10 batch {path} is corrupt: data is {what}, expected uint8 (N, {n_pixels}). {hint}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"CIFAR-10 batch {path} is corrupt: its labels are not integers. {hint}") from None
    if labels.shape != (data.shape[0],):
        raise DataError(f"CIFAR-10 batch {path} is corrupt: {data.shape[0]} images but labels of shape "
                        f"{labels.shape}. {hint}")
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DataError(f"CIFAR-10 batch {path} is corrupt: labels span {labels.min()}..{labels.max()}, "
                        f"expected 0..{N_CLASSES - 1}. {hint}")
    return data.reshape(-1, _CHANNELS, _SIDE, _SIDE), labels  # (N, 3, 32, 32): the planes are R, G, B


def _download(root: pathlib.Path, verbose: bool) -> None:
    """Fetch and extract the official archive into ``root`` with torchvision's MD5-checking downloader."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets import utils as tv_utils

    with torchvision_output(verbose):
        tv_utils.download_and_extract_archive(CIFAR10.url, str(root), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)


def _missing(folder: pathlib.Path, split: str) -> List[str]:
    return [name for name in CIFAR10_FILES[split] if not (folder / name).is_file()]


def load_cifar10(
    split: str = "train",
    *,
    root: Optional[PathLike] = None,
    download: bool = True,
    subset: Optional[bool] = None,
    verbose: bool = True,
) -> ImageSplit:
    """Load a CIFAR-10 split: ``uint8 (N, 3, 32, 32)`` images and ``int64 (N,)`` labels in ``0..9``.

    Args:
        split: ``"train"`` (the five training batches, 50,000 images) or ``"test"`` (10,000).
        root: folder holding ``cifar-10-batches-py/``; see :func:`~capsedu.data.mnist.resolve_root`.
        download: fetch the archive when the split's files are missing.
        subset: only ``None`` or ``False``: no subset of CIFAR-10 is shipped.
        verbose: show torchvision's download messages and progress bar.

    Raises:
        DataError: the files are missing and cannot be downloaded (the message names them, the
            folder and the URL), a file is corrupt (the message names it), or ``subset=True``.
    """
    if split not in CIFAR10_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if subset:
        raise DataError("no subset is shipped for cifar10: only MNIST has one; drop --subset / subset=True "
                        "and give the full data (--data / $CAPSEDU_DATA)")
    root_path = resolve_root(root)
    folder = root_path / CIFAR10_FOLDER
    missing = _missing(folder, split)
    if missing and download:
        try:
            _download(root_path, verbose)
        except Exception as e:
            reason = _short_reason(e)
        else:
            reason = "the download did not contain them"
        missing = _missing(folder, split)
    else:
        reason = "download=False"
    if missing:
        raise DataError(f"CIFAR-10 ({split}) is not available: missing {', '.join(missing)} in {folder}, and it "
                        f"could not be downloaded ({reason}). Download {CIFAR10_URL} and extract it into "
                        f"{root_path} (it unpacks to {CIFAR10_FOLDER}/), or point ${DATA_ENV} or --data at a "
                        f"folder that holds {CIFAR10_FOLDER}/.")
    parts = [read_batch(folder / name) for name in CIFAR10_FILES[split]]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))  # (N, 3, 32, 32)
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))  # (N,)
    return ImageSplit(images, labels, N_CLASSES, "cifar10", "full", str(folder))
