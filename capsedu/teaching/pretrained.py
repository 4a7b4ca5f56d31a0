"""Pretrained weights shipped with the package, so chapters can show a trained CapsNet on a laptop.

``capsedu/assets/capsnet_small_mnist.pt`` holds the small-preset CapsNet trained by the README's
default command (``capsedu train``, one epoch, seed 0) and exported with
``capsedu export-pretrained runs/capsnet/last.pt``; weights are stored in float16 to keep the
package small and are loaded back as float32. The file also records the run's history.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Union

import torch

from ..checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint

__all__ = ["PRETRAINED_PATH", "load_pretrained", "pretrained_info", "export_pretrained"]

PRETRAINED_PATH = Path(__file__).resolve().parent.parent / "assets" / "capsnet_small_mnist.pt"


def export_pretrained(checkpoint: Union[str, os.PathLike], out: Union[str, os.PathLike] = PRETRAINED_PATH) -> Path:
    """Strip a training checkpoint to its weights (float16), config and history."""
    state = load_checkpoint(checkpoint)
    weights = {k: (v.half() if v.is_floating_point() else v) for k, v in state["model_state"].items()}
    record = {
        "model_class": state["model_class"], "model_config": state["model_config"], "model_state": weights,
        "history": state.get("history", []), "train_config": state.get("train_config", {}),
        "data_source": state.get("data_source", "unknown"),
    }
    return save_checkpoint(record, out)


def load_pretrained(device: Union[str, torch.device] = "cpu", path: Union[str, os.PathLike] = PRETRAINED_PATH):
    """The shipped small CapsNet, float32, in eval mode."""
    if not Path(path).is_file():
        raise CheckpointError(f"pretrained weights not found at {path}; "
                              "recreate them with `capsedu train` then `capsedu export-pretrained runs/capsnet/last.pt`")
    model, _ = load_model(path, map_location=device)
    return model.float().eval()


def pretrained_info(path: Union[str, os.PathLike] = PRETRAINED_PATH) -> Dict[str, Any]:
    """History and training recipe of the shipped weights (for quoting their accuracy honestly)."""
    state = load_checkpoint(path)
    return {"history": state.get("history", []), "train_config": state.get("train_config", {}),
            "data_source": state.get("data_source", "unknown"), "model_config": state["model_config"]}
