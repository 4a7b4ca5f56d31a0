"""Moved to :mod:`capsedu.training.objectives`; this name stays importable."""
from .training.objectives import *  # noqa: F401,F403
from .training.objectives import __all__  # noqa: F401
