"""Exporting a trained model: a training checkpoint stripped to float16 weights, with a JSON record of how
it was trained and what the exported weights measure (``capsedu export-pretrained``).

The record names the data a number was measured on by its identity (data set, split, full data or the
shipped subset, SHA-256 of the images and labels), never by where the files lay on the exporting machine,
and carries the SHA-256 of the exported tensors, which :func:`check_export` compares with the weights.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

from .._io import atomic_write
from .checkpoint import CHECKSUM_KEY, CheckpointError, load_checkpoint, load_model, save_checkpoint

__all__ = ["export_model", "measure_export", "export_record", "check_export", "record_path", "ASSETS",
           "PACKAGED_MODEL"]

PathLike = Union[str, os.PathLike]

#: The package's shipped files: models with their records, and the MNIST subset
ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: The small MNIST CapsNet the chapters load (``capsedu export-pretrained --into-package`` replaces it)
PACKAGED_MODEL = ASSETS / "capsnet_small_mnist.pt"


def record_path(weights: PathLike) -> Path:
    """The JSON record beside exported weights: ``name.pt`` -> ``name.json``."""
    return Path(weights).with_suffix(".json")


def measure_export(path: PathLike, root: Optional[str] = None, batch_size: int = 500,
                   splits: Sequence[str] = ("full", "subset")) -> Dict[str, Any]:
    """Test accuracy of exported weights on the full test set (when it can be had) and on the shipped
    subset's: ``{"full": {...} or None, "subset": {...} or None}``, tested as the run that trained them
    tested itself (e.g. centred on a 40x40 canvas; MultiMNIST: its fixed test pairs). Each entry holds
    ``examples``, ``accuracy`` and ``data``, the identity of the test split. ``splits`` chooses which to
    measure. Data sets without a shipped subset give ``None`` for it."""
    from ..data import DataError
    from .evaluation import checkpoint_test_batches
    from .loop import evaluate
    from .resume import data_fingerprint

    model, state = load_model(path)
    model = model.float()
    train_config = state.get("train_config", {})
    out: Dict[str, Any] = {}
    for name, subset in (("full", False), ("subset", True)):
        if name not in splits:
            continue
        try:
            batches, objective, split, _ = checkpoint_test_batches(train_config, root=root, subset=subset,
                                                                   batch_size=batch_size, download=False)
        except (DataError, ValueError):  # no full copy here, or no subset shipped for this data set
            out[name] = None
            continue
        metrics = evaluate(model, batches, objective)
        identity = {"split": "test", **data_fingerprint(split.images, split.labels, split.name, split.source)}
        out[name] = {"examples": metrics["examples"], "accuracy": metrics["accuracy"], "data": identity}
    return out


def export_model(checkpoint: PathLike, out: PathLike, command: str = "", root: Optional[str] = None) -> Path:
    """Strip a training checkpoint (or an earlier export) to its weights (float16), config and history,
    measure the exported weights (:func:`measure_export`) and write the record beside them
    (:func:`record_path`).

    Args:
        checkpoint: what to export.
        out: the ``.pt`` file to write (there is no default: the package's own files are replaced only when
            named).
        command: the command that trained the checkpoint, for the record.
        root: the data folder to measure on (as ``--data``).

    Raises:
        ValueError: ``out`` is a directory or does not end in ``.pt``.
        CheckpointError: the checkpoint cannot be read.
    """
    out = Path(out)
    if out.is_dir() or out.suffix != ".pt":
        raise ValueError(f"the export must be a .pt file (its record goes beside it as .json), got {out}"
                         + (", a directory" if out.is_dir() else ""))
    state = load_checkpoint(checkpoint)
    weights = {k: (v.half() if v.is_floating_point() else v) for k, v in state["model_state"].items()}
    history = state.get("history", [])
    exported = {
        "model_class": state["model_class"], "model_config": state["model_config"], "model_state": weights,
        "history": history, "train_config": state.get("train_config", {}),
        "data_source": state.get("data_source", "unknown"), "data": state.get("data"),
    }
    path = save_checkpoint(exported, out)
    record = {
        "weights": path.name, "weights_sha256": load_checkpoint(path)[CHECKSUM_KEY], "dtype": "float16",
        "command": command, "train_config": exported["train_config"],
        "data_source": exported["data_source"], "data": exported["data"], "epochs": len(history),
        "train_seconds": round(sum(h.get("seconds", 0.0) for h in history), 1), "history": history,
        "torch": torch.__version__, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "test_accuracy_float32_last_epoch": history[-1]["test_accuracy"] if history else None,
        "test_accuracy_shipped": measure_export(path, root=root),
    }
    text = (json.dumps(record, indent=1) + "\n").encode()
    atomic_write(record_path(path), lambda f: f.write(text))
    return path


def export_record(weights: PathLike) -> Dict[str, Any]:
    """The JSON record beside exported weights (how they were trained, their measured accuracy)."""
    path = record_path(weights)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"the record of the exported weights {path} is missing or unreadable ({exc})") from exc


def check_export(weights: PathLike, state: Dict[str, Any]) -> None:
    """Refuse exported weights that are not the ones their record describes: the record's ``weights_sha256``
    must equal the SHA-256 the loaded checkpoint ``state`` carries (a record without it checks nothing)."""
    expected = export_record(weights).get("weights_sha256") if record_path(weights).is_file() else None
    if expected is not None and state.get(CHECKSUM_KEY) != expected:
        raise CheckpointError(f"{weights} is not the model its record {record_path(weights).name} describes: the "
                              f"weights' SHA-256 differs from the recorded one (replaced or altered)")
