"""Chapter 2: the squash non-linearity (Eq. 1 of the paper) measured three ways.

* :func:`squash_curve_1d`: squash of scalar inputs, ``v = sign(s) s^2 / (1 + s^2)`` (the slides' 1-D plot).
* :func:`squashed_lengths`: lengths of random vectors before and after squash, per dimension.
* :func:`squash_length_slope`: ``d||v|| / d||s||`` by autograd through the library's squash and by formula.

All values come from :func:`capsedu.functional.squash` itself, so they are what a CapsNet computes.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Tuple

import numpy as np
import torch
from matplotlib.axes import Axes

from ..functional import squash
from .images import ArrayLike, as_numpy

__all__ = ["squash_curve_1d", "squashed_lengths", "squash_length_slope", "plot_squash_1d", "plot_length_histograms",
           "plot_squash_gradient", "draw_squash_2d", "squash_widget"]


def squash_curve_1d(limit: float = 5.0, n: int = 401) -> Tuple[np.ndarray, np.ndarray]:
    """``(s, v)``: ``n`` scalar inputs evenly spaced in ``[-limit, limit]`` and their squash (1-D vectors)."""
    s = torch.linspace(-limit, limit, n)
    v = squash(s.unsqueeze(-1)).squeeze(-1)
    return s.numpy(), v.numpy()


def squashed_lengths(dims: Sequence[int] = (2, 8, 16), n: int = 2000, scale: float = 1.0, seed: int = 0
                     ) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """For each ``d`` in ``dims``: ``(|s|, |squash(s)|)`` of ``n`` samples ``s ~ N(0, scale^2 / d I)``.

    The ``1/d`` keeps ``E|s|^2 = scale^2`` equal across dimensions, so only the dimension changes.
    One seeded generator draws the dimensions in order.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for d in dims:
        s = torch.randn(n, d, generator=g) * scale / d ** 0.5
        out[d] = (s.norm(dim=-1).numpy(), squash(s).norm(dim=-1).numpy())
    return out


