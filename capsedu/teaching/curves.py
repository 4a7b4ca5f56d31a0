"""Chapters 5 and 6: running means of per-step training histories, for readable learning curves."""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

__all__ = ["running_mean", "smooth_histories"]


def running_mean(values: Sequence[float], window: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(steps, means)``: the mean of each ``window`` consecutive values, placed at the window's last step.

    ``window`` is clipped to ``[1, len(values)]``, so a short run still gives one point.
    """
    y = np.asarray(values, dtype=float)
    k = max(1, min(window, len(y)))
    means = np.convolve(y, np.ones(k) / k, mode="valid")
    return np.arange(len(means)) + k - 1, means


def smooth_histories(histories: Mapping[str, Mapping[str, Sequence[float]]], window: int = 5,
                     keys: Sequence[str] = ("loss", "accuracy")) -> Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]]:
    """``{run: {key: running_mean(history[key], window)}}`` for runs like ``{name: {"loss": [...], ...}}``."""
    return {name: {key: running_mean(h[key], window) for key in keys} for name, h in histories.items()}
