"""The recorded experiment runs, as the chapters read them.

The records and their format belong to :mod:`capsedu.records`; this module is the chapters' import point
for the reading and summarising half of it (``from capsedu.teaching.records import load_records, ...``).
The runs are made by ``python -m experiments.run EXPERIMENT --scale SCALE``; the chapters' tables are
computed from the records, never typed in.
"""
from __future__ import annotations

from ..records import RowSummary, examples_seen, format_percent, group_of, inside_spread, load_records, summarize

__all__ = ["load_records", "group_of", "examples_seen", "RowSummary", "summarize", "inside_spread", "format_percent"]
