"""Pretrained weights shipped with the package, so chapters can show a trained CapsNet on a laptop.

``capsedu/assets/capsnet_small_mnist.pt`` holds a small-preset CapsNet; the JSON file beside it
(:data:`PRETRAINED_RECORD`) says how it was trained (the command, its settings, per-epoch history,
wall time, machine) and its test accuracy with the shipped float16 weights, measured when it was
exported (:func:`capsedu.training.export.export_model`, ``capsedu export-pretrained``). Weights are
stored in float16 to keep the package small and are loaded back as float32, after checking that they
are the weights their record describes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Union

import torch

from ..training.checkpoint import CheckpointError, load_checkpoint, load_model
from ..training.export import ASSETS, PACKAGED_MODEL, check_export, export_record

__all__ = ["ASSETS", "PRETRAINED_PATH", "PRETRAINED_RECORD", "load_pretrained", "pretrained_info", "pretrained_record"]

#: The package's shipped models (in :data:`ASSETS`): this chapter helper's small MNIST CapsNet, and the
#: experiments chapter's (``affine_*.pt``, ``multimnist_*.pt``), each with its JSON record beside it.
PRETRAINED_PATH = PACKAGED_MODEL
PRETRAINED_RECORD = PRETRAINED_PATH.with_suffix(".json")


def pretrained_record(path: Union[str, os.PathLike] = PRETRAINED_RECORD) -> Dict[str, Any]:
    """The JSON record of shipped weights (how they were trained, their measured accuracy)."""
    return export_record(Path(path).with_suffix(".pt"))


def load_pretrained(device: Union[str, torch.device] = "cpu", path: Union[str, os.PathLike] = PRETRAINED_PATH):
    """The shipped small CapsNet (or the shipped model at ``path``), float32, in eval mode.

    Raises:
        CheckpointError: the weights are missing, damaged, or not the ones their record describes.
    """
    if not Path(path).is_file():
        raise CheckpointError(f"pretrained weights not found at {path}; recreate them with `capsedu train` then "
                              f"`capsedu export-pretrained runs/capsnet/last.pt --out {path}`")
    model, state = load_model(path, map_location=device)
    check_export(path, state)
    return model.float().eval()


def pretrained_info(path: Union[str, os.PathLike] = PRETRAINED_PATH) -> Dict[str, Any]:
    """History and training recipe of the shipped weights (for quoting their accuracy honestly)."""
    state = load_checkpoint(path)
    return {"history": state.get("history", []), "train_config": state.get("train_config", {}),
            "data_source": state.get("data_source", "unknown"), "model_config": state["model_config"]}
