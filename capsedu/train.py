"""Training and evaluation: Adam with the paper's exponential learning-rate decay, progress bars,
per-epoch history, atomic checkpoints and exact resume.

Two levels:

* :func:`train_epoch` / :func:`evaluate` work on any model and any iterable of ``(images, labels)``
  batches; the book uses them for short demonstrations.
* :func:`fit` runs a whole configured experiment (:class:`TrainConfig`) with data loading,
  checkpoints in ``output/`` and resume; the CLI (``capsedu train``) is a thin wrapper around it.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._io import atomic_write
from .checkpoint import CheckpointError, load_checkpoint, load_state, save_checkpoint
from .distributed import DistContext, unwrap
from .fast import autocast, optimize, resolve_amp
from .losses import capsule_loss
from .models import BaselineCNN, CapsNet, CapsNetOutput

__all__ = [
    "TrainConfig", "FitResult", "fit", "train_epoch", "evaluate", "select_device", "make_optimizer",
    "default_loss", "predict", "load_optimizer_state", "CHECKPOINT_NAME",
]

CHECKPOINT_NAME = "last.pt"
HISTORY_NAME = "history.json"
Batch = Tuple[torch.Tensor, torch.Tensor]


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def predict(output: Any) -> torch.Tensor:
    """Predicted classes: the longest digit capsule for a CapsNet, the largest logit otherwise."""
    scores = output.lengths if isinstance(output, CapsNetOutput) else output
    return scores.argmax(dim=1)


def default_loss(model: nn.Module) -> Callable:
    """``capsule_loss`` for a CapsNet, cross-entropy for anything that returns logits."""
    if isinstance(unwrap(model), CapsNet):
        return lambda out, images, labels: capsule_loss(out, images, labels)
    return lambda out, images, labels: F.cross_entropy(out, labels)


def _forward(model: nn.Module, images: torch.Tensor, labels: Optional[torch.Tensor]):
    # CapsNets take labels to mask the decoder during training; other models only see images.
    inner = unwrap(model)  # a DistributedDataParallel wrapper passes the labels on
    if isinstance(inner, CapsNet) or getattr(inner, "takes_labels", False):
        return model(images, labels)
    return model(images)


def make_optimizer(model: nn.Module, lr: float = 1e-3, lr_decay: float = 0.96, decay_steps: int = 2000):
    """Adam and the paper's exponential decay ``lr * lr_decay ** (step / decay_steps)``, stepped per batch.

    ``ExponentialLR`` with ``gamma = lr_decay ** (1 / decay_steps)`` is that schedule, and its state
    is plain numbers, so it round-trips through a ``weights_only`` checkpoint.
    """
    params = list(model.parameters())
    # on a GPU the fused kernel updates every parameter in one launch instead of a dozen per tensor
    fused = bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)
    optimizer = torch.optim.Adam(params, lr=lr, **({"fused": True} if fused else {}))
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


def train_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[Any] = None,
    loss_fn: Optional[Callable] = None,
    *,
    progress: bool = True,
    description: str = "train",
    total: Optional[int] = None,
    on_step: Optional[Callable[[int, torch.Tensor], None]] = None,
    amp: bool = False,
    dist: Optional[DistContext] = None,
) -> Dict[str, float]:
    """One pass over ``batches``; returns mean loss and accuracy on the (augmented) training batches.

    ``on_step(step, loss)``: called after every optimizer step with the step's loss as a detached
    0-dim tensor (``float(loss)`` for a number; on a GPU that waits for the step to finish).
    ``amp``: run forward and loss under bf16 autocast (CUDA only; see :func:`capsedu.fast.autocast`).
    ``dist``: in a data-parallel run (``model`` wrapped in DDP), each rank trains on its slice of
    every batch and the returned metrics are summed over the ranks (:mod:`capsedu.distributed`).

    A non-finite loss raises :class:`FloatingPointError`: at once on the CPU, within 25 steps on a
    GPU (where the totals are read back only that often, so the GPU never waits for the host).
    """
    loss_fn = loss_fn or default_loss(model)
    model.train()
    loss_sum: Any = 0.0
    correct: Any = 0
    seen, checked_up_to = 0, 0
    device: Optional[torch.device] = None
    every = 1
    bar = tqdm(batches, desc=description, total=total, disable=not progress, leave=False, dynamic_ncols=True)

    def read_totals(step: int) -> Tuple[float, int]:
        nonlocal checked_up_to
        loss_total = float(loss_sum)
        if not math.isfinite(loss_total):
            where = f"step {step}" if step == checked_up_to else f"one of steps {checked_up_to}-{step}"
            raise FloatingPointError(f"training loss became {loss_total} at {where}; lower the learning rate")
        checked_up_to = step + 1
        return loss_total, int(correct)

    step = -1
    for step, (images, labels) in enumerate(bar):
        scale = 1.0
        if dist is not None and dist.enabled:
            images, labels, scale = dist.shard(images, labels)
        if device is None:
            device = images.device
            every = _host_sync_every(device)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
        with autocast(device, enabled=amp):
            out = _forward(model, images, labels)
            loss = loss_fn(out, images, labels)
        n = labels.shape[0] if scale != 0.0 else 0
        if n:
            loss_sum += loss.detach().double() * n
            correct += (predict(out) == labels).sum()
            seen += n
        if (step + 1) % every == 0:  # before backward: on the CPU a bad loss never reaches the weights
            loss_total, n_correct = read_totals(step)
            if progress and seen and (every > 1 or step % 10 == 0):
                bar.set_postfix(loss=f"{loss_total / seen:.4f}", acc=f"{n_correct / seen:.4f}")
        optimizer.zero_grad(set_to_none=True)
        (loss * scale if scale != 1.0 else loss).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if on_step is not None:
            on_step(step, loss.detach())
    loss_total, n_correct = read_totals(step) if device is not None else (0.0, 0)
    if dist is not None and dist.enabled:
        loss_total, n_correct, seen = dist.all_sum([loss_total, n_correct, seen], device or torch.device("cpu"))
    return {"loss": loss_total / max(seen, 1), "accuracy": n_correct / max(seen, 1), "examples": int(seen)}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: Optional[Callable] = None,
    *,
    progress: bool = False,
    description: str = "test",
    amp: bool = False,
    dist: Optional[DistContext] = None,
) -> Dict[str, float]:
    """Accuracy, error and mean loss over ``batches`` (eval mode: no dropout, decoder masked by prediction).

    ``dist``: each rank evaluates its slice of every batch and the totals are summed over the ranks.
    """
    model = unwrap(model)
    loss_fn = loss_fn or default_loss(model)
    was_training = model.training
    model.eval()
    loss_sum: Any = 0.0
    correct: Any = 0
    seen = 0
    device = None
    for images, labels in tqdm(batches, desc=description, disable=not progress, leave=False, dynamic_ncols=True):
        if dist is not None and dist.enabled:
            images, labels, scale = dist.shard(images, labels)
            if scale == 0.0:
                continue
        device = images.device
        with autocast(device, enabled=amp):
            out = model(images)  # no labels: the decoder sees the longest capsule, as at test time
            loss_sum = loss_sum + loss_fn(out, images, labels).detach().double() * labels.shape[0]
        correct = correct + (predict(out) == labels).sum()  # totals stay on the device until the end
        seen += labels.shape[0]
    model.train(was_training)
    loss_total, n_correct = float(loss_sum), int(correct)
    if dist is not None and dist.enabled:
        loss_total, n_correct, seen = dist.all_sum([loss_total, n_correct, seen], device or torch.device("cpu"))
    if seen == 0:
        raise ValueError("evaluate() got no batches")
    return {"loss": loss_total / seen, "accuracy": n_correct / seen, "error": 1.0 - n_correct / seen}


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints)."""

    model: str = "capsnet"               # "capsnet" or "baseline"
    preset: str = "small"                # CapsNet preset: "small" (CPU) or "paper"
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 0.96               # paper: lr * 0.96 ** (step / 2000)
    decay_steps: int = 2000
    routing_iterations: int = 3
    routing_gradient: str = "all"
    reconstruction: bool = True
    augment_shift: int = 2               # paper: random shifts of up to 2 pixels
    seed: int = 0
    device: str = "auto"
    data: Optional[str] = None           # MNIST root; None -> $CAPSEDU_DATA -> ~/.cache/capsedu
    subset: Optional[bool] = None        # True: shipped subset; None: full MNIST, subset if unavailable
    train_limit: Optional[int] = None    # use only the first N training / test digits
    test_limit: Optional[int] = None
    eval_batch_size: int = 500
    checkpoint_every: int = 0            # also checkpoint every N steps (0: only at epoch ends)
    output: str = "runs/capsnet"
    # speed options (capsedu.fast): True, False or "auto"
    compile: Any = "auto"                # torch.compile, eager fallback with a warning (auto: CUDA only)
    amp: Any = "auto"                    # bf16 autocast (auto: CUDA with bf16; routing stays float32)
    channels_last: Any = "auto"          # NHWC convolutions (auto: on)

    def validate(self) -> "TrainConfig":
        if self.model not in ("capsnet", "baseline"):
            raise ValueError(f"model must be 'capsnet' or 'baseline', got {self.model!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "decay_steps", "routing_iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (self.lr > 0 and 0 < self.lr_decay <= 1):
            raise ValueError(f"need lr > 0 and 0 < lr_decay <= 1, got lr={self.lr}, lr_decay={self.lr_decay}")
        if self.augment_shift < 0 or self.checkpoint_every < 0:
            raise ValueError("augment_shift and checkpoint_every must be >= 0")
        for name in ("compile", "amp", "channels_last"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ValueError(f"{name} must be True, False or 'auto', got {getattr(self, name)!r}")
        return self

    def build_model(self) -> nn.Module:
        if self.model == "baseline":
            return BaselineCNN()
        return CapsNet(self.preset, routing_iterations=self.routing_iterations,
                       routing_gradient=self.routing_gradient, reconstruction=self.reconstruction)


@dataclass
class FitResult:
    model: nn.Module
    history: List[Dict[str, float]]
    checkpoint: Path
    test_accuracy: float
    data_source: str = "full"
    extra: Dict[str, Any] = field(default_factory=dict)


def _model_record(model: nn.Module) -> Tuple[str, Dict[str, Any]]:
    if isinstance(model, CapsNet):
        return "CapsNet", model.config.to_dict()
    if isinstance(model, BaselineCNN):
        return "BaselineCNN", {}
    raise ValueError(f"cannot checkpoint a {type(model).__name__}")


def _write_history(history: List[Dict[str, float]], path: Path) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(history, indent=1).encode()))


