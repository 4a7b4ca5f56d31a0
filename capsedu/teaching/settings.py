"""Run-time settings read from the environment (read on every call: no hidden global state).

``CAPSEDU_TEST_MODE=1`` makes the book's chapters use small data and few steps so each executes
in about a minute on 2 CPU cores (the test suite sets it); unset, chapters run at reading size.
"""
from __future__ import annotations

import os
from typing import TypeVar

__all__ = ["TEST_MODE_ENV", "test_mode", "pick"]

TEST_MODE_ENV = "CAPSEDU_TEST_MODE"
T = TypeVar("T")


def test_mode() -> bool:
    """True when ``CAPSEDU_TEST_MODE`` is set to something other than ``""``, ``0``, ``false`` or ``no``."""
    return os.environ.get(TEST_MODE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def pick(reading: T, test: T) -> T:
    """``reading`` normally, ``test`` in test mode: ``steps = pick(600, 40)``."""
    return test if test_mode() else reading
