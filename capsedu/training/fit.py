"""Whole runs: :func:`fit` trains a :class:`~capsedu.training.config.TrainConfig` to the end, with
checkpoints in ``output/`` and a resume that ends bit-identical to an uninterrupted run.

A run, step by step (each a function below):

1. :func:`_check_output`: continue the checkpoint asked for, or refuse to overwrite another run;
2. :func:`_load_data`: the splits, their batches and the fingerprint of the training data;
3. :func:`_build`: model, objective, optimizer and schedule (seeded, so a fresh run is reproducible);
4. :meth:`_Run.restore`: a resumed run takes back weights, optimizer, schedule, random states and totals;
5. :meth:`_Run.train`: epochs of :func:`~capsedu.training.loop.train_epoch` and
   :func:`~capsedu.training.loop.evaluate`, a checkpoint after each (and every ``checkpoint_every`` steps),
   and on Ctrl-C/SIGTERM one at the next safe point (:mod:`capsedu.training.interrupts`).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn as nn

from .._io import atomic_write
from ..models import model_record
from .checkpoint import CheckpointError, load_state, save_checkpoint
from .config import TrainConfig, model_input_shape
from .distributed import DistContext
from .interrupts import DeferredInterrupt, SafeStop
from .loop import EpochTotals, StepRecord, evaluate, train_epoch
from .objectives import Objective
from .optim import load_optimizer_state, make_optimizer
from .resume import data_fingerprint, describe_data, read_resumable, resume_differences
from .run_directory import RunDirectory, RunDirectoryError
from .speed import cpu_bf16, optimize, resolve_amp, select_device

__all__ = ["fit", "FitResult"]

Log = Callable[[str], None]


@dataclass
class FitResult:
    """What :func:`fit` returns."""

    model: nn.Module
    history: List[Dict[str, float]]
    checkpoint: Path
    test_accuracy: float
    data_source: str = "full"


def fit(config: TrainConfig, *, resume: Optional[os.PathLike] = None, overwrite: bool = False,
        progress: bool = True, log: Log = print) -> FitResult:
    """Train ``config`` to the end, writing ``output/last.pt`` after every epoch, every
    ``checkpoint_every`` steps and on Ctrl-C/SIGTERM (at the end of the current step).

    ``resume`` continues such a checkpoint at the exact batch where it stopped, with the same data
    order and augmentation; settings that define the training must equal the checkpoint's
    (:data:`~capsedu.training.config.RESUME_ADJUSTABLE` may differ and are reported), and so must the
    training data. An ``output`` that already holds a run (other than the one resumed) is refused
    unless ``overwrite``.
    """
    from . import distributed

    config.validate()
    ctx, dist_device = distributed.setup(config.device)
    run_dir = RunDirectory(config.output)
    try:
        if ctx.is_main:  # rank 0 alone writes files, so it alone holds the lock
            run_dir.acquire()
        if not ctx.is_main:
            progress, log = False, (lambda _line: None)
        with DeferredInterrupt(notify=log) as interrupt:
            state = _check_output(config, resume, overwrite, run_dir, log)
            run = _build(config, _load_data(config, dist_device or select_device(config.device)), ctx, run_dir,
                         progress, log)
            if state is not None:
                run.restore(state, resume)
            return run.train(interrupt)
    finally:
        run_dir.release()
        distributed.cleanup(ctx)


def _check_output(config: TrainConfig, resume: Optional[os.PathLike], overwrite: bool, run_dir: RunDirectory,
                  log: Log) -> Optional[Dict[str, Any]]:
    """The checkpoint to continue (``None`` for a fresh run), once its settings allow it; refuses to
    overwrite a run in ``output`` that is not the one resumed."""
    state = None
    if resume is not None:
        state, saved = read_resumable(resume)
        refused, honoured = resume_differences(saved, config)
        if refused:
            raise ValueError(f"cannot resume {resume} with different training settings: {'; '.join(refused)}. "
                             f"Drop those flags to continue the run as it was, or start a new run in another --output")
        for line in honoured:
            log(f"resume: using {line}")
    resuming_here = resume is not None and run_dir.checkpoint.exists() and \
        os.path.samefile(resume, run_dir.checkpoint)
    holds_a_run = run_dir.checkpoint.exists() or run_dir.history.exists()
    if holds_a_run and not resuming_here and not overwrite:
        what = "continue it with --resume" if resume is None else f"--resume {resume} would write over it"
        raise RunDirectoryError(f"{run_dir.path} already holds a run ({run_dir.checkpoint}); {what}, start over "
                                f"with --overwrite, or choose another --output")
    return state


@dataclass
class _RunData:
    """The data of a run, ready to iterate."""

    train_split: Any            # ImageSplit (for pairs: the digits)
    train_batches: Any          # Batches or PairBatches, resumable at any batch
    test_batches: Any
    input_shape: Any            # (C, H, W) the model sees
    fingerprint: Dict[str, Any]  # data_fingerprint of the training examples
    generator: torch.Generator  # the epochs' shuffles, augmentations and pairs are drawn from it
    device: torch.device
    description: str            # one line for the log


def _load_data(config: TrainConfig, device: torch.device) -> _RunData:
    """Load the splits and make their batches; seeds the global generator (the model's initial weights)."""
    from ..data import PAIR_DATASETS, Batches, PairBatches, load_split, pair_test_batches  # imports torchvision
    from ..data.subsets import balanced_subset

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
        description = (f"{config.dataset} of {train_split.source} {pairs_of}: {train_batches.num_examples} fresh "
                       f"training pairs per epoch (of {len(train_batches.split)} digits) / "
                       f"{test_batches.num_examples} fixed test pairs, {'x'.join(map(str, input_shape))}")
    else:
        train_batches = Batches(train_split, config.batch_size, shuffle=True, augment=augment,
                                device=device, generator=generator, limit=limit)
        test_batches = Batches(test_split, config.eval_batch_size, augment=test_transform, device=device,
                               limit=config.test_limit)
        input_shape = model_input_shape(train_split.image_shape, test_split.image_shape, augment, test_transform)
        description = (f"{train_split.source} {config.dataset}: {train_batches.num_examples} training / "
                       f"{test_batches.num_examples} test images {'x'.join(map(str, train_split.image_shape))}; "
                       f"training on {augment or 'whole images'}, testing on {test_transform or 'whole images'}")
    return _RunData(train_split, train_batches, test_batches, input_shape, fingerprint, generator, device,
                    description)


def _build(config: TrainConfig, data: _RunData, ctx: DistContext, run_dir: RunDirectory, progress: bool,
           log: Log) -> "_Run":
    """A fresh run: the model (initialised from the seeded global generator), objective, optimizer, schedule."""
    device = data.device
    model = config.build_model(data.input_shape, data.train_split.n_classes).to(device)
    routing = f", {config.resolved_routing()} routing" if config.resolved_routing() != "dynamic" else ""
    log(f"{data.description}; {config.model} {config.resolved_preset()!r}{routing}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters")
    optimize(model, compile=config.compile, channels_last=config.channels_last)
    amp = resolve_amp(config.amp, device)
    if device.type == "cpu" and config.amp == "auto":
        log(cpu_bf16().reason)
    optimizer, scheduler = make_optimizer(model, config.lr, config.lr_decay, config.decay_steps,
                                          schedule=config.schedule,
                                          total_steps=config.epochs * len(data.train_batches))
    return _Run(config, data, ctx, run_dir, progress, log, model, config.build_objective(), optimizer, scheduler, amp)


@dataclass
class _Run:
    """A run in progress: what it trains, where it stands, and how it saves itself."""

    config: TrainConfig
    data: _RunData
    ctx: DistContext
    run_dir: RunDirectory
    progress: bool
    log: Log
    model: nn.Module
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: Any
    amp: bool
    history: List[Dict[str, float]] = field(default_factory=list)
    epoch: int = 0               # epochs finished
    start_batch: int = 0         # batches of the current epoch already trained (a resumed epoch)
    totals: EpochTotals = field(default_factory=EpochTotals)
    train_model: Optional[nn.Module] = None  # the model, or its DistributedDataParallel wrapper (set by train)

    def restore(self, state: Dict[str, Any], resume: os.PathLike) -> None:
        """Take back a checkpoint's weights, optimizer, schedule, random states and running totals."""
        n_batches = len(self.data.train_batches)
        old = state.get("data")
        if old is None:
            self.log(f"resume: {resume} does not record its training data; continuing on "
                     f"{describe_data(self.data.fingerprint)}")
        elif old != self.data.fingerprint:
            raise ValueError(f"cannot resume {resume} on different data: it was trained on {describe_data(old)}, "
                             f"this run would use {describe_data(self.data.fingerprint)}")
        load_state(self.model, state["model_state"], f"checkpoint {resume}")
        load_optimizer_state(self.optimizer, state["optimizer_state"])
        self.scheduler.load_state_dict(state["scheduler_state"])
        self.history = list(state["history"])
        self.epoch, self.start_batch = int(state["epoch"]), int(state["step_in_epoch"])
        if self.start_batch > n_batches:
            raise CheckpointError(f"checkpoint {resume} stopped at batch {self.start_batch}, but an epoch has only "
                                  f"{n_batches} batches")
        if "epoch_totals" in state:
            self.totals = EpochTotals.from_state(state["epoch_totals"])
        elif self.start_batch:
            self.totals = EpochTotals(steps=self.start_batch)
            self.log("resume: the checkpoint has no running totals; this epoch's training statistics cover "
                     "only the batches after the resume")
        self.data.generator.set_state(state["generator_state"])
        torch.set_rng_state(state["torch_rng_state"])
        if "cuda_rng_state" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(state["cuda_rng_state"]))
        self._report_changes(state)
        if self.epoch >= self.config.epochs:
            raise ValueError(f"nothing to do: {resume} already holds {self.epoch} epochs; ask for more with --epochs")
        where = "its test pass" if self.start_batch == n_batches else f"batch {self.start_batch} of {n_batches}"
        self.log(f"resuming {resume} at epoch {self.epoch + 1}, {where}")

    def _report_changes(self, state: Dict[str, Any]) -> None:
        """Say which differences from the checkpoint's run change the numbers a resumed run computes."""
        saved_amp = state.get("amp")
        if saved_amp is not None and saved_amp != self.amp:
            self.log(f"resume: bf16 autocast {'on' if self.amp else 'off'} (checkpoint: "
                     f"{'on' if saved_amp else 'off'}); the run continues in {'bf16' if self.amp else 'float32'}, "
                     f"so its weights will differ from an uninterrupted run")
        saved_epochs = state["train_config"].get("epochs")
        if self.config.schedule == "one-cycle" and saved_epochs != self.config.epochs:
            self.log(f"resume: the one-cycle learning-rate schedule now spans {self.config.epochs} epochs (checkpoint: "
                     f"{saved_epochs}); from here the learning rate follows the longer schedule")
        saved_threads = state.get("torch_threads")
        if saved_threads is not None and saved_threads != torch.get_num_threads():
            self.log(f"resume: {torch.get_num_threads()} torch threads (checkpoint: {saved_threads}); sums run in "
                     f"another order, so the weights will differ from an uninterrupted run in the last bits")

    def save(self, epoch_done: int, step_in_epoch: int, epoch_generator: torch.Tensor) -> None:
        """Write ``last.pt``: everything an exact resume needs (rank 0 only)."""
        if not self.ctx.is_main:
            return
        saved_totals = self.totals.state()
        if not math.isfinite(saved_totals["loss_sum"]):  # never overwrite a good checkpoint with a diverged run
            raise FloatingPointError("training loss became non-finite in this epoch; lower the learning rate")
        model_class, model_config = model_record(self.model)
        record = {
            "model_class": model_class, "model_config": model_config,
            "model_state": self.model.state_dict(), "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(), "train_config": self.config.to_dict(),
            "epoch": epoch_done, "step_in_epoch": step_in_epoch, "history": self.history,
            "generator_state": epoch_generator, "torch_rng_state": torch.get_rng_state(),
            "torch_threads": torch.get_num_threads(), "amp": self.amp,
            "epoch_totals": saved_totals, "data": self.data.fingerprint,
            "data_source": self.data.train_split.source, "objective": self.objective.settings(),
        }
        if self.data.device.type == "cuda":
            record["cuda_rng_state"] = torch.cuda.get_rng_state_all()
        save_checkpoint(record, self.run_dir.checkpoint)

    def train(self, interrupt: DeferredInterrupt) -> FitResult:
        """The remaining epochs; on Ctrl-C/SIGTERM a checkpoint at the safe point, then :class:`SafeStop`."""
        from .distributed import wrap_model

        # wrapped after restore: DistributedDataParallel broadcasts rank 0's weights as it is built
        self.train_model = wrap_model(self.model, self.ctx, self.data.device)
        if self.ctx.enabled:
            self.log(f"data parallel: {self.ctx.world_size} processes ({self.ctx.backend}), "
                     f"global batch {self.config.batch_size}")
        while self.epoch < self.config.epochs:
            epoch_generator = self.data.generator.get_state()  # the epoch's shuffle and shifts are drawn from here
            try:
                stats, test = self._epoch(epoch_generator, interrupt)
            except SafeStop:
                steps_done = min(self.totals.steps, len(self.data.train_batches))
                self.save(self.epoch, steps_done, epoch_generator)
                where = "its test pass" if steps_done == len(self.data.train_batches) else f"batch {steps_done}"
                self.log(f"interrupted: checkpoint written to {self.run_dir.checkpoint} (epoch {self.epoch + 1}, "
                         f"{where}); continue with --resume")
                raise
            self._finish_epoch(stats, test)
        return FitResult(self.model, self.history, self.run_dir.checkpoint, self.history[-1]["test_accuracy"],
                         self.data.train_split.source)

    def _epoch(self, epoch_generator: torch.Tensor, interrupt: DeferredInterrupt):
        """Train the rest of the current epoch, then test: ``(training stats, test metrics)``."""
        config, batches = self.config, self.data.train_batches

        def on_step(record: StepRecord) -> None:
            steps_done = self.start_batch + record.step + 1
            if config.checkpoint_every and steps_done % config.checkpoint_every == 0:
                if not torch.isfinite(record.loss):  # never overwrite a good checkpoint with diverged weights
                    raise FloatingPointError(f"training loss became {float(record.loss)} at step {record.step}; "
                                             f"lower the learning rate")
                self.save(self.epoch, steps_done, epoch_generator)

        stats = train_epoch(self.train_model, batches.iter_from(self.start_batch), self.optimizer, self.scheduler,
                            self.objective, progress=self.progress,
                            description=f"epoch {self.epoch + 1}/{config.epochs}",
                            total=len(batches) - self.start_batch, on_step=on_step, amp=self.amp, dist=self.ctx,
                            totals=self.totals, safe_point=interrupt.check)
        test = evaluate(self.model, self.data.test_batches, self.objective, progress=self.progress, amp=self.amp,
                        dist=self.ctx, safe_point=interrupt.check)
        return stats, test

    def _finish_epoch(self, stats: Dict[str, float], test: Dict[str, float]) -> None:
        """Record the epoch in the history, checkpoint it and write ``history.json``."""
        self.epoch += 1
        self.start_batch = 0
        self.history.append({
            "epoch": self.epoch, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"],
            "train_examples": stats["examples"],
            "test_loss": test["loss"], "test_accuracy": test["accuracy"], "test_error": test["error"],
            "lr": self.scheduler.get_last_lr()[0], "seconds": self.totals.seconds,
        })
        self.totals = EpochTotals()
        self.save(self.epoch, 0, self.data.generator.get_state())
        if self.ctx.is_main:
            history = json.dumps(self.history, indent=1).encode()
            atomic_write(self.run_dir.history, lambda f: f.write(history))
        self.ctx.barrier()
        self.log(f"epoch {self.epoch}/{self.config.epochs}: train loss {stats['loss']:.4f}, "
                 f"train acc {100 * stats['accuracy']:.2f}%, test acc {100 * test['accuracy']:.2f}% "
                 f"({self.history[-1]['seconds']:.0f}s)")
