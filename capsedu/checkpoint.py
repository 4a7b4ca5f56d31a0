"""Moved to :mod:`capsedu.training.checkpoint`; this name stays importable."""
from .training.checkpoint import *  # noqa: F401,F403
from .training.checkpoint import __all__  # noqa: F401
