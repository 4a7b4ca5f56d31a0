"""Pretrained weights shipped with the package, so chapters can show a trained CapsNet on a laptop.

``capsedu/assets/capsnet_small_mnist.pt`` holds a small-preset CapsNet; the JSON file beside it
(:data:`PRETRAINED_RECORD`) says how it was trained (the command, its settings, per-epoch history,
wall time, machine, commit) and its test accuracy with the shipped float16 weights, measured when it
was exported with ``capsedu export-pretrained CHECKPOINT``. Weights are stored in float16 to keep the
package small and are loaded back as float32.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

from .._io import atomic_write
from ..checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint

__all__ = ["ASSETS", "PRETRAINED_PATH", "PRETRAINED_RECORD", "load_pretrained", "pretrained_info", "pretrained_record",
           "export_pretrained", "measure_pretrained"]

#: The package's shipped models: this chapter helper's small MNIST CapsNet, and the experiments chapter's
#: (``affine_*.pt``, ``multimnist_*.pt``), each with its JSON record beside it.
ASSETS = Path(__file__).resolve().parent.parent / "assets"
PRETRAINED_PATH = ASSETS / "capsnet_small_mnist.pt"
PRETRAINED_RECORD = PRETRAINED_PATH.with_suffix(".json")


def measure_pretrained(path: Union[str, os.PathLike] = PRETRAINED_PATH, root: Optional[str] = None,
                       batch_size: int = 500, splits: Sequence[str] = ("full", "subset")) -> Dict[str, Any]:
    """Test accuracy of exported weights on the full MNIST test set (when it can be had) and on the
    shipped subset's test digits: ``{"full": {...} or None, "subset": {...}}``, tested as the run that
    trained them tested itself (e.g. centred on a 40x40 canvas; MultiMNIST: its fixed test pairs).
    ``splits`` chooses which of the two to measure."""
    from ..data import DataError
    from ..train import checkpoint_test_batches, evaluate

    model = load_pretrained(path=path)
    train_config = load_checkpoint(path).get("train_config", {})
    out: Dict[str, Any] = {}
    for name, subset in (("full", False), ("subset", True)):
        if name not in splits:
            continue
        try:
            batches, objective, split, _ = checkpoint_test_batches(train_config, root=root, subset=subset,
                                                                   batch_size=batch_size, download=False)
        except DataError:
            out[name] = None
            continue
        metrics = evaluate(model, batches, objective)
        out[name] = {"examples": metrics["examples"], "accuracy": metrics["accuracy"], "origin": split.origin}
    return out


def export_pretrained(checkpoint: Union[str, os.PathLike], out: Union[str, os.PathLike] = PRETRAINED_PATH,
                      command: str = "", root: Optional[str] = None) -> Path:
    """Strip a training checkpoint to its weights (float16), config and history, then measure the exported
    weights (:func:`measure_pretrained`) and write the record JSON beside them (``out`` with ``.json``).

    ``command``: the command that trained the checkpoint, for the record.
    """
    state = load_checkpoint(checkpoint)
    weights = {k: (v.half() if v.is_floating_point() else v) for k, v in state["model_state"].items()}
    history = state.get("history", [])
    record = {
        "model_class": state["model_class"], "model_config": state["model_config"], "model_state": weights,
        "history": history, "train_config": state.get("train_config", {}),
        "data_source": state.get("data_source", "unknown"),
    }
    path = save_checkpoint(record, out)
    info = {
        "weights": path.name, "dtype": "float16", "command": command, "train_config": record["train_config"],
        "data_source": record["data_source"], "data": state.get("data"), "epochs": len(history),
        "train_seconds": round(sum(h.get("seconds", 0.0) for h in history), 1), "history": history,
        "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "test_accuracy_float32_last_epoch": history[-1]["test_accuracy"] if history else None,
        "test_accuracy_shipped": measure_pretrained(path, root=root),
    }
    atomic_write(path.with_suffix(".json"), lambda f: f.write((json.dumps(info, indent=1) + "\n").encode()))
    return path


def pretrained_record(path: Union[str, os.PathLike] = PRETRAINED_RECORD) -> Dict[str, Any]:
    """The JSON record of the shipped weights (how they were trained, their measured accuracy)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"the record of the pretrained weights {path} is missing or unreadable ({exc})") from exc


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
