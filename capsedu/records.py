"""Experiment records: one JSON file per finished training run, written, checked, read and summarised here.

``python -m experiments.run`` writes them (:func:`write_record`), ``python -m experiments.summary`` and the
chapters read them (:func:`load_records`, :func:`summarize`). A record lives at
``<results>/<experiment>/<scale>/<run>.json`` and names its run twice: ``run``, a file name, and ``key``, the
facts that identify the run (e.g. ``{"row": "capsnet-r3-recon", "seed": 0}``); tables group records by their
key without the seed (:func:`group_of`), never by parsing names.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ._io import atomic_write

__all__ = ["RECORD_FORMAT", "RECORD_KEYS", "RecordError", "record_path", "validate_record", "write_record",
           "read_record", "find_results", "load_records", "group_of", "examples_seen", "RowSummary", "summarize",
           "inside_spread", "format_percent"]

RECORD_FORMAT = "capsedu-experiment-record-v2"

#: keys every record holds (checked by :func:`validate_record`)
RECORD_KEYS = ("format", "experiment", "run", "key", "scale", "config", "seed", "epochs", "wall_seconds",
               "train_seconds", "device", "machine", "torch", "commit", "test_error", "test_accuracy",
               "history", "labels", "extra")

#: where :func:`find_results` looks first
RESULTS_ENV = "CAPSEDU_RESULTS"

PathLike = Union[str, os.PathLike]


class RecordError(ValueError):
    """A record that is missing, unreadable or malformed; the message names the file when there is one."""


def record_path(results: PathLike, experiment: str, scale: str, run: str) -> Path:
    """``results/experiment/scale/run.json``."""
    return Path(results) / experiment / scale / f"{run}.json"


def validate_record(record: Any) -> None:
    """Raise :class:`RecordError` saying what is wrong with ``record`` (a parsed record), in one line."""
    if not isinstance(record, dict):
        raise RecordError(f"a record is a JSON object, got {type(record).__name__}")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise RecordError(f"record lacks {missing}")
    if record["format"] != RECORD_FORMAT:
        raise RecordError(f"unknown record format {record['format']!r} (expected {RECORD_FORMAT!r})")
    key = record["key"]
    if not isinstance(key, dict) or key.get("seed") != record["seed"]:
        raise RecordError(f"key {key!r} must be an object whose seed is the record's ({record['seed']!r})")
    error, accuracy = record["test_error"], record["test_accuracy"]
    if not all(isinstance(v, (int, float)) for v in (error, accuracy)) or not 0.0 <= error <= 1.0 \
            or abs(error + accuracy - 1) > 1e-9:
        raise RecordError(f"test_error {error!r} and test_accuracy {accuracy!r} disagree")
    history = record["history"]
    if not isinstance(history, list) or not history or record["epochs"] != len(history):
        raise RecordError("epochs does not match the history")
    if history[-1].get("test_error") != error:
        raise RecordError("test_error is not the last epoch's")
    from .train import TrainConfig  # the training code imports torch; keep reading records light

    try:
        TrainConfig.from_dict(record["config"]).validate()
    except (TypeError, ValueError) as exc:
        raise RecordError(f"config is not a valid training configuration: {exc}") from None


def write_record(path: PathLike, record: Dict[str, Any]) -> Path:
    """Check ``record`` and write it to ``path`` atomically (a reader never sees half a file)."""
    validate_record(record)
    return atomic_write(path, lambda f: f.write((json.dumps(record, indent=1) + "\n").encode()))


def read_record(path: PathLike) -> Dict[str, Any]:
    """The checked record in ``path``; :class:`RecordError` naming the file when it cannot be read or is wrong."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: cannot read the record ({exc})") from None
    try:
        validate_record(record)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None
    return record


