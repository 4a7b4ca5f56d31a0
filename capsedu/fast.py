"""Moved to :mod:`capsedu.training.speed`; this name stays importable."""
from .training.speed import *  # noqa: F401,F403
from .training.speed import __all__  # noqa: F401
