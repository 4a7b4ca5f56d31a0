"""The training loop: Adam with the paper's exponential learning-rate decay, progress bars, per-epoch
history, atomic checkpoints, and resume that ends bit-identical to an uninterrupted run.

Two levels, one loop:

* :func:`train_epoch` / :func:`evaluate` work on any model, any objective (:mod:`capsedu.objectives`)
  and any iterable of ``(images, targets)`` batches; the book's short comparison runs use them.
* :func:`fit` runs a whole configured experiment (:class:`TrainConfig`): data, model, checkpoints in
  ``output/``, resume; ``capsedu train`` is a thin wrapper around it.

The heart of :func:`train_epoch`, without the bookkeeping::

    for images, targets in batches:
        result = objective(model, images, targets)   # forward pass and loss (e.g. Eq. 4 + reconstruction)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()                             # Adam
        scheduler.step()                             # lr * 0.96 ** (step / 2000)

Interruptions: Ctrl-C or SIGTERM is deferred to the end of the current step (or test batch), where
a checkpoint is written (:mod:`capsedu.interrupts`), so ``--resume`` continues exactly.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from ._io import atomic_write
from .checkpoint import CheckpointError, load_checkpoint, load_state, save_checkpoint
from .distributed import DistContext, unwrap
from .fast import autocast, cpu_bf16, optimize, resolve_amp
from .interrupts import DeferredInterrupt, SafeStop
from .models import BASELINE_PRESETS, MODELS, PRESETS, model_record
from .objectives import OBJECTIVES, PAIR_OBJECTIVES, Objective, default_objective, make_objective
from .routing import GRADIENT_MODES
from .run_directory import CHECKPOINT_NAME, HISTORY_NAME, RunDirectory, RunDirectoryError

__all__ = [
    "RECIPES", "SCHEDULES", "one_cycle", "TrainConfig", "FitResult", "fit", "train_epoch", "evaluate", "select_device", "make_optimizer",
    "load_optimizer_state", "EpochTotals", "StepRecord", "CHECKPOINT_NAME", "HISTORY_NAME",
    "RESUME_ADJUSTABLE", "model_input_shape", "checkpoint_test_transform",
]

Batch = Tuple[torch.Tensor, torch.Tensor]


def select_device(name: Any = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` as named."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {name!r} requested but MPS is not available on this machine")
    elif device.type != "cpu":
        raise ValueError(f"device type {device.type!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


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
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    params = list(model.parameters())
    # on a GPU the fused kernel updates every parameter in one launch instead of a dozen per tensor
    fused = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
    optimizer = torch.optim.Adam(params, lr=lr, **({"fused": True} if fused else {}))
    if schedule == "one-cycle":
        if not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1:
            raise ValueError(f"the one-cycle schedule needs total_steps >= 1, got {total_steps!r}")
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
        objective: what to minimise (default: :func:`capsedu.objectives.default_objective`).
        on_step: called after every optimizer step with a :class:`StepRecord`.
        amp: forward and loss under bf16 autocast (CUDA only; see :func:`capsedu.fast.autocast`).
        dist: in a data-parallel run (``model`` wrapped in DDP) each rank trains on its slice of every
            batch and the metrics are summed over the ranks (:mod:`capsedu.distributed`).
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


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints)."""

    model: str = "capsnet"               # a name in capsedu.models.MODELS: "capsnet" or "baseline"
    preset: str = "auto"                 # model size: "small" (CPU) or "paper" (CapsNet and baseline alike), a data
                                         # set's CapsNet ("cifar10", "smallnorb", "svhn"), or "auto": the data set's
                                         # (capsedu.data.recipes: "small" for MNIST; "small" for the baseline)
    dataset: str = "mnist"               # a name in capsedu.data.DATASETS, or "multimnist" (capsedu.data.PAIR_DATASETS:
                                         # fresh pairs of MNIST training digits every epoch, section 6)
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 0.96               # paper: lr * 0.96 ** (step / 2000)
    decay_steps: int = 2000
    schedule: str = "exponential"        # "exponential" (the paper's, above) or "one-cycle" (warm-up, cosine to ~0
                                         # over the run; lr is its peak); capsedu train's quick recipe uses one-cycle
    routing_iterations: int = 3
    routing_gradient: str = "all"
    reconstruction: bool = True          # CapsNet with the decoder
    loss: str = "auto"                   # "auto" (margin for a CapsNet, cross-entropy for the baseline; on pairs
                                         # pair-margin and pair-bce) or a name in capsedu.objectives.OBJECTIVES
    reconstruction_weight: float = 0.0005  # section 4.1; used by the margin loss when there is a decoder
    augment_shift: int = 2               # paper: random shifts of up to 2 pixels (for "shift" augmentation)
    augment: str = "auto"                # "auto" (the data set's recipe), "shift", "crop" or "none"
    crop_size: Optional[int] = None      # "crop": training crops and central test crop (None: the recipe's)
    canvas_size: Optional[int] = None    # "place": random position on this canvas, centred for testing
    seed: int = 0
    device: str = "auto"
    data: Optional[str] = None           # data root; None -> $CAPSEDU_DATA -> ~/.cache/capsedu
    subset: Optional[bool] = None        # True: shipped subset; None: full data, subset if unavailable
    train_limit: Optional[int] = None    # use only the first N training / test examples
    train_subset_seed: Optional[int] = None  # with train_limit: N class-balanced training examples drawn with
                                         # this seed instead of the first N (capsedu.data.subsets)
    train_repeat: int = 1                # one epoch passes over the training examples this many times (pairs:
                                         # an epoch is this many fresh pairs per training digit)
    test_limit: Optional[int] = None
    eval_batch_size: int = 500
    checkpoint_every: int = 0            # also checkpoint every N steps (0: at epoch ends only)
    output: str = "runs/capsnet"
    # speed options (capsedu.fast): True, False or "auto"
    compile: Any = "auto"                # torch.compile, eager fallback with a warning (auto: CUDA only)
    amp: Any = "auto"                    # bf16 autocast (auto: CUDA with bf16; routing stays float32)
    channels_last: Any = "auto"          # NHWC convolutions (auto: on)

    def validate(self) -> "TrainConfig":
        """Check every setting; one ``ValueError`` naming the first bad one."""
        from .data import AUGMENTATIONS, DATASETS, PAIR_DATASETS

        def choice(name: str, options) -> None:
            if getattr(self, name) not in options:
                raise ValueError(f"{_flag(name)} must be one of {sorted(options)}, got {getattr(self, name)!r}")

        choice("model", MODELS)
        choice("preset", ["auto", *PRESETS, *BASELINE_PRESETS])
        if self.model == "capsnet" and self.preset not in ("auto", *PRESETS):
            raise ValueError(f"--preset must be one of {sorted(PRESETS)} for a CapsNet, got {self.preset!r}")
        choice("dataset", [*DATASETS, *PAIR_DATASETS])
        choice("augment", AUGMENTATIONS)
        choice("routing_gradient", GRADIENT_MODES)
        choice("loss", ["auto", *OBJECTIVES])
        choice("schedule", SCHEDULES)
        if self.model == "baseline" and self.preset not in ("auto", *BASELINE_PRESETS):
            raise ValueError(f"--preset must be one of {sorted(BASELINE_PRESETS)} for the baseline, got {self.preset!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "decay_steps", "routing_iterations", "train_repeat"):
            _check_int(name, getattr(self, name), low=1)
        for name in ("augment_shift", "checkpoint_every"):
            _check_int(name, getattr(self, name), low=0)
        for name in ("train_limit", "test_limit", "crop_size", "canvas_size"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), low=1)
        _check_int("seed", self.seed, low=0, high=2 ** 63 - 1)
        if self.train_subset_seed is not None:
            _check_int("train_subset_seed", self.train_subset_seed, low=0, high=2 ** 63 - 1)
            if self.train_limit is None:
                raise ValueError(f"{_flag('train_subset_seed')} draws --train-limit examples: give --train-limit")
        for name in ("lr", "lr_decay", "reconstruction_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{_flag(name)} must be a finite number, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"{_flag('lr_decay')} must lie in (0, 1], got {self.lr_decay}")
        if self.reconstruction_weight < 0:
            raise ValueError(f"--reconstruction-weight must be >= 0, got {self.reconstruction_weight}")
        if self.model == "baseline" and self.loss == "margin":
            raise ValueError("the baseline CNN returns logits: train it with --loss cross-entropy (or auto)")
        self._validate_pairs(PAIR_DATASETS)
        for name in ("compile", "amp", "channels_last"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ValueError(f"{name} must be True, False or 'auto', got {getattr(self, name)!r}")
        for name in ("reconstruction",):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.subset not in (None, True, False):
            raise ValueError(f"subset must be None, True or False, got {self.subset!r}")
        self.transforms()  # e.g. --crop-size without cropping
        return self

    def _validate_pairs(self, pair_datasets) -> None:
        """Pair data sets (MultiMNIST) make their own 36x36 canvases and train with a pair objective only."""
        pair_loss = {model: loss for loss, model in PAIR_OBJECTIVES.items()}
        if self.dataset in pair_datasets:
            if self.augment not in ("auto", "none"):
                raise ValueError(f"--augment {self.augment} does not apply to {self.dataset}: its digits are shifted "
                                 f"by up to 4 pixels as the pairs are made; drop --augment")
            for name in ("crop_size", "canvas_size"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{_flag(name)} does not apply to {self.dataset}: its pairs come on their own "
                                     f"canvases; drop {_flag(name)}")
            if self.loss != "auto" and self.loss not in PAIR_OBJECTIVES:
                raise ValueError(f"{self.dataset} trains on pairs of digits: use --loss "
                                 f"{pair_loss.get(self.model, 'pair-bce')} (or auto), not {self.loss}")
        elif self.loss in PAIR_OBJECTIVES:
            raise ValueError(f"--loss {self.loss} trains on pairs of digits: add --dataset "
                             f"{' or '.join(sorted(pair_datasets))}")
        if self.loss in PAIR_OBJECTIVES and PAIR_OBJECTIVES[self.loss] != self.model:
            raise ValueError(f"--loss {self.loss} is for the {PAIR_OBJECTIVES[self.loss]}; the {self.model} trains on "
                             f"pairs with --loss {pair_loss.get(self.model, 'pair-bce')} (or auto)")

    def resolved_preset(self) -> str:
        """The model preset that ``preset="auto"`` stands for: the data set's CapsNet (its recipe in
        :mod:`capsedu.data.recipes`), or ``"small"`` for the baseline; any other preset as given."""
        from .data import recipe_for

        if self.preset != "auto":
            return self.preset
        return recipe_for(self.dataset).preset if self.model == "capsnet" else "small"

    def transforms(self):
        """``(training augmentation, test transform)``, each a ``RandomTransform`` or ``None``, from
        ``augment``, ``augment_shift`` and ``crop_size`` (:func:`capsedu.data.recipes.data_transforms`);
        e.g. ``(RandomCrop(32), CenterCrop(32))`` for smallNORB's recipe."""
        from .data import data_transforms

        return data_transforms(self.dataset, self.augment, self.augment_shift, self.crop_size, self.canvas_size)

    def build_model(self, image_shape: Tuple[int, int, int] = (1, 28, 28), n_classes: int = 10) -> nn.Module:
        """The configured model (through the registry ``capsedu.models.MODELS``) for images of ``image_shape``."""
        c, h, w = image_shape
        if h != w:
            raise ValueError(f"{self.model} needs square images, the data has {h}x{w}")
        sizes = dict(in_channels=c, image_size=h, n_classes=n_classes)
        if self.model == "capsnet":
            return MODELS["capsnet"](self.resolved_preset(), routing_iterations=self.routing_iterations,
                                     routing_gradient=self.routing_gradient, reconstruction=self.reconstruction,
                                     **sizes)
        if self.model == "baseline":
            preset = BASELINE_PRESETS[self.resolved_preset()]
            return MODELS["baseline"](channels=preset.channels, kernel_size=preset.kernel_size, hidden=preset.hidden,
                                      dropout=preset.dropout, **sizes)
        return MODELS[self.model](**sizes)

    def build_objective(self) -> Objective:
        """The configured loss (``"auto"``: the paper's for the model and data: margin / cross-entropy, and on
        pairs (MultiMNIST) pair-margin for a CapsNet / pair-bce for a logits model)."""
        from .data import PAIR_DATASETS

        loss = self.loss
        if loss == "auto":
            pairs = self.dataset in PAIR_DATASETS
            if self.model == "capsnet":
                loss = "pair-margin" if pairs else "margin"
            else:
                loss = "pair-bce" if pairs else "cross-entropy"
        if loss in ("margin", "pair-margin"):
            return make_objective(loss, reconstruction_weight=self.reconstruction_weight)
        return make_objective(loss)


#: Settings a resumed run may change: how long, where, on what hardware, how often to save, how to
#: test. Everything else defines the training and must match the checkpoint.
#: Named starting points for ``capsedu train`` (flags given on the command line override them). ``"quick"``, the
#: default: two epochs under a one-cycle schedule, which reaches 99 % on MNIST in about two minutes on a 2-core CPU
#: (``benchmarks/bench_time_to_accuracy.py``); ``"paper"``: :class:`TrainConfig`'s own defaults, the paper's
#: Adam at 1e-3 decayed by 0.96 every 2,000 steps.
RECIPES: Dict[str, Dict[str, Any]] = {
    "quick": dict(epochs=2, schedule="one-cycle", lr=3e-3),
    "paper": {},
}

RESUME_ADJUSTABLE = ("epochs", "output", "device", "data", "subset", "checkpoint_every", "eval_batch_size",
                     "test_limit", "compile", "amp", "channels_last")

_FLAG_NAMES = {"reconstruction": "--no-reconstruction", "subset": "--subset"}


def _flag(name: str) -> str:
    return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def _check_int(name: str, value: Any, low: int, high: Optional[int] = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{_flag(name)} must be an integer {bound}, got {value!r}")


@dataclass
class FitResult:
    model: nn.Module
    history: List[Dict[str, float]]
    checkpoint: Path
    test_accuracy: float
    data_source: str = "full"
    extra: Dict[str, Any] = field(default_factory=dict)


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor, dataset: str, source: str) -> Dict[str, Any]:
    """What a run trained on: the data set, where it came from, how many examples and a SHA-256 of them."""
    h = hashlib.sha256()
    for t in (images, labels):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return {"dataset": dataset, "source": source, "examples": int(labels.shape[0]), "sha256": h.hexdigest()[:16]}


def _describe_data(fp: Dict[str, Any]) -> str:
    return f"{fp.get('source', '?')} {fp.get('dataset', '?')} ({fp.get('examples', '?')} training examples, sha256 {fp.get('sha256', '?')})"


_RESUME_KEYS = ("train_config", "optimizer_state", "scheduler_state", "epoch", "step_in_epoch", "history",
                "generator_state", "torch_rng_state")


def read_resumable(path: os.PathLike) -> Tuple[Dict[str, Any], "TrainConfig"]:
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
        config = TrainConfig(**saved).validate()
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {path} holds an invalid training setting: {exc}") from None
    return state, config


def model_input_shape(train_shape: Tuple[int, int, int], test_shape: Tuple[int, int, int],
                      augment: Optional[Any] = None, test_transform: Optional[Any] = None) -> Tuple[int, int, int]:
    """``(C, H, W)`` the model sees: the training images after ``augment`` (e.g. 3x24x24 CIFAR-10 crops).

    Raises:
        ValueError: the test images, after ``test_transform``, would have another size.
    """
    train_out = augment.output_shape(*train_shape) if augment is not None else tuple(train_shape)
    test_out = test_transform.output_shape(*test_shape) if test_transform is not None else tuple(test_shape)
    if tuple(train_out) != tuple(test_out):
        raise ValueError(f"training images are {'x'.join(map(str, train_out))} after {augment!r} but test images "
                         f"are {'x'.join(map(str, test_out))} after {test_transform!r}; the model takes one size")
    return tuple(train_out)


def checkpoint_test_transform(train_config: Dict[str, Any]) -> Optional[Any]:
    """The test-time transform of the run a checkpoint's ``train_config`` describes (``None``: whole images).

    Settings this version does not know are ignored, so any checkpoint can be evaluated; older
    checkpoints, which predate per-data-set recipes, get MNIST's (no test-time transform).
    """
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in train_config.items() if k in known})
    return config.transforms()[1]