def squash_length_slope(max_norm: float = 4.0, n: int = 200) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(norms, autograd, analytic)``: ``d||v||/d||s||`` at ``n`` lengths in ``(0, max_norm]``.

    ``autograd`` differentiates the library's squash along a fixed direction (float64);
    ``analytic`` is ``2|s| / (1 + |s|^2)^2``, the derivative of the length factor of Eq. 1.
    """
    norms = torch.linspace(1e-3, max_norm, n, dtype=torch.float64)
    direction = torch.tensor([0.6, 0.8], dtype=torch.float64)  # any unit vector: the length ignores direction
    t = norms.clone().requires_grad_(True)
    lengths = squash(t.unsqueeze(-1) * direction).norm(dim=-1)
    grad, = torch.autograd.grad(lengths.sum(), t)
    analytic = 2 * norms / (1 + norms ** 2) ** 2
    return norms.numpy(), grad.numpy(), analytic.numpy()


# ----------------------------------------------------------------------------- drawing

def plot_squash_1d(ax: Axes, s: ArrayLike, v: ArrayLike):
    """The slides' 1-D squash plot of scalar inputs ``s`` and outputs ``v``, with the asymptotes ``+-1``.

    Returns the curve's ``Line2D``.
    """
    line, = ax.plot(as_numpy(s), as_numpy(v), lw=2, label="squash(s)")
    ax.axhline(1, color="gray", ls=":", lw=1)
    ax.axhline(-1, color="gray", ls=":", lw=1)
    ax.set_xlabel("s (1-D input)")
    ax.set_ylabel("v")
    return line


def plot_length_histograms(axes, lengths: Mapping[int, Tuple[ArrayLike, ArrayLike]], bins: int = 40) -> list:
    """One panel per dimension ``d``: histograms of ``|s|`` and ``|squash(s)|`` from ``{d: (len_s, len_v)}``.

    Returns the axes drawn into, in the order of ``lengths``.
    """
    drawn = []
    for ax, (d, (ls, lv)) in zip(np.atleast_1d(axes), lengths.items()):
        ax.hist(as_numpy(ls), bins=bins, alpha=0.5, label="|s|", density=True)
        ax.hist(as_numpy(lv), bins=bins, alpha=0.5, label="|v| = |squash(s)|", density=True)
        ax.axvline(1.0, color="k", ls=":", lw=1)
        ax.set_title(f"d = {d}", fontsize=9)
        drawn.append(ax)
    return drawn


def plot_squash_gradient(ax: Axes, norms: ArrayLike, autograd: ArrayLike, analytic: ArrayLike, every: int = 8):
    """``d|v|/d|s|`` against ``|s|``: the analytic slope as a line, every ``every``-th autograd value as a point.

    Returns ``(line, points)``.
    """
    norms, autograd, analytic = as_numpy(norms), as_numpy(autograd), as_numpy(analytic)
    line, = ax.plot(norms, analytic, lw=2, label="analytic 2|s|/(1+|s|²)²")
    points, = ax.plot(norms[::every], autograd[::every], "o", ms=4, label="autograd")
    ax.set_xlabel("|s|")
    ax.set_ylabel("d|v| / d|s|")
    return line, points


def draw_squash_2d(ax: Axes, s: ArrayLike, v: ArrayLike, limit: float = 3.0) -> Dict[str, object]:
    """Draw a 2-D vector ``s``, its squash ``v`` and the unit circle (clears ``ax`` first).

    Returns ``{"arrows": [s arrow, v arrow], "circle": line}``.
    """
    s, v = as_numpy(s).reshape(2), as_numpy(v).reshape(2)
    ax.clear()
    t = np.linspace(0, 2 * np.pi, 200)
    circle, = ax.plot(np.cos(t), np.sin(t), color="gray", ls=":", lw=1)
    arrows = [ax.annotate("", xy=tuple(float(a) for a in vec), xytext=(0, 0),
                          arrowprops=dict(arrowstyle="->", lw=lw, color=col))
              for vec, lw, col in ((s, 1.5, "C0"), (v, 3, "C3"))]
    ax.plot([], [], color="C0", label=f"s, |s| = {float(np.hypot(*s)):.2f}")
    ax.plot([], [], color="C3", lw=3, label=f"v = squash(s), |v| = {float(np.hypot(*v)):.3f}")
    ax.legend(loc="lower left", fontsize=9)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    return {"arrows": arrows, "circle": circle}


# ----------------------------------------------------------------------------- widget

def squash_widget(x: float = 1.0, y: float = 0.5, limit: float = 3.0,
                  snapshots: Sequence[Mapping[str, Any]] = ({"x": 0.4, "y": 0.3}, {"x": 2.0, "y": 1.0})):
    """Chapter 2: set a 2-D vector ``s = (x, y)`` with two sliders in ``[-limit, limit]``; see ``s``,
    ``v = squash(s)`` (Eq. 1) and the unit circle.

    ``state``: ``s``, ``v`` (tensors of shape (2,)), ``length_s``, ``length_v``.
    """
    from .interactive import InteractiveFigure, control_row, new_figure
    import ipywidgets as W

    controls = {"x": W.FloatSlider(x, min=-limit, max=limit, step=0.05, description="s_x"),
                "y": W.FloatSlider(y, min=-limit, max=limit, step=0.05, description="s_y")}
    fig, ax = new_figure(1, 4.5, 4.5)
    out = W.Output()

    def compute(values):
        s = torch.tensor([values["x"], values["y"]], dtype=torch.float32)
        v = squash(s)
        draw_squash_2d(ax, s, v, limit=limit)
        return {"s": s, "v": v, "length_s": float(s.norm()), "length_v": float(v.norm())}

    def describe(v, state):
        return f"s = ({v['x']:.2f}, {v['y']:.2f}): |s| = {state['length_s']:.2f} -> |v| = {state['length_v']:.3f}"

    box = InteractiveFigure([control_row(list(controls.values())), out], compute, controls, figure=fig, output=out,
                           snapshots=snapshots, describe=describe)
    box.update()
    return box
