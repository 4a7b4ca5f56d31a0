"""The optimizer and its learning-rate schedules: Adam with the paper's exponential decay, or one cycle."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch
import torch.nn as nn

from ..checks import check_int, check_number

__all__ = ["SCHEDULES", "one_cycle", "make_optimizer", "load_optimizer_state"]

#: learning-rate schedules: the paper's exponential decay, or one cycle (warm-up, then cosine decay to ~0)
SCHEDULES = ("exponential", "one-cycle")


def one_cycle(total_steps: int, warmup_fraction: float = 0.1, start: float = 0.1, end: float = 0.01):
    """The one-cycle factor of the peak learning rate at optimizer step ``t`` (Smith & Topin, 2019, in the common
    warm-up plus cosine form): linear from ``start`` to 1 over the first ``warmup_fraction`` of the run, then a
    half cosine from 1 down to ``end`` at ``total_steps``. A plain function, rebuilt from the run's settings, so a
    checkpoint stores only the step count."""
    warmup = max(1, round(warmup_fraction * total_steps))

    def factor(t: int) -> float:
        if t < warmup:
            return start + (1.0 - start) * t / warmup
        progress = min(1.0, (t - warmup) / max(1, total_steps - warmup))
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def make_optimizer(model: nn.Module, lr: float = 1e-3, lr_decay: float = 0.96, decay_steps: int = 2000, *,
                   schedule: str = "exponential", total_steps: Optional[int] = None):
    """Adam and a learning-rate schedule stepped per batch.

    ``"exponential"`` (the paper's): ``lr * lr_decay ** (step / decay_steps)``; ``ExponentialLR`` with
    ``gamma = lr_decay ** (1 / decay_steps)`` is that schedule. ``"one-cycle"``: ``lr`` is the peak of
    :func:`one_cycle` over ``total_steps`` (``lr_decay`` and ``decay_steps`` unused). Both schedulers' states
    are plain numbers, so they round-trip through a ``weights_only`` checkpoint.

    Raises:
        ValueError: naming a setting that is not a finite positive number (``lr_decay`` in (0, 1],
            ``decay_steps`` an integer >= 1).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    check_number(lr, "lr", low=0.0, low_open=True)
    check_number(lr_decay, "lr_decay", low=0.0, high=1.0, low_open=True)
    check_int(decay_steps, "decay_steps", low=1)
    params = list(model.parameters())
    # on a GPU the fused kernel updates every parameter in one launch instead of a dozen per tensor
    fused = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
    optimizer = torch.optim.Adam(params, lr=lr, **({"fused": True} if fused else {}))
    if schedule == "one-cycle":
        check_int(total_steps, "the one-cycle schedule's total_steps", low=1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(total_steps))
    else:
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=lr_decay ** (1.0 / decay_steps))
    return optimizer, scheduler


_IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping this optimizer's kernel choices.

    A checkpoint written on a GPU records ``fused=True``; restored as is on a CPU, torch < 2.4
    (no fused CPU Adam) fails at the next step. Flags that pick an implementation rather than the
    maths therefore stay as they are here.
    """
    keep = [{k: g[k] for k in _IMPLEMENTATION_FLAGS if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, keep):
        for k in _IMPLEMENTATION_FLAGS:
            if k in flags:
                group[k] = flags[k]
            else:
                group.pop(k, None)