class CheckpointTest(NamedTuple):
    """What :func:`checkpoint_test_batches` returns."""

    batches: Any                 # Batches or PairBatches
    objective: Optional[Objective]  # the run's objective for pair data, else None (the model's default)
    split: Any                   # the ImageSplit of test images (digits, for pairs)
    shape: Tuple[int, int, int]  # (C, H, W) the model receives


def checkpoint_test_batches(train_config: Dict[str, Any], root: Optional[str] = None, subset: Optional[bool] = None,
                            batch_size: int = 500, device: Any = "cpu", limit: Optional[int] = None,
                            download: bool = True) -> CheckpointTest:
    """The test set of the run a checkpoint's ``train_config`` describes, as that run tested itself: the data
    set's test split after its test transform, or for MultiMNIST the fixed test pairs scored with the run's
    pair objective. Used by ``capsedu evaluate`` and by the shipped models' records."""
    from .data import PAIR_DATASETS, Batches, load_split, pair_test_batches

    dataset = train_config.get("dataset", "mnist")
    if dataset in PAIR_DATASETS:
        split = load_split(PAIR_DATASETS[dataset], "test", root=root, subset=subset, download=download)
        batches = pair_test_batches(split, batch_size, device=device, limit=limit)
        known = {k: v for k, v in train_config.items() if k in {f.name for f in fields(TrainConfig)}}
        return CheckpointTest(batches, TrainConfig(**known).build_objective(), split, tuple(batches.image_shape))
    transform = checkpoint_test_transform(train_config)  # e.g. CIFAR-10's central 24x24 crop
    split = load_split(dataset, "test", root=root, subset=subset, download=download)
    shape = transform.output_shape(*split.image_shape) if transform is not None else tuple(split.image_shape)
    return CheckpointTest(Batches(split, batch_size, augment=transform, device=device, limit=limit), None, split,
                          tuple(shape))


