"""Moved to :mod:`capsedu.training.distributed`; this name stays importable."""
from .training.distributed import *  # noqa: F401,F403
from .training.distributed import __all__  # noqa: F401
