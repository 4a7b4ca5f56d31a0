"""Chapters 5 and 6: running means of per-step training histories, for readable learning curves."""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import matplotlib.pyplot as plt
import numpy as np

from .images import ArrayLike

__all__ = ["running_mean", "smooth_histories", "plot_training_curves"]


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


# ----------------------------------------------------------------------------- drawing

def plot_training_curves(smoothed: Mapping[str, Mapping[str, Tuple[ArrayLike, ArrayLike]]], axes=None
                         ) -> Dict[str, list]:
    """Loss and accuracy per step for several runs, as from :func:`capsedu.teaching.curves.smooth_histories`
    (``{run: {"loss": (steps, values), "accuracy": (steps, values)}}``). Returns ``{run: [loss line, accuracy line]}``.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    drawn = {}
    for name, h in smoothed.items():
        drawn[name] = [ax.plot(*h[key], label=name)[0] for ax, key in zip(axes, ("loss", "accuracy"))]
    axes[0].set_ylabel("training loss (own scale per run)")
    axes[1].set_ylabel("training-batch accuracy")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=10)
        ax.grid(alpha=0.3)
    return drawn
