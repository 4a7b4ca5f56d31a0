"""Run an experiment's training runs resumably and record each result (:mod:`capsedu.records`).

A run is finished when its record exists: running the experiment again skips it. A run that was
interrupted (Ctrl-C, ``kill``, the end of a session) continues from ``runs/experiments/<experiment>/
<scale>/<run>/last.pt`` at the exact batch where it stopped (:func:`capsedu.train.fit` with ``resume``);
a run whose checkpoint already holds every epoch but no record (the record could not be written, or the
process stopped between the two) gets its record from that checkpoint without training again.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from capsedu import records
from capsedu._io import atomic_write
from capsedu.checkpoint import load_model
from capsedu.train import TrainConfig, fit, read_resumable, resume_differences, select_device

__all__ = ["Run", "Target", "execute", "record_path", "select", "REPO"]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    """Train epoch by epoch, measuring ``measure(model, config)`` after each, until it reaches ``level``, or until
    it has gained less than ``min_gain`` for ``patience`` epochs (a plateau); at most ``config.epochs`` epochs.

    The paper's section 5.2 protocol trains both models until the same clean accuracy; "until the curves
    flatten" is the plateau. ``measure`` must not look at the test set (e.g. accuracy on held-out training
    digits), so that the test set never decides when training stops.
    """

    measure: Callable[[torch.nn.Module, TrainConfig], float]
    name: str
    level: Optional[float] = None
    patience: Optional[int] = None
    min_gain: float = 0.0

    def __post_init__(self) -> None:
        if (self.level is None) == (self.patience is None):
            raise ValueError("a Target needs either a level or a patience")

    def reached(self, values: List[float]) -> bool:
        """Whether the measured ``values`` (one per epoch so far) end the training."""
        if self.level is not None:
            return bool(values) and values[-1] >= self.level
        if len(values) <= self.patience:
            return False
        return max(values[-self.patience:]) < max(values[:-self.patience]) + self.min_gain

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "level": self.level, "patience": self.patience, "min_gain": self.min_gain}


@dataclass
class Run:
    """One training run of an experiment.

    Attributes:
        experiment: the experiment's name (a folder under ``experiments/results``).
        name: the run's name, unique within the experiment (a file name).
        config: what :func:`capsedu.train.fit` trains (its ``output`` is set by the runner).
        scale: ``"tiny"`` (tests), ``"cpu"`` (the reduced scale of the book) or ``"paper"`` (a GPU).
        key: the facts that identify the run among the experiment's, its ``seed`` included (e.g.
            ``{"model": "capsnet", "train_size": 100, "subset_seed": 0, "seed": 0}``); tables pool the
            runs whose keys differ only in the seed.
        measure: after training, ``measure(model, config)`` returns extra numbers for the record
            (e.g. accuracy on a robustness test set).
        labels: facts for the chapters' tables that do not identify the run (e.g. the paper's number).
        until: train only until this target is reached (the record's ``extra["until"]`` traces it).
    """

    experiment: str
    name: str
    config: TrainConfig
    scale: str
    key: Dict[str, Any]
    measure: Optional[Callable[[torch.nn.Module, TrainConfig], Dict[str, Any]]] = None
    labels: Dict[str, Any] = field(default_factory=dict)
    until: Optional[Target] = None

    def __post_init__(self) -> None:
        if self.key.get("seed") != self.config.seed:
            raise ValueError(f"run {self.name}: its key's seed {self.key.get('seed')!r} is not the "
                             f"configuration's {self.config.seed}")


def record_path(run: Run, results: Path) -> Path:
    return records.record_path(results, run.experiment, run.scale, run.name)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+changes" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads" + (f", {gpu}" if gpu else "")


def _check_writable(folder: Path) -> None:
    """Fail before hours of training, not after, when the record could not be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise records.RecordError(f"cannot write records to {folder}: {exc.strerror or exc}") from None


def _position(checkpoint: Path, config: TrainConfig) -> Tuple[int, bool]:
    """``(complete epochs, whether it stopped inside the next one)`` of ``checkpoint``; ``(0, False)`` when it does
    not exist.

    Raises:
        ValueError: the checkpoint was trained with other settings than ``config``.
    """
    if not checkpoint.exists():
        return 0, False
    state, saved = read_resumable(checkpoint)
    refused, _ = resume_differences(saved, config)
    if refused:
        raise ValueError(f"{checkpoint} was trained with other settings than this run: {'; '.join(refused)}; "
                         f"move it away to train the run afresh")
    return int(state["epoch"]), int(state["step_in_epoch"]) > 0


def _read_back(checkpoint: Path, config: TrainConfig) -> Tuple[torch.nn.Module, List[Dict[str, Any]], str]:
    """The model, history and data source of a finished run from its checkpoint, the model's ``trained_amp``
    set to whether it trained under bf16 autocast (``amp="auto"`` depends on the machine; None: not recorded)."""
    model, state = load_model(checkpoint)
    model.trained_amp = state.get("amp")
    return model.to(select_device(config.device)), list(state["history"]), state.get("data_source", "full")


def _fit_to(config: TrainConfig, epochs: int, checkpoint: Path, log: Callable[[str], None], progress: bool) -> None:
    resume = checkpoint if checkpoint.exists() else None
    fit(replace(config, epochs=epochs), resume=resume, overwrite=resume is None, progress=progress, log=log)


def _train(run: Run, config: TrainConfig, checkpoint: Path, log: Callable[[str], None], progress: bool):
    """``(model, history, data source, until)`` of the finished run: trained, resumed or read back from a
    checkpoint that already holds its end (the record could not be written, or the process stopped first)."""
    name = f"{run.experiment}/{run.scale}/{run.name}"
    if run.until is None:
        if _position(checkpoint, config) != (config.epochs, False):
            log(f"{name}: " + ("resuming" if checkpoint.exists() else "training"))
            _fit_to(config, config.epochs, checkpoint, log, progress)
        return (*_read_back(checkpoint, config), None)
    # one epoch at a time, measuring after each; the trace survives interruptions beside the checkpoint
    target, trace_path = run.until, checkpoint.parent / "until.json"
    trace = json.loads(trace_path.read_text()) if trace_path.exists() else []
    while True:
        done, inside = _position(checkpoint, config)
        at_end = done > 0 and not inside
        if at_end and (not trace or trace[-1]["epoch"] != done):
            model, _, _ = _read_back(checkpoint, config)
            trace.append({"epoch": done, "value": target.measure(model, config)})
            atomic_write(trace_path, lambda f: f.write(json.dumps(trace).encode()))
            log(f"{name}: {target.name} after epoch {done}: {100 * trace[-1]['value']:.2f}%")
        reached = at_end and target.reached([t["value"] for t in trace])
        if at_end and (reached or done >= config.epochs):
            return (*_read_back(checkpoint, config), {**target.describe(), "trace": trace, "reached": reached})
        log(f"{name}: {'resuming' if inside else 'training'} epoch {done + 1} (at most {config.epochs})")
        _fit_to(config, done + 1, checkpoint, log, progress)


def execute(run: Run, results: Path, runs: Path, log: Callable[[str], None] = print,
            progress: bool = False) -> Dict[str, Any]:
    """Train ``run`` (or resume it, or record its finished checkpoint) unless its record exists; return the record.

    Raises:
        capsedu.records.RecordError: the existing record is malformed (the message names the file), or the
            results folder cannot be written.
    """
    path = record_path(run, results)
    if path.exists():
        return records.read_record(path)
    _check_writable(path.parent)
    out = runs / run.experiment / run.scale / run.name
    config = replace(run.config, output=str(out))
    checkpoint = out / "last.pt"
    start = time.perf_counter()
    model, history, data_source, until = _train(run, config, checkpoint, log, progress)
    extra = run.measure(model, config) if run.measure is not None else {}
    if until is not None:
        extra["until"] = until
    last = history[-1]
    device = str(next(model.parameters()).device)
    record = {
        "format": records.RECORD_FORMAT, "experiment": run.experiment, "run": run.name, "key": run.key,
        "scale": run.scale, "labels": run.labels, "config": config.to_dict(), "seed": config.seed,
        "epochs": len(history),
        "wall_seconds": round(time.perf_counter() - start, 1),  # this invocation (a resumed run: the rest only)
        "train_seconds": round(sum(h["seconds"] for h in history), 1),
        "device": device, "machine": _machine(device), "torch": torch.__version__, "commit": _commit(),
        "bf16_autocast": model.trained_amp,
        "data_source": data_source, "test_error": last["test_error"],
        "test_accuracy": last["test_accuracy"], "history": history, "extra": extra,
    }
    records.write_record(path, record)
    log(f"{run.experiment}/{run.scale}/{run.name}: test error {100 * last['test_error']:.2f}% -> {path}")
    return record


def select(runs: List[Run], patterns: Optional[List[str]]) -> List[Run]:
    """The runs whose names match any of ``patterns`` (shell wildcards: ``"capsnet-n100-*"``), in experiment
    order; all of them when ``patterns`` is ``None``.

    Raises:
        ValueError: a pattern matches no run (the message lists the experiment's runs).
    """
    if patterns is None:
        return list(runs)
    from fnmatch import fnmatchcase

    unmatched = [p for p in patterns if not any(fnmatchcase(r.name, p) for r in runs)]
    if unmatched:
        raise ValueError(f"--only {' '.join(unmatched)} matches no run; this experiment has "
                         f"{', '.join(r.name for r in runs)}")
    return [r for r in runs if any(fnmatchcase(r.name, p) for p in patterns)]