def _effective(config: TrainConfig, name: str) -> Any:
    """The setting ``name`` of ``config`` with ``"auto"`` replaced by what it means for the data set."""
    from .data import recipe_for

    if name == "preset":
        return config.resolved_preset()
    if name == "augment" and config.augment == "auto":
        return recipe_for(config.dataset).augment
    return getattr(config, name)


def resume_differences(saved: TrainConfig, requested: TrainConfig) -> Tuple[List[str], List[str]]:
    """``(refused, honoured)``: one line per setting where ``requested`` differs from the checkpoint's.

    ``"auto"`` equals what it stands for (``preset="auto"`` and ``"small"`` train the same MNIST model).
    """
    refused, honoured = [], []
    for f in fields(TrainConfig):
        old, new = getattr(saved, f.name), getattr(requested, f.name)
        if old == new or _effective(saved, f.name) == _effective(requested, f.name):
            continue
        line = f"{_flag(f.name)} {new!r} (checkpoint: {old!r})"
        (honoured if f.name in RESUME_ADJUSTABLE else refused).append(line)
    return refused, honoured


def fit(config: TrainConfig, *, resume: Optional[os.PathLike] = None, overwrite: bool = False,
        progress: bool = True, log: Callable[[str], None] = print) -> FitResult:
    """Train ``config`` to the end, writing ``output/last.pt`` after every epoch, every
    ``checkpoint_every`` steps and on Ctrl-C/SIGTERM (at the end of the current step).

    ``resume`` continues such a checkpoint at the exact batch where it stopped, with the same data
    order and augmentation; settings that define the training must equal the checkpoint's
    (:data:`RESUME_ADJUSTABLE` may differ and are reported), and so must the training data.
    Without ``resume``, an ``output`` that already holds a run is refused unless ``overwrite``.
    """
    from . import distributed

    config.validate()
    ctx, dist_device = distributed.setup(config.device)
    run_dir = RunDirectory(config.output)
    try:
        if ctx.is_main:  # rank 0 alone writes files, so it alone holds the lock
            run_dir.acquire()
        with DeferredInterrupt(notify=log if ctx.is_main else (lambda _s: None)) as interrupt:
            return _fit(config, resume, overwrite, progress, log, ctx, dist_device, run_dir, interrupt)
    finally:
        run_dir.release()
        distributed.cleanup(ctx)


