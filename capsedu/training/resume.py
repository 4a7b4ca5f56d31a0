"""Resuming a run: reading a checkpoint that can be continued, and deciding which changed settings a
resumed run may take (:data:`~capsedu.training.config.RESUME_ADJUSTABLE`) and which it must refuse."""
from __future__ import annotations

import hashlib
import os
from dataclasses import fields
from typing import Any, Dict, List, Tuple

import torch

from .checkpoint import CheckpointError, load_checkpoint
from .config import RESUME_ADJUSTABLE, TrainConfig, _flag

__all__ = ["read_resumable", "resume_differences", "data_fingerprint", "describe_data"]

_RESUME_KEYS = ("train_config", "optimizer_state", "scheduler_state", "epoch", "step_in_epoch", "history",
                "generator_state", "torch_rng_state")


def read_resumable(path: os.PathLike) -> Tuple[Dict[str, Any], TrainConfig]:
    """``(checkpoint dict, its TrainConfig)`` of a checkpoint a run can continue from.

    Raises:
        CheckpointError: the file holds weights only, lacks part of a run's state, or holds settings
            this version does not know or accept.
    """
    state = load_checkpoint(path)
    if "train_config" not in state or "optimizer_state" not in state:
        raise CheckpointError(f"{path} holds weights only, not a resumable training run")
    missing = [k for k in _RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} cannot be resumed: it lacks {missing}")
    saved = state["train_config"]
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise CheckpointError(f"checkpoint {path} has unknown training settings {unknown} "
                              f"(written by another version of capsedu?)")
    try:
        config = TrainConfig.from_dict(saved).validate()
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path} holds an invalid training setting: {exc}") from None
    return state, config


def _effective(config: TrainConfig, name: str) -> Any:
    """The setting ``name`` of ``config`` with ``"auto"`` replaced by what it means for the data set."""
    from ..data import recipe_for

    if name == "preset":
        return config.resolved_preset()
    if name == "routing":
        return config.resolved_routing()
    if name == "augment" and config.augment == "auto":
        return recipe_for(config.dataset).augment
    return getattr(config, name)


def _shown(config: TrainConfig, name: str) -> str:
    """The setting as a message shows it: ``routing="auto"`` with the procedure it stands for."""
    value = getattr(config, name)
    return f"{value!r} (= {config.resolved_routing()!r})" if name == "routing" and value == "auto" else repr(value)


def resume_differences(saved: TrainConfig, requested: TrainConfig) -> Tuple[List[str], List[str]]:
    """``(refused, honoured)``: one line per setting where ``requested`` differs from the checkpoint's.

    ``"auto"`` equals what it stands for (``preset="auto"`` and ``"small"`` train the same MNIST model;
    ``routing="auto"`` and ``"dynamic"`` the same CapsNet).
    """
    refused, honoured = [], []
    for f in fields(TrainConfig):
        old, new = getattr(saved, f.name), getattr(requested, f.name)
        if old == new or _effective(saved, f.name) == _effective(requested, f.name):
            continue
        line = f"{_flag(f.name)} {_shown(requested, f.name)} (checkpoint: {_shown(saved, f.name)})"
        (honoured if f.name in RESUME_ADJUSTABLE else refused).append(line)
    return refused, honoured


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor, dataset: str, source: str) -> Dict[str, Any]:
    """What a run trained on: the data set, where it came from, how many examples and a SHA-256 of them."""
    h = hashlib.sha256()
    for t in (images, labels):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {"dataset": dataset, "source": source, "examples": int(labels.shape[0]), "sha256": h.hexdigest()[:16]}


def describe_data(fp: Dict[str, Any]) -> str:
    """A :func:`data_fingerprint` in words, for messages."""
    return (f"{fp.get('source', '?')} {fp.get('dataset', '?')} ({fp.get('examples', '?')} training examples, "
            f"sha256 {fp.get('sha256', '?')})")
