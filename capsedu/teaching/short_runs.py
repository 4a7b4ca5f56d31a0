"""Short comparison runs for chapters 5 and 6, on the library's one training loop.

A few hundred Adam steps of a small CapsNet show how a choice of loss changes the early learning
curves. :func:`train_steps` runs :func:`capsedu.train.train_epoch` over as many passes of the
batches as the step count needs and records every step's loss, batch accuracy and loss terms;
held-out accuracy comes from :func:`capsedu.train.evaluate`.
"""
from __future__ import annotations

import itertools
from typing import Dict, Iterable, Iterator, List, Tuple

import torch

from ..checks import check_int
from ..objectives import Objective
from ..train import StepRecord, train_epoch

__all__ = ["train_steps"]

Batch = Tuple[torch.Tensor, torch.Tensor]


def _cycle(batches: Iterable[Batch]) -> Iterator[Batch]:
    """The batches again and again (a fresh pass each time: a shuffling batcher reshuffles)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("train_steps got no batches")


def train_steps(model: torch.nn.Module, batches: Iterable[Batch], objective: Objective, steps: int,
                lr: float = 1e-3) -> Dict[str, List[float]]:
    """``steps`` Adam updates at a constant ``lr``, cycling over ``batches``.

    Returns ``{"loss": [...], "accuracy": [...]}`` with one entry per step (accuracy on that step's
    batch), plus one list per loss term of the objective (e.g. ``"margin"``, ``"reconstruction"``).
    """
    check_int(steps, "steps", low=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: Dict[str, List[float]] = {"loss": [], "accuracy": []}

    def record(step: StepRecord) -> None:
        history["loss"].append(float(step.loss))
        history["accuracy"].append(int(step.correct) / max(step.examples, 1))
        for name, value in step.parts.items():
            history.setdefault(name, []).append(float(value))

    train_epoch(model, itertools.islice(_cycle(batches), steps), optimizer, objective=objective,
                progress=False, on_step=record)
    return history