def _fit(config: TrainConfig, resume: Optional[os.PathLike], overwrite: bool, progress: bool,
         log: Callable[[str], None], ctx: DistContext, dist_device: Optional[torch.device],
         run_dir: RunDirectory, interrupt: DeferredInterrupt) -> FitResult:
    # data imports torchvision; keep `import capsedu.train` light
    from .data import PAIR_DATASETS, Batches, PairBatches, load_split, pair_test_batches
    from .data.subsets import balanced_subset
    from .distributed import wrap_model

    if not ctx.is_main:
        progress = False
        log = lambda *_args, **_kw: None  # noqa: E731
    state = None
    if resume is not None:
        state, saved = read_resumable(resume)
        refused, honoured = resume_differences(saved, config)
        if refused:
            raise ValueError(f"cannot resume {resume} with different training settings: {'; '.join(refused)}. "
                             f"Drop those flags to continue the run as it was, or start a new run in another --output")
        for line in honoured:
            log(f"resume: using {line}")
    elif run_dir.checkpoint.exists() and not overwrite:
        raise RunDirectoryError(f"{run_dir.path} already holds a run ({run_dir.checkpoint}); continue it with "
                                f"--resume, start over with --overwrite, or choose another --output")
    device = dist_device or select_device(config.device)

    pairs_of = PAIR_DATASETS.get(config.dataset)  # MultiMNIST: pairs of MNIST digits made on the fly
    digits = pairs_of or config.dataset
    train_split = load_split(digits, "train", root=config.data, subset=config.subset)
    test_split = load_split(digits, "test", root=config.data, subset=config.subset)
    limit = config.train_limit
    if config.train_subset_seed is not None:
        train_split = balanced_subset(train_split, limit, config.train_subset_seed)
    used_images = train_split.images[:limit] if limit else train_split.images
    used_labels = train_split.labels[:limit] if limit else train_split.labels
    fingerprint = data_fingerprint(used_images, used_labels, config.dataset, train_split.source)
    if config.train_repeat > 1 and not pairs_of:  # a small training set seen several times per epoch (fresh augmentation)
        repeat = (config.train_repeat,) + (1,) * (used_images.dim() - 1)
        train_split = replace(train_split, images=used_images.repeat(*repeat),
                              labels=used_labels.repeat(config.train_repeat, *([1] * (used_labels.dim() - 1))))
        limit = None
    if state is not None:
        old = state.get("data")
        if old is None:
            log(f"resume: {resume} does not record its training data; continuing on {_describe_data(fingerprint)}")
        elif old != fingerprint:
            raise ValueError(f"cannot resume {resume} on different data: it was trained on {_describe_data(old)}, "
                             f"this run would use {_describe_data(fingerprint)}")

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    augment, test_transform = config.transforms()  # the data set's recipe, e.g. RandomCrop(24) / CenterCrop(24)
    if pairs_of:
        # Section 6 makes pairs on the fly: every epoch draws its pairs' seed from `generator`, whose
        # start-of-epoch state the checkpoints keep, so a resumed epoch remakes exactly the same pairs.
        # The test set is fixed (capsedu.data.multimnist.TEST_PAIRS pairs of test digits, TEST_SEED).
        digits_used = train_split.take(limit) if limit else train_split
        train_batches = PairBatches(digits_used, len(digits_used) * config.train_repeat, config.batch_size,
                                    generator=generator, device=device)
        test_batches = pair_test_batches(test_split, config.eval_batch_size, device=device, limit=config.test_limit)
        input_shape = train_batches.image_shape
    else:
        train_batches = Batches(train_split, config.batch_size, shuffle=True, augment=augment,
                                device=device, generator=generator, limit=limit)
        test_batches = Batches(test_split, config.eval_batch_size, augment=test_transform, device=device,
                               limit=config.test_limit)
        input_shape = model_input_shape(train_split.image_shape, test_split.image_shape, augment, test_transform)

    model = config.build_model(input_shape, train_split.n_classes).to(device)
    about = f"{config.model} {config.resolved_preset()!r}, {sum(p.numel() for p in model.parameters()):,} parameters"
    if pairs_of:
        log(f"{config.dataset} of {train_split.source} {pairs_of}: {train_batches.num_examples} fresh training pairs "
            f"per epoch (of {len(train_batches.split)} digits) / "
            f"{test_batches.num_examples} fixed test pairs, {'x'.join(map(str, input_shape))}; {about}")
    else:
        log(f"{train_split.source} {config.dataset}: {train_batches.num_examples} training / "
            f"{test_batches.num_examples} test images {'x'.join(map(str, train_split.image_shape))}; "
            f"training on {augment or 'whole images'}, testing on {test_transform or 'whole images'}; {about}")
    optimize(model, compile=config.compile, channels_last=config.channels_last)
    amp = resolve_amp(config.amp, device)
    if device.type == "cpu" and config.amp == "auto":
        log(cpu_bf16().reason)
    objective = config.build_objective()
    optimizer, scheduler = make_optimizer(model, config.lr, config.lr_decay, config.decay_steps,
                                          schedule=config.schedule, total_steps=config.epochs * len(train_batches))
    history: List[Dict[str, float]] = []
    epoch, start_batch = 0, 0
    totals = EpochTotals()
    if state is not None:
        load_state(model, state["model_state"], f"checkpoint {resume}")
        load_optimizer_state(optimizer, state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        history = list(state["history"])
        epoch, start_batch = int(state["epoch"]), int(state["step_in_epoch"])
        if start_batch > len(train_batches):
            raise CheckpointError(f"checkpoint {resume} stopped at batch {start_batch}, but an epoch has only "
                                  f"{len(train_batches)} batches")
        if "epoch_totals" in state:
            totals = EpochTotals.from_state(state["epoch_totals"])
        elif start_batch:
            log("resume: the checkpoint has no running totals; this epoch's training statistics cover "
                "only the batches after the resume")
        generator.set_state(state["generator_state"])
        torch.set_rng_state(state["torch_rng_state"])
        saved_amp = state.get("amp")
        if saved_amp is not None and saved_amp != amp:
            log(f"resume: bf16 autocast {'on' if amp else 'off'} (checkpoint: {'on' if saved_amp else 'off'}); the run "
                f"continues in {'bf16' if amp else 'float32'}, so its weights will differ from an uninterrupted run")
        saved_epochs = state["train_config"].get("epochs")
        if config.schedule == "one-cycle" and saved_epochs != config.epochs:
            log(f"resume: the one-cycle learning-rate schedule now spans {config.epochs} epochs (checkpoint: "
                f"{saved_epochs}); from here the learning rate follows the longer schedule")
        saved_threads = state.get("torch_threads")
        if saved_threads is not None and saved_threads != torch.get_num_threads():
            log(f"resume: {torch.get_num_threads()} torch threads (checkpoint: {saved_threads}); sums run in another "
                f"order, so the weights will differ from an uninterrupted run in the last bits")
        if "cuda_rng_state" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(state["cuda_rng_state"]))
        if epoch >= config.epochs:
            raise ValueError(f"nothing to do: {resume} already holds {epoch} epochs; ask for more with --epochs")
        where = "its test pass" if start_batch == len(train_batches) else f"batch {start_batch} of {len(train_batches)}"
        log(f"resuming {resume} at epoch {epoch + 1}, {where}")

    model_class, model_config = model_record(model)
    train_model = wrap_model(model, ctx, device)  # DDP in a torchrun launch, else the model itself
    if ctx.enabled:
        log(f"data parallel: {ctx.world_size} processes ({ctx.backend}), global batch {config.batch_size}")

    def checkpoint(epoch_done: int, step_in_epoch: int, epoch_start_generator: torch.Tensor) -> None:
        if not ctx.is_main:
            return
        saved_totals = totals.state()
        if not math.isfinite(saved_totals["loss_sum"]):  # never overwrite a good checkpoint with a diverged run
            raise FloatingPointError("training loss became non-finite in this epoch; lower the learning rate")
        record = {
            "model_class": model_class, "model_config": model_config,
            "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(), "train_config": asdict(config),
            "epoch": epoch_done, "step_in_epoch": step_in_epoch, "history": history,
            "generator_state": epoch_start_generator, "torch_rng_state": torch.get_rng_state(),
            "torch_threads": torch.get_num_threads(), "amp": amp,
            "epoch_totals": saved_totals, "data": fingerprint, "data_source": train_split.source,
            "objective": objective.settings(),
        }
        if device.type == "cuda":
            record["cuda_rng_state"] = torch.cuda.get_rng_state_all()
        save_checkpoint(record, run_dir.checkpoint)

    while epoch < config.epochs:
        epoch_generator = generator.get_state()  # the epoch's shuffle and shifts are drawn from here

        def on_step(record) -> None:
            steps_done = start_batch + record.step + 1
            if config.checkpoint_every and steps_done % config.checkpoint_every == 0:
                if not torch.isfinite(record.loss):  # never overwrite a good checkpoint with diverged weights
                    raise FloatingPointError(f"training loss became {float(record.loss)} at step {record.step}; "
                                             f"lower the learning rate")
                checkpoint(epoch, steps_done, epoch_generator)

        try:
            stats = train_epoch(train_model, train_batches.iter_from(start_batch), optimizer, scheduler, objective,
                                progress=progress, description=f"epoch {epoch + 1}/{config.epochs}",
                                total=len(train_batches) - start_batch, on_step=on_step, amp=amp, dist=ctx,
                                totals=totals, safe_point=interrupt.check)
            test = evaluate(model, test_batches, objective, progress=progress, amp=amp, dist=ctx,
                            safe_point=interrupt.check)
        except SafeStop:
            steps_done = min(totals.steps, len(train_batches))
            checkpoint(epoch, steps_done, epoch_generator)
            where = "its test pass" if steps_done == len(train_batches) else f"batch {steps_done}"
            log(f"interrupted: checkpoint written to {run_dir.checkpoint} (epoch {epoch + 1}, {where}); "
                f"continue with --resume")
            raise
        epoch += 1
        start_batch = 0
        history.append({
            "epoch": epoch, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"],
            "train_examples": stats["examples"],
            "test_loss": test["loss"], "test_accuracy": test["accuracy"], "test_error": test["error"],
            "lr": scheduler.get_last_lr()[0], "seconds": totals.seconds,
        })
        totals = EpochTotals()
        checkpoint(epoch, 0, generator.get_state())
        if ctx.is_main:
            atomic_write(run_dir.history, lambda f: f.write(json.dumps(history, indent=1).encode()))
        ctx.barrier()
        log(f"epoch {epoch}/{config.epochs}: train loss {stats['loss']:.4f}, train acc {100 * stats['accuracy']:.2f}%, "
            f"test acc {100 * test['accuracy']:.2f}% ({history[-1]['seconds']:.0f}s)")

    return FitResult(model, history, run_dir.checkpoint, history[-1]["test_accuracy"], train_split.source)
