"""Checkpoints: written atomically, read with ``weights_only=True``, checked against the SHA-256 of their
tensors, with errors that say what is wrong."""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple, Union

import torch
import torch.nn as nn

from .._io import atomic_write

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_state", "load_model", "state_checksum",
           "FORMAT", "CHECKSUM_KEY"]

FORMAT = "capsedu-checkpoint-v1"
#: where a checkpoint keeps the SHA-256 of its tensors (checkpoints written before it existed have none)
CHECKSUM_KEY = "sha256"
PathLike = Union[str, os.PathLike]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, not a capsedu checkpoint, or does not fit the model."""


def _tensors(value: Any, where: str) -> Iterator[Tuple[str, torch.Tensor]]:
    """Every tensor inside nested dicts, lists and tuples, with its path, in a fixed order."""
    if isinstance(value, torch.Tensor):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != CHECKSUM_KEY:
                yield from _tensors(item, f"{where}/{key}")
    elif isinstance(value, (list, tuple)):
        for k, item in enumerate(value):
            yield from _tensors(item, f"{where}/{k}")


def state_checksum(state: Dict[str, Any]) -> str:
    """SHA-256 of every tensor in ``state``: where it sits, its dtype, its shape and its bytes.

    The same on any device and memory layout, so a checkpoint saved on a GPU checks on the CPU.
    """
    h = hashlib.sha256()
    for where, tensor in _tensors(state, ""):
        h.update(f"{where}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        if flat.numel():
            h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(state: Dict[str, Any], path: PathLike) -> Path:
    """Write ``state`` to ``path`` atomically, with the SHA-256 of its tensors (:func:`state_checksum`).

    The bytes go to a temporary file in the same directory, are flushed to disk, and the file is
    then renamed over ``path``: a crash or Ctrl-C mid-write leaves the previous checkpoint intact.

    Raises:
        CheckpointError: the file could not be written (e.g. the disk is full), naming it.
    """
    state = {"format": FORMAT, **state}
    state[CHECKSUM_KEY] = state_checksum(state)
    try:
        return atomic_write(path, lambda f: torch.save(state, f))
    except (OSError, RuntimeError) as exc:  # torch reports a failed write (disk full) as a RuntimeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).strip().splitlines()[0]
        raise CheckpointError(f"could not write checkpoint {path}: {reason}") from exc


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code runs on load) and check its tensors
    against the SHA-256 it records (``state["sha256"]``; checkpoints older than the checksum have none)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a directory; name the file (e.g. {path / 'last.pt'})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch suggests weights_only=False here; capsedu never unpickles arbitrary objects
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt: it holds Python objects other "
                              f"than tensors and plain data, which capsedu never loads") from exc
    except Exception as exc:  # truncated zip, random bytes, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({type(exc).__name__}: {first})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a capsedu checkpoint (expected format {FORMAT!r})")
    recorded = state.get(CHECKSUM_KEY)
    if recorded is not None and recorded != state_checksum(state):
        raise CheckpointError(f"checkpoint {path} is corrupt: its tensors do not match the SHA-256 recorded when it "
                              f"was written (damaged or altered since)")
    for key in ("model_class", "model_config", "model_state"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}")
    return state


def load_state(model: nn.Module, state_dict: Dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``model.load_state_dict`` with a message that lists what does not fit."""
    bad = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise CheckpointError(f"{source} is corrupt: {bad[:5]} are not tensors")
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if wrong:
            parts.append("shape mismatch " + ", ".join(
                f"{k}: {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:5]))
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state_dict.items()})


def load_model(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Tuple[nn.Module, Dict[str, Any]]:
    """Rebuild the model stored in a checkpoint; returns ``(model in eval mode, checkpoint dict)``."""
    from ..models import build_model

    state = load_checkpoint(path, map_location)
    if not isinstance(state["model_config"], dict) or not isinstance(state["model_state"], dict):
        raise CheckpointError(f"checkpoint {path} is corrupt: model_config and model_state must be dictionaries")
    try:
        model = build_model(state["model_class"], state["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid model: {exc}") from exc
    load_state(model, state["model_state"], f"checkpoint {path}")
    return model.eval(), state