def find_results(start: Optional[PathLike] = None) -> Path:
    """The folder of recorded results: ``$CAPSEDU_RESULTS``, else ``experiments/results`` in ``start`` (default:
    the working directory) or the nearest folder above it, else in the source checkout this package runs from.

    Raises:
        RecordError: none of these exists (an installed package has no records: set ``CAPSEDU_RESULTS``).
    """
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[1]):
        if (folder / "experiments" / "results").is_dir():
            return folder / "experiments" / "results"
    raise RecordError(f"no experiments/results folder in or above {here}: set {RESULTS_ENV} to the records' folder")


def load_records(experiment: str, scale: str, results: Optional[PathLike] = None) -> List[Dict[str, Any]]:
    """Every checked record of ``experiment`` at ``scale``, sorted by file name; ``[]`` when there are none.

    ``results`` defaults to :func:`find_results`. A malformed record is a :class:`RecordError` naming its file.
    """
    folder = Path(results if results is not None else find_results()) / experiment / scale
    return [read_record(p) for p in sorted(folder.glob("*.json"))]


def group_of(record: Dict[str, Any]) -> Tuple[Tuple[str, Any], ...]:
    """The record's key without its seed, as sorted ``(name, value)`` pairs: the runs one table row pools."""
    return tuple(sorted((k, v) for k, v in record["key"].items() if k != "seed"))


def examples_seen(record: Dict[str, Any]) -> int:
    """Training examples the run actually processed, summed over its history's epochs."""
    return sum(int(epoch["train_examples"]) for epoch in record["history"])


@dataclass(frozen=True)
class RowSummary:
    """One number (in percent) over the seeds of one row of a table."""

    key: Any
    label: str
    errors: tuple          # per seed, percent, in seed order
    seeds: tuple
    paper: Optional[float] = None
    paper_std: Optional[float] = None

    @property
    def n(self) -> int:
        return len(self.errors)

    @property
    def mean(self) -> float:
        return sum(self.errors) / self.n

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1), as "mean +- std over 3 trials" is usually reported; 0 for one seed."""
        if self.n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((e - m) ** 2 for e in self.errors) / (self.n - 1))


def summarize(records: Iterable[Dict[str, Any]], key: Callable[[Dict[str, Any]], Any] = group_of,
              label: Callable[[Dict[str, Any]], str] = lambda r: r["run"],
              value: Callable[[Dict[str, Any]], float] = lambda r: r["test_error"],
              order: Optional[Sequence[Any]] = None) -> List[RowSummary]:
    """Group ``records`` by ``key(record)`` (default: :func:`group_of`) and summarise ``value(record)`` (a
    fraction) per group in percent.

    ``order`` fixes the rows' order (keys not in it follow, sorted); paper numbers come from the records'
    ``labels`` (``paper_error``, ``paper_std``) when they carry them.
    """
    groups: Dict[Any, List[Dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    keys = [k for k in (order or []) if k in groups] + sorted((k for k in groups if k not in (order or [])), key=str)
    rows = []
    for k in keys:
        members = sorted(groups[k], key=lambda r: r["seed"])
        labels = members[0].get("labels", {})
        rows.append(RowSummary(k, label(members[0]), tuple(100 * value(r) for r in members),
                               tuple(r["seed"] for r in members), labels.get("paper_error"), labels.get("paper_std")))
    return rows


def inside_spread(a: RowSummary, b: RowSummary) -> bool:
    """Whether two rows' means differ by less than their seed-to-seed spread (``std_a + std_b``).

    A deliberately lenient yardstick for three seeds: a difference inside it is not evidence of anything.
    With a single seed there is no spread to compare with, so every difference counts as inside it.
    """
    if a.n < 2 or b.n < 2:
        return True
    return abs(a.mean - b.mean) < a.std + b.std


def format_percent(row: RowSummary, digits: int = 2) -> str:
    """``"0.71 +- 0.05 %"`` (or ``"0.71 %"`` for one seed)."""
    if row.n < 2:
        return f"{row.mean:.{digits}f} %"
    return f"{row.mean:.{digits}f} +- {row.std:.{digits}f} %"
