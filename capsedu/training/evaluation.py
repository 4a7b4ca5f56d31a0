"""The test set of a checkpoint's run, as that run tested itself: used by ``capsedu evaluate`` and by
:mod:`capsedu.training.export` to measure exported weights."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Dict, NamedTuple, Optional, Tuple

from .config import TrainConfig
from .objectives import Objective

__all__ = ["CheckpointTest", "checkpoint_test_batches", "checkpoint_test_transform"]


def _known_settings(train_config: Dict[str, Any]) -> TrainConfig:
    """``train_config`` as a :class:`TrainConfig`, ignoring settings this version does not know, so any
    checkpoint can be evaluated (older ones, which predate per-data-set recipes, get MNIST's)."""
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig.from_dict({k: v for k, v in train_config.items() if k in known})


def checkpoint_test_transform(train_config: Dict[str, Any]) -> Optional[Any]:
    """The test-time transform of the run a checkpoint's ``train_config`` describes (``None``: whole images)."""
    return _known_settings(train_config).transforms()[1]


class CheckpointTest(NamedTuple):
    """What :func:`checkpoint_test_batches` returns."""

    batches: Any                    # Batches or PairBatches
    objective: Optional[Objective]  # the run's objective for pair data, else None (the model's default)
    split: Any                      # the ImageSplit of test images (digits, for pairs)
    shape: Tuple[int, int, int]     # (C, H, W) the model receives


def checkpoint_test_batches(train_config: Dict[str, Any], root: Optional[str] = None, subset: Optional[bool] = None,
                            batch_size: int = 500, device: Any = "cpu", limit: Optional[int] = None,
                            download: bool = True) -> CheckpointTest:
    """The test set of the run a checkpoint's ``train_config`` describes, as that run tested itself: the data
    set's test split after its test transform, or for MultiMNIST the fixed test pairs scored with the run's
    pair objective."""
    from ..data import PAIR_DATASETS, Batches, load_split, pair_test_batches

    dataset = train_config.get("dataset", "mnist")
    if dataset in PAIR_DATASETS:
        split = load_split(PAIR_DATASETS[dataset], "test", root=root, subset=subset, download=download)
        batches = pair_test_batches(split, batch_size, device=device, limit=limit)
        return CheckpointTest(batches, _known_settings(train_config).build_objective(), split,
                              tuple(batches.image_shape))
    transform = checkpoint_test_transform(train_config)  # e.g. CIFAR-10's central 24x24 crop
    split = load_split(dataset, "test", root=root, subset=subset, download=download)
    shape = transform.output_shape(*split.image_shape) if transform is not None else tuple(split.image_shape)
    return CheckpointTest(Batches(split, batch_size, augment=transform, device=device, limit=limit), None, split,
                          tuple(shape))
