"""Run an experiment's training runs resumably and record each result as JSON.

A run is finished when its record exists: running the experiment again skips it. A run that was
interrupted (Ctrl-C, ``kill``, the end of a session) continues from ``runs/experiments/<experiment>/
<run>/last.pt`` at the exact batch where it stopped (:func:`capsedu.train.fit` with ``resume``).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from capsedu._io import atomic_write
from capsedu.teaching.records import load_records  # the chapter reads records with the same function
from capsedu.train import TrainConfig, fit

__all__ = ["Run", "RECORD_FORMAT", "execute", "record_path", "load_records", "validate_record", "REPO"]

REPO = Path(__file__).resolve().parent.parent
RECORD_FORMAT = "capsedu-experiment-record-v1"

#: keys every record holds (validated by :func:`validate_record`)
RECORD_KEYS = ("format", "experiment", "run", "scale", "config", "seed", "epochs", "wall_seconds",
               "train_seconds", "device", "machine", "torch", "commit", "test_error", "test_accuracy",
               "history", "extra")


@dataclass
class Run:
    """One training run of an experiment.

    Attributes:
        experiment: the experiment's name (a folder under ``experiments/results``).
        name: the run's name, unique within the experiment (a file name).
        config: what :func:`capsedu.train.fit` trains (its ``output`` is set by the runner).
        scale: ``"tiny"`` (tests), ``"cpu"`` (the reduced scale of the book) or ``"paper"`` (a GPU).
        measure: after training, ``measure(model, config)`` returns extra numbers for the record
            (e.g. accuracy on a robustness test set).
        labels: free-form facts for the chapters' tables (e.g. ``{"routing": 3, "reconstruction": True}``).
    """

    experiment: str
    name: str
    config: TrainConfig
    scale: str
    measure: Optional[Callable[[torch.nn.Module, TrainConfig], Dict[str, Any]]] = None
    labels: Dict[str, Any] = field(default_factory=dict)


def record_path(run: Run, results: Path) -> Path:
    return results / run.experiment / run.scale / f"{run.name}.json"


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


def execute(run: Run, results: Path, runs: Path, log: Callable[[str], None] = print,
            progress: bool = False) -> Dict[str, Any]:
    """Train ``run`` (or resume it) unless its record exists; return the record."""
    path = record_path(run, results)
    if path.exists():
        return json.loads(path.read_text())
    out = runs / run.experiment / run.scale / run.name
    config = replace(run.config, output=str(out))
    checkpoint = out / "last.pt"
    resume = checkpoint if checkpoint.exists() else None
    log(f"{run.experiment}/{run.scale}/{run.name}: " + ("resuming" if resume else "training"))
    start = time.perf_counter()
    result = fit(config, resume=resume, overwrite=resume is None, progress=progress, log=log)
    extra = run.measure(result.model, config) if run.measure is not None else {}
    last = result.history[-1]
    device = str(next(result.model.parameters()).device)
    record = {
        "format": RECORD_FORMAT, "experiment": run.experiment, "run": run.name, "scale": run.scale,
        "labels": run.labels, "config": asdict(config), "seed": config.seed, "epochs": len(result.history),
        "wall_seconds": round(time.perf_counter() - start, 1),  # this invocation (a resumed run: the rest only)
        "train_seconds": round(sum(h["seconds"] for h in result.history), 1),
        "device": device, "machine": _machine(device), "torch": torch.__version__, "commit": _commit(),
        "data_source": result.data_source, "test_error": last["test_error"],
        "test_accuracy": last["test_accuracy"], "history": result.history, "extra": extra,
    }
    atomic_write(path, lambda f: f.write((json.dumps(record, indent=1) + "\n").encode()))
    log(f"{run.experiment}/{run.scale}/{run.name}: test error {100 * last['test_error']:.2f}% -> {path}")
    return record


def validate_record(record: Dict[str, Any]) -> None:
    """Raise ``ValueError`` naming what is wrong with a record (used by the tests on every committed one)."""
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"record lacks {missing}")
    if record["format"] != RECORD_FORMAT:
        raise ValueError(f"unknown record format {record['format']!r}")
    if not 0.0 <= record["test_error"] <= 1.0 or abs(record["test_error"] + record["test_accuracy"] - 1) > 1e-9:
        raise ValueError(f"test_error {record['test_error']} and test_accuracy {record['test_accuracy']} disagree")
    if record["epochs"] != len(record["history"]) or not record["history"]:
        raise ValueError("epochs does not match the history")
    if record["history"][-1]["test_error"] != record["test_error"]:
        raise ValueError("test_error is not the last epoch's")
    TrainConfig(**record["config"]).validate()
