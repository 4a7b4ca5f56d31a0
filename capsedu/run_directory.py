"""Moved to :mod:`capsedu.training.run_directory`; this name stays importable."""
from .training.run_directory import *  # noqa: F401,F403
from .training.run_directory import __all__  # noqa: F401
