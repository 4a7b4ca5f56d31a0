"""The one training loop (:func:`train_epoch`) and the one evaluator (:func:`evaluate`).

Both work on any model, any objective (:mod:`capsedu.training.objectives`) and any iterable of
``(images, targets)`` batches; the book's short comparison runs use them, and :func:`capsedu.training.fit`
runs them epoch after epoch. The heart of :func:`train_epoch`, without the bookkeeping::

    for images, targets in batches:
        result = objective(model, images, targets)   # forward pass and loss (e.g. Eq. 4 + reconstruction)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()                             # Adam
        scheduler.step()                             # e.g. lr * 0.96 ** (step / 2000)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .distributed import DistContext, unwrap
from .objectives import Objective, default_objective
from .speed import autocast

__all__ = ["train_epoch", "evaluate", "EpochTotals", "StepRecord", "Batch"]

#: a batch: images (a tensor, or :class:`capsedu.data.Pairs`) and their targets
Batch = Tuple[Any, torch.Tensor]


def _host_sync_every(device: Optional[torch.device]) -> int:
    # Reading a number back from a GPU makes the host wait for every queued kernel, so on an
    # accelerator the running totals stay on the device and are read every few steps only.
    return 1 if device is None or device.type == "cpu" else 25


@dataclass
class EpochTotals:
    """Running sums of one epoch's training metrics; saved in mid-epoch checkpoints so that a resumed
    epoch reports the statistics of all its batches, not only of those after the resume.

    On an accelerator the newest sums wait on the device (:meth:`add`) and reach the host fields in
    :meth:`flush`, which the loop calls every few steps and :meth:`state` calls before a checkpoint.
    """

    loss_sum: float = 0.0    # sum over examples of the batch-mean loss x batch size
    correct: int = 0
    examples: int = 0
    steps: int = 0
    seconds: float = 0.0
    _pending: Optional[Tuple[torch.Tensor, torch.Tensor]] = field(default=None, repr=False, compare=False)

    _SAVED = ("loss_sum", "correct", "examples", "steps", "seconds")

    def add(self, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        """Add a batch: its mean ``loss`` and ``correct`` count (0-dim tensors, left on their device)."""
        if self._pending is None:
            self._pending = (torch.zeros((), dtype=torch.float64, device=loss.device),
                             torch.zeros((), dtype=torch.long, device=loss.device))
        self._pending[0].add_(loss.detach().double() * n)
        self._pending[1].add_(correct)
        self.examples += n

    def flush(self) -> None:
        """Move the device-side sums to the host fields (waits for the device)."""
        if self._pending is not None:
            self.loss_sum += float(self._pending[0])
            self.correct += int(self._pending[1])
            self._pending[0].zero_()
            self._pending[1].zero_()

    def state(self) -> Dict[str, Any]:
        self.flush()
        return {name: getattr(self, name) for name in self._SAVED}

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "EpochTotals":
        return cls(**{name: state[name] for name in cls._SAVED})

    def metrics(self) -> Dict[str, float]:
        n = max(self.examples, 1)
        return {"loss": self.loss_sum / n, "accuracy": self.correct / n, "examples": self.examples}


class StepRecord(NamedTuple):
    """What ``on_step`` receives after every optimizer step (tensors detached, still on the device)."""

    step: int                          # index within this call's batches
    loss: torch.Tensor                 # 0-dim
    correct: torch.Tensor              # 0-dim int64
    examples: int
    parts: Dict[str, torch.Tensor]     # the objective's named loss terms


def train_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[Any] = None,
    objective: Optional[Objective] = None,
    *,
    progress: bool = True,
    description: str = "train",
    total: Optional[int] = None,
    on_step: Optional[Callable[[StepRecord], None]] = None,
    amp: bool = False,
    dist: Optional[DistContext] = None,
    totals: Optional[EpochTotals] = None,
    safe_point: Optional[Callable[[], None]] = None,
) -> Dict[str, float]:
    """One pass over ``batches``; returns mean loss and accuracy on the (augmented) training batches.

    Args:
        objective: what to minimise (default: :func:`capsedu.training.objectives.default_objective`).
        on_step: called after every optimizer step with a :class:`StepRecord`.
        amp: forward and loss under bf16 autocast (see :func:`capsedu.training.speed.autocast`).
        dist: in a data-parallel run (``model`` wrapped in DDP) each rank trains on its slice of every
            batch and the metrics are summed over the ranks (:mod:`capsedu.training.distributed`).
        totals: running sums to continue (a resumed epoch) and to update in place, so a caller that
            catches an interruption knows the statistics so far.
        safe_point: called after every complete step (after ``on_step``); may raise to stop there.

    A non-finite loss raises :class:`FloatingPointError` before it reaches the weights on the CPU, and
    within 25 steps on a GPU (where totals are read back only that often, so the GPU never waits).
    """
    objective = objective or default_objective(model)
    totals = totals if totals is not None else EpochTotals()
    model.train()
    checked_up_to = 0
    every = 1
    device: Optional[torch.device] = None
    bar = tqdm(batches, desc=description, total=total, disable=not progress, leave=False, dynamic_ncols=True)
    last = time.perf_counter()

    def sync(step: int) -> None:
        nonlocal checked_up_to
        totals.flush()
        if not math.isfinite(totals.loss_sum):
            where = f"step {step}" if step == checked_up_to else f"one of steps {checked_up_to}-{step}"
            raise FloatingPointError(f"training loss became {totals.loss_sum} at {where}; lower the learning rate")
        checked_up_to = step + 1

    step = -1
    for step, (images, targets) in enumerate(bar):
        scale = 1.0
        if dist is not None and dist.enabled:
            images, targets, scale = dist.shard(images, targets)
        if device is None:
            device = images.device
            every = _host_sync_every(device)
        with autocast(device, enabled=amp):
            result = objective(model, images, targets)
        n = targets.shape[0] if scale != 0.0 else 0
        loss = result.loss
        if n:
            totals.add(loss, result.correct, n)
        if (step + 1) % every == 0:  # before backward: on the CPU a bad loss never reaches the weights
            sync(step)
            if progress and totals.examples and (every > 1 or step % 10 == 0):
                m = totals.metrics()
                bar.set_postfix(loss=f"{m['loss']:.4f}", acc=f"{m['accuracy']:.4f}")
        optimizer.zero_grad(set_to_none=True)
        (loss * scale if scale != 1.0 else loss).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        totals.steps += 1
        now = time.perf_counter()
        totals.seconds += now - last
        last = now
        if on_step is not None:
            on_step(StepRecord(step, loss.detach(), result.correct, n, result.parts))
        if safe_point is not None:
            safe_point()
    if device is None and totals.steps == 0:  # no step now and none before a resume: refused, as by evaluate()
        raise ValueError("train_epoch() got no batches")
    if device is not None and checked_up_to <= step:
        sync(step)
    metrics = totals.metrics()
    if dist is not None and dist.enabled:
        device = device or torch.device("cpu")
        loss_total, n_correct, seen = dist.all_sum([totals.loss_sum, totals.correct, totals.examples], device)
        metrics = {"loss": loss_total / max(seen, 1), "accuracy": n_correct / max(seen, 1), "examples": int(seen)}
    return metrics


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    objective: Optional[Objective] = None,
    *,
    progress: bool = False,
    description: str = "test",
    amp: bool = False,
    dist: Optional[DistContext] = None,
    safe_point: Optional[Callable[[], None]] = None,
) -> Dict[str, float]:
    """Accuracy, error and mean loss over ``batches`` in eval mode (no dropout; a CapsNet's decoder
    reconstructs its longest capsule, as at test time). ``safe_point`` is called between batches."""
    model = unwrap(model)
    objective = objective or default_objective(model)
    was_training = model.training
    model.eval()
    loss_sum: Any = 0.0
    correct: Any = 0
    seen = 0
    device = None
    try:
        for images, targets in tqdm(batches, desc=description, disable=not progress, leave=False, dynamic_ncols=True):
            if dist is not None and dist.enabled:
                images, targets, scale = dist.shard(images, targets)
                if scale == 0.0:
                    continue
            device = images.device
            with autocast(device, enabled=amp):
                result = objective(model, images, targets)
            loss_sum = loss_sum + result.loss.double() * targets.shape[0]  # stays on the device until the end
            correct = correct + result.correct
            seen += targets.shape[0]
            if safe_point is not None:
                safe_point()
    finally:
        model.train(was_training)
    loss_total, n_correct = float(loss_sum), int(correct)
    if dist is not None and dist.enabled:
        loss_total, n_correct, seen = dist.all_sum([loss_total, n_correct, seen], device or torch.device("cpu"))
    if seen == 0:
        raise ValueError("evaluate() got no batches")
    return {"loss": loss_total / seen, "accuracy": n_correct / seen, "error": 1.0 - n_correct / seen,
            "examples": int(seen)}

