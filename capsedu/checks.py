"""Argument checks shared by the library: one place for the messages a user sees after a mistake."""
from __future__ import annotations

import math
from typing import Any, Optional

__all__ = ["check_int", "check_number"]


def _fails(value: Any, kind: str, name: str, bound: str) -> ValueError:
    return ValueError(" ".join(f"{name} must be {kind} {bound}".split()) + f", got {value!r}")


def check_int(value: Any, name: str, low: Optional[int] = 0, high: Optional[int] = None) -> int:
    """``value`` if it is a plain integer (not a bool) in ``[low, high]``; else a ``ValueError`` naming ``name``.

    Args:
        value: what the caller passed.
        name: how the message names it (an argument, a field or a command-line flag).
        low, high: inclusive bounds; ``None`` for none.
    """
    ok = not isinstance(value, bool) and isinstance(value, int)  # bool subclasses int: True would pass as 1
    if ok and (low is None or value >= low) and (high is None or value <= high):
        return value
    bound = f"in [{low}, {high}]" if low is not None and high is not None else (
        f">= {low}" if low is not None else (f"<= {high}" if high is not None else ""))
    raise _fails(value, "an integer", name, bound)


def check_number(value: Any, name: str, low: Optional[float] = None, high: Optional[float] = None,
                 low_open: bool = False) -> float:
    """``float(value)`` if it is a finite real number (not a bool) in the bounds; else a ``ValueError`` naming ``name``.

    Args:
        low, high: inclusive bounds, ``None`` for none; ``low_open`` makes ``low`` exclusive (``> 0``).
    """
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high):
        return float(value)
    opening = "(" if low_open else "["
    bound = f"in {opening}{low}, {high}]" if low is not None and high is not None else (
        f"{'>' if low_open else '>='} {low}" if low is not None else (f"<= {high}" if high is not None else ""))
    raise _fails(value, "a finite number", name, bound)