def fit(config: TrainConfig, *, resume: Optional[os.PathLike] = None, progress: bool = True,
        log: Callable[[str], None] = print) -> FitResult:
    """Train ``config`` to the end, writing ``output/last.pt`` after every epoch (and every
    ``checkpoint_every`` steps, and on Ctrl-C); ``resume`` continues from such a checkpoint at the
    exact batch where it stopped, with the same data order and augmentation."""
    from . import distributed

    ctx, dist_device = distributed.setup(config.device)
    try:
        return _fit(config, resume, progress, log, ctx, dist_device)
    finally:
        distributed.cleanup(ctx)


def _fit(config: TrainConfig, resume: Optional[os.PathLike], progress: bool, log: Callable[[str], None],
         ctx: DistContext, dist_device: Optional[torch.device]) -> FitResult:
    from .data import Batches, load_mnist  # data imports torchvision; keep `import capsedu.train` light
    from .distributed import wrap_model

    if not ctx.is_main:  # rank 0 alone logs, shows progress and writes files
        progress = False
        log = lambda *_args, **_kw: None  # noqa: E731
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        if "train_config" not in state or "optimizer_state" not in state:
            raise CheckpointError(f"{resume} holds weights only, not a resumable training run")
        saved = TrainConfig(**state["train_config"])
        # a resumed run keeps its recipe; only the length and where to write may change
        saved.epochs, saved.output = config.epochs, config.output
        saved.compile, saved.amp, saved.channels_last = config.compile, config.amp, config.channels_last
        config = saved
    config.validate()
    device = dist_device or select_device(config.device)
    torch.manual_seed(config.seed)
    out_dir = Path(config.output)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_NAME

    train_split = load_mnist("train", root=config.data, subset=config.subset)
    test_split = load_mnist("test", root=config.data, subset=config.subset)
    generator = torch.Generator().manual_seed(config.seed)
    train_batches = Batches(train_split, config.batch_size, shuffle=True, augment_shift=config.augment_shift,
                            device=device, generator=generator, limit=config.train_limit)
    test_batches = Batches(test_split, config.eval_batch_size, device=device, limit=config.test_limit)

    model = config.build_model().to(device)
    optimize(model, compile=config.compile, channels_last=config.channels_last)
    amp = resolve_amp(config.amp, device)
    optimizer, scheduler = make_optimizer(model, config.lr, config.lr_decay, config.decay_steps)
    history: List[Dict[str, float]] = []
    epoch, start_batch = 0, 0
    if state is not None:
        load_state(model, state["model_state"], f"checkpoint {resume}")
        load_optimizer_state(optimizer, state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        history = list(state["history"])
        epoch, start_batch = int(state["epoch"]), int(state["step_in_epoch"])
        generator.set_state(state["generator_state"])
        torch.set_rng_state(state["torch_rng_state"])
        log(f"resuming {resume} at epoch {epoch + 1}, batch {start_batch} of {len(train_batches)}")

    model_class, model_config = _model_record(model)
    train_model = wrap_model(model, ctx, device)  # DDP in a torchrun launch, else the model itself
    if ctx.enabled:
        log(f"data parallel: {ctx.world_size} processes ({ctx.backend}), global batch {config.batch_size}")

    def checkpoint(epoch_done: int, step_in_epoch: int, epoch_start_generator: torch.Tensor) -> None:
        if not ctx.is_main:
            return
        save_checkpoint({
            "model_class": model_class, "model_config": model_config,
            "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(), "train_config": asdict(config),
            "epoch": epoch_done, "step_in_epoch": step_in_epoch, "history": history,
            "generator_state": epoch_start_generator, "torch_rng_state": torch.get_rng_state(),
            "data_source": train_split.source,
        }, ckpt_path)

    loss_fn = default_loss(model)
    while epoch < config.epochs:
        epoch_generator = generator.get_state()  # the epoch's shuffle and shifts come from here
        steps_done = start_batch
        t0 = time.perf_counter()

        def on_step(step: int, loss: torch.Tensor) -> None:
            nonlocal steps_done
            steps_done = start_batch + step + 1
            if config.checkpoint_every and steps_done % config.checkpoint_every == 0:
                if not torch.isfinite(loss):  # never overwrite a good checkpoint with diverged weights
                    raise FloatingPointError(f"training loss became {float(loss)} at step {step}; "
                                             f"lower the learning rate")
                checkpoint(epoch, steps_done, epoch_generator)

        try:
            stats = train_epoch(train_model, train_batches.iter_from(start_batch), optimizer, scheduler, loss_fn,
                                progress=progress, description=f"epoch {epoch + 1}/{config.epochs}",
                                total=len(train_batches) - start_batch, on_step=on_step, amp=amp, dist=ctx)
        except KeyboardInterrupt:
            checkpoint(epoch, steps_done, epoch_generator)
            log(f"interrupted: checkpoint written to {ckpt_path} (epoch {epoch + 1}, batch {steps_done}); "
                f"continue with --resume")
            raise
        seconds = time.perf_counter() - t0
        test = evaluate(model, test_batches, loss_fn, progress=progress, amp=amp, dist=ctx)
        epoch += 1
        start_batch = 0
        history.append({
            "epoch": epoch, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"],
            "test_loss": test["loss"], "test_accuracy": test["accuracy"], "test_error": test["error"],
            "lr": scheduler.get_last_lr()[0], "seconds": seconds,
        })
        checkpoint(epoch, 0, generator.get_state())
        if ctx.is_main:
            _write_history(history, out_dir / HISTORY_NAME)
        ctx.barrier()
        log(f"epoch {epoch}/{config.epochs}: train loss {stats['loss']:.4f}, train acc {100 * stats['accuracy']:.2f}%, "
            f"test acc {100 * test['accuracy']:.2f}% ({seconds:.0f}s)")

    if not history:
        raise ValueError(f"nothing to do: the checkpoint already holds {epoch} epochs (ask for more with --epochs)")
    return FitResult(model, history, ckpt_path, history[-1]["test_accuracy"], train_split.source)
