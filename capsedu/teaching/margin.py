"""Chapter 5: the margin loss (Eq. 4 of the paper) of one digit capsule against its length."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from ..losses import margin_loss

__all__ = ["margin_loss_curves", "plot_margin_loss", "margin_loss_widget"]


def margin_loss_curves(m_pos: float = 0.9, m_neg: float = 0.1, lam: float = 0.5,
                       lengths: Optional[Union[torch.Tensor, Sequence[float]]] = None) -> Dict[str, object]:
    """Loss of one digit capsule (Eq. 4) and its derivative against its length ``||v||``.

    Computed with :func:`capsedu.losses.margin_loss` itself (one class, batch of lengths), so the
    curves are exactly what training sees. ``lengths`` defaults to 201 points in [0, 1].
    Returns numpy arrays ``lengths, present, absent, d_present, d_absent`` (present: ``T_k = 1``,
    absent: ``T_k = 0``; ``d_``: slope ``dL_k / d||v_k||``) and the settings ``m_pos, m_neg, lam``.
    """
    if lengths is None:
        lengths = torch.linspace(0.0, 1.0, 201)
    lengths = torch.as_tensor(lengths, dtype=torch.float32)
    out: Dict[str, object] = {"lengths": lengths.numpy().copy(), "m_pos": m_pos, "m_neg": m_neg, "lam": lam}
    for name, target in (("present", 1.0), ("absent", 0.0)):
        t = torch.full((1, 1), target)                                   # multi-hot target of one class
        with torch.no_grad():                                            # value: one example at a time
            out[name] = np.array([float(margin_loss(l.reshape(1, 1), t, m_pos, m_neg, lam)) for l in lengths])
        # slope: treat the n lengths as n classes of one example; the loss sums over classes and each
        # term depends on its own length only, so the gradient holds every class's own derivative.
        x = lengths.clone().reshape(1, -1).requires_grad_(True)          # (1, n)
        grad, = torch.autograd.grad(margin_loss(x, t.expand_as(x), m_pos, m_neg, lam), x)
        out["d_" + name] = grad.reshape(-1).numpy()
    return out


# ----------------------------------------------------------------------------- drawing

def plot_margin_loss(curves: Mapping[str, object], ax: Optional[Axes] = None, gradients: bool = False):
    """The slides' plot: loss of a present and of an absent class against ``||v||`` (or, with
    ``gradients``, their slopes), from :func:`capsedu.teaching.margin.margin_loss_curves`.

    Returns ``(present line, absent line)``.
    """
    m_pos, m_neg = curves["m_pos"], curves["m_neg"]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    key_p, key_a = ("d_present", "d_absent") if gradients else ("present", "absent")
    present, = ax.plot(curves["lengths"], curves[key_p],
                       label=f"present class (T=1), zero for ||v|| >= m+ = {m_pos:.2f}")
    absent, = ax.plot(curves["lengths"], curves[key_a],
                      label=f"absent class (T=0), zero for ||v|| <= m- = {m_neg:.2f}")
    ax.axvline(m_pos, color="C0", ls=":", lw=1)
    ax.axvline(m_neg, color="C1", ls=":", lw=1)
    ax.set_xlabel("capsule length ||v||")
    ax.set_ylabel("dL/d||v||" if gradients else "loss L_k")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return present, absent


# ----------------------------------------------------------------------------- widget

def margin_loss_widget(m_pos: float = 0.9, m_neg: float = 0.1, lam: float = 0.5,
                       snapshots: Sequence[Mapping[str, Any]] = ({"m_pos": 0.9, "m_neg": 0.1, "lam": 0.5},
                                                                 {"m_pos": 0.9, "m_neg": 0.1, "lam": 1.0},
                                                                 {"m_pos": 0.6, "m_neg": 0.4, "lam": 0.5})):
    """Chapter 5: sliders for m+, m- and lambda redraw the loss of a present and an absent class (Eq. 4).

    ``state``: the arrays and settings of :func:`capsedu.teaching.margin.margin_loss_curves`, and ``figure``.
    """
    from .interactive import InteractiveFigure, control_row, new_figure
    import ipywidgets as W

    controls = {
        "m_pos": W.FloatSlider(value=m_pos, min=0.5, max=1.0, step=0.05, description="m+"),
        "m_neg": W.FloatSlider(value=m_neg, min=0.0, max=0.5, step=0.05, description="m-"),
        "lam": W.FloatSlider(value=lam, min=0.0, max=1.0, step=0.05, description="lambda"),
    }
    output = W.Output()
    fig, axes = new_figure(2, 8.6, 3.4)     # at most the book's column wide, so that its text stays 11+ px
    fig.subplots_adjust(wspace=0.3)

    def compute(values):
        curves = margin_loss_curves(values["m_pos"], values["m_neg"], values["lam"])
        for ax in axes:
            ax.clear()
        lines = plot_margin_loss(curves, ax=axes[0])
        plot_margin_loss(curves, ax=axes[1], gradients=True)
        for ax in axes:                         # one legend for both panels, below them, instead of two inside
            ax.get_legend().remove()
        for legend in list(fig.legends):
            legend.remove()
        fig.legend(lines, [line.get_label() for line in lines], loc="upper center", ncol=1, fontsize=9,
                   bbox_to_anchor=(0.5, 0.0))
        axes[0].set_title("loss of one digit capsule (Eq. 4)", fontsize=10)
        axes[1].set_title("its slope: the push on ||v|| in training", fontsize=10)
        return {**curves, "figure": fig}

    def describe(v, _state):
        return f"m+ = {v['m_pos']:.2f}, m- = {v['m_neg']:.2f}, lambda = {v['lam']:.2f}"

    box = InteractiveFigure([control_row(list(controls.values())), output], compute, controls, figure=fig,
                           output=output, snapshots=snapshots, describe=describe)
    box.update()
    return box
