"""Image data for capsule networks: one split type, loaders, transforms, a batcher and derived sets.

What is where
-------------
* :mod:`~capsedu.data.split`: :class:`ImageSplit`, the one in-memory data set type
  (``(N, C, H, W)`` images, class-index or multi-hot labels, where they came from).
* :mod:`~capsedu.data.mnist`: :func:`load_mnist` reads full MNIST (via ``torchvision``) or, when
  it cannot be had, a small subset shipped inside the package, so every notebook runs offline.
* :mod:`~capsedu.data.cifar10`, :mod:`~capsedu.data.svhn`, :mod:`~capsedu.data.smallnorb`: the
  other data sets of the paper's section 7, read from their original files (downloaded through
  torchvision for CIFAR-10 and SVHN; smallNORB's binary-matrix files are copied by hand) and
  checked like MNIST's; no subsets are shipped for them.
* :mod:`~capsedu.data.recipes`: how the paper trains on each data set (augmentation, test-time
  crop, CapsNet preset), which ``TrainConfig(augment="auto", preset="auto")`` follows.
* :mod:`~capsedu.data.transforms`: :func:`to_float`, shifts, padding, crops and affine warps,
  and the :class:`Transform` interface (draw all random choices, then apply), random or deterministic.
* :mod:`~capsedu.data.batches`: :class:`Batches` keeps a whole split on the device and yields
  float batches, optionally augmented (the paper: ``RandomShift(2)``), resumable mid-epoch.
* :mod:`~capsedu.data.multimnist`: :func:`make_multimnist` (section 6): two digits of different
  classes, each shifted by up to 4 pixels, overlaid on a 36x36 canvas; :class:`PairBatches` makes
  them batch by batch (fresh pairs every epoch, or a fixed test set) as ``(Pairs, labels)`` batches.
* :mod:`~capsedu.data.affine`: :func:`make_affine_test`, a generated affNIST-like test set
  (section 5.2); not the real affNIST.

:func:`load_split` loads any registered data set by name; a new data set is a module beside
``mnist.py`` whose loader is added to :data:`DATASETS` (and its training recipe to :data:`RECIPES`).
:data:`PAIR_DATASETS` names the data sets of pairs made on the fly (``"multimnist"``), which training
(``TrainConfig(dataset="multimnist")``) builds from their source data set's digits.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from .affine import make_affine_test
from .batches import Batches
from .cifar10 import load_cifar10
from .mnist import DATA_ENV, SUBSET_PATH, PathLike, build_subset, load_mnist, resolve_root
from .multimnist import (
    MultiMNIST, PairBatches, PairDraw, Pairs, make_multimnist, pair_test_batches, render_pairs, sample_pairs,
)
from .recipes import AUGMENTATIONS, RECIPES, DataRecipe, data_transforms, recipe_for
from .smallnorb import load_smallnorb
from .split import DataError, ImageSplit
from .svhn import load_svhn
from .transforms import (
    CenterCrop, CenterPad, DeterministicTransform, RandomAffine, RandomCrop, RandomPlacement, RandomShift, RandomTransform,
    Transform, draw_shifts, pad_to,
    random_affine, random_shift, shift_images, to_float,
)

__all__ = [
    "DataError", "DATA_ENV", "SUBSET_PATH", "ImageSplit", "resolve_root", "load_mnist", "load_split", "DATASETS",
    "load_cifar10", "load_svhn", "load_smallnorb", "DataRecipe", "RECIPES", "AUGMENTATIONS", "recipe_for",
    "data_transforms",
    "build_subset", "to_float", "draw_shifts", "shift_images", "random_shift", "pad_to", "random_affine",
    "Transform", "RandomTransform", "DeterministicTransform", "RandomShift", "RandomPlacement", "RandomCrop",
    "CenterCrop", "CenterPad", "RandomAffine",
    "Batches", "MultiMNIST", "make_multimnist", "make_affine_test", "PAIR_DATASETS", "PairBatches", "PairDraw", "Pairs",
    "sample_pairs", "render_pairs", "pair_test_batches",
]

#: The stored data sets by name. Every loader is called as ``loader(split, root=..., download=..., subset=...,
#: verbose=...)`` (:func:`load_split` passes them by keyword) and returns an :class:`ImageSplit`.
DATASETS: Dict[str, Callable[..., ImageSplit]] = {
    "mnist": load_mnist,
    "cifar10": load_cifar10,
    "svhn": load_svhn,
    "smallnorb": load_smallnorb,
}

#: Data sets of pairs made on the fly from another data set's digits (section 6), by name: the source
#: data set. They are not stored splits: training draws fresh pairs every epoch (:class:`PairBatches`).
PAIR_DATASETS: Dict[str, str] = {"multimnist": "mnist"}


def load_split(
    dataset: str,
    split: str,
    *,
    root: Optional[PathLike] = None,
    subset: Optional[bool] = None,
    download: bool = True,
    verbose: bool = True,
) -> ImageSplit:
    """Load ``split`` (e.g. ``"train"`` or ``"test"``) of the registered data set ``dataset``.

    The keyword arguments mean what they mean for :func:`load_mnist`: ``root`` the data folder
    (default ``$CAPSEDU_DATA``, else ``~/.cache/capsedu``), ``subset`` whether to use a shipped
    subset (``None``: only when the full data cannot be had; only MNIST ships one, the others
    refuse ``subset=True``), ``download`` whether missing files may be fetched, ``verbose``
    whether to say so on stderr when falling back or downloading.
    """
    loader = DATASETS.get(dataset)
    if dataset in PAIR_DATASETS:
        raise ValueError(f"{dataset} is made of pairs on the fly, not stored: load its digits with "
                         f"load_split({PAIR_DATASETS[dataset]!r}, ...) and pair them with make_multimnist or PairBatches")
    if loader is None:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(sorted(DATASETS))}")
    out = loader(split, root=root, download=download, subset=subset, verbose=verbose)
    if len(out) == 0:  # e.g. a header-only file: training on it would "succeed" with a loss of 0
        raise DataError(f"the {dataset} {split} split in {out.origin} holds no examples")
    return out
