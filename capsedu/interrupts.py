"""Moved to :mod:`capsedu.training.interrupts`; this name stays importable."""
from .training.interrupts import *  # noqa: F401,F403
from .training.interrupts import __all__  # noqa: F401
