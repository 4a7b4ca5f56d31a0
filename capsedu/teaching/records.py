"""Recorded experiment runs, read and summarised for the experiments chapter.

The runs themselves are made by ``python -m experiments.run EXPERIMENT --scale SCALE`` (the repository's
``experiments/`` folder), which writes one JSON record per run to
``experiments/results/<experiment>/<scale>/<run>.json``. This module only reads them: the chapter's tables
are computed from the records, never typed in.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

__all__ = ["RESULTS", "load_records", "RowSummary", "summarize", "inside_spread", "format_percent"]

#: The repository's recorded results (override with ``CAPSEDU_RESULTS``).
RESULTS = Path(os.environ.get("CAPSEDU_RESULTS", Path(__file__).resolve().parents[2] / "experiments" / "results"))


def load_records(experiment: str, scale: str, results: Optional[Path] = None) -> List[Dict[str, Any]]:
    """Every record of ``experiment`` at ``scale``, sorted by run name (an empty list when none exist)."""
    folder = Path(results or RESULTS) / experiment / scale
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@dataclass(frozen=True)
class RowSummary:
    """Test error over the seeds of one row of a table, in percent."""

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


def summarize(records: Iterable[Dict[str, Any]], key: Callable[[Dict[str, Any]], Any],
              label: Callable[[Dict[str, Any]], str] = lambda r: r["run"],
              value: Callable[[Dict[str, Any]], float] = lambda r: r["test_error"],
              order: Optional[Sequence[Any]] = None) -> List[RowSummary]:
    """Group ``records`` by ``key(record)`` and summarise ``value(record)`` (a fraction) per group in percent.

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
