"""Chapter 3: routing by agreement, measured.

* :func:`coincidence_probability`, :func:`coincidence_monte_carlo`, :func:`coincidence_curves`: how
  unlikely it is that random predictions agree in d dimensions (the slides' "high-dimensional coincidence").
* :func:`toy_votes`: a handful of 2-D prediction vectors ``u_hat_{j|i}`` with one agreeing cluster
  per parent and an outlier, for routing by hand.
* :func:`routing_convergence`: what each routing iteration of a :class:`capsedu.routing.RoutingTrace`
  changes: the logits (paper Appendix A, Fig. A.1), and the couplings and outputs, iteration against
  the one before (whether routing settles).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes

from .images import ArrayLike, as_numpy, draw_flow

if TYPE_CHECKING:
    from ..routing import RoutingTrace

__all__ = ["coincidence_probability", "coincidence_monte_carlo", "coincidence_curves", "toy_votes",
           "routing_convergence", "plot_coincidence", "plot_votes", "plot_couplings", "plot_routing_dynamics",
           "draw_capsule_schema", "routing_widget"]


# ----------------------------------------------------------------------------- high-dimensional coincidence

def coincidence_probability(dim: int, cos_threshold: float = 0.9, steps: int = 20001) -> float:
    """P(cos(angle) > cos_threshold) for two independent uniformly random directions in ``dim`` dimensions.

    The angle phi between them has density proportional to ``sin(phi)**(dim - 2)`` on [0, pi];
    integrated numerically (trapezoid rule on ``steps`` points).
    """
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")

    def integral(upper: float) -> torch.Tensor:
        phi = torch.linspace(0.0, upper, steps, dtype=torch.float64)
        return torch.trapezoid(torch.sin(phi) ** (dim - 2), phi)

    return float(integral(math.acos(cos_threshold)) / integral(math.pi))


def coincidence_monte_carlo(dim: int, cos_threshold: float = 0.9, n: int = 100_000, seed: int = 0) -> float:
    """Monte Carlo estimate of :func:`coincidence_probability` from ``n`` random pairs."""
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    b = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    return float(((a * b).sum(1) > cos_threshold).double().mean())


def coincidence_curves(dims: Iterable[int] = range(2, 17), thresholds: Sequence[float] = (0.8, 0.9, 0.95)
                       ) -> Dict[float, np.ndarray]:
    """``{threshold: P(cos > threshold) for each d in dims}``, from :func:`coincidence_probability`."""
    dims = list(dims)
    return {t: np.array([coincidence_probability(d, t) for d in dims]) for t in thresholds}


# ----------------------------------------------------------------------------- toy routing votes

def toy_votes(seed: int = 0, noise: float = 0.12) -> Tuple[torch.Tensor, Dict[str, object]]:
    """Seven children voting for three parents with 2-D predictions: ``u_hat (1, 7, 3, 2)``.

    * children 0-3 agree about parent 0 (votes near (1.2, 0.9));
    * children 4-5 agree about parent 1 (votes near (-1.0, 1.1));
    * child 6 is an outlier: its vote for parent 0 points away from the cluster, the others are random;
    * every other vote is a random direction with a length in [0.3, 0.8], so parent 2 gets no agreement.

    ``noise`` is the standard deviation of the agreeing votes around their centre.
    Returns ``(u_hat, info)`` with ``info["groups"] = {parent: [children]}``, ``info["outlier"]``
    and ``info["centres"] = {parent: centre (2,)}``.
    """
    g = torch.Generator().manual_seed(seed)
    n_in, n_out = 7, 3
    angles = torch.rand(n_in, n_out, generator=g) * 2 * math.pi
    lengths = 0.3 + 0.5 * torch.rand(n_in, n_out, generator=g)
    u = torch.stack([torch.cos(angles), torch.sin(angles)], -1) * lengths.unsqueeze(-1)  # (n_in, n_out, 2)
    centres = {0: torch.tensor([1.2, 0.9]), 1: torch.tensor([-1.0, 1.1])}
    groups = {0: [0, 1, 2, 3], 1: [4, 5]}
    for j, children in groups.items():
        for i in children:
            u[i, j] = centres[j] + noise * torch.randn(2, generator=g)
    u[6, 0] = torch.tensor([-0.9, -0.6])  # the outlier's vote for parent 0 points away from the cluster
    return u.unsqueeze(0), {"groups": groups, "outlier": 6, "centres": centres}


# ----------------------------------------------------------------------------- how routing settles

def routing_convergence(trace: RoutingTrace) -> Dict[str, np.ndarray]:
    """What each of the ``r`` iterations recorded in ``trace`` changed.

    Returns numpy arrays, all means over examples, children and parents:

    * ``logit_change (r,)``: ``|b^(k) - b^(k-1)|``, what iteration k added to the logits (line 7 of
      Procedure 1 adds the agreement ``u_hat . v^(k)``; the paper's Fig. A.1 plots this quantity);
    * ``logit_change_step (r-1,)``: ``|(b^(k) - b^(k-1)) - (b^(k-1) - b^(k-2))|`` for k = 2..r, how much
      that addition itself changed (it is ``|u_hat . (v^(k) - v^(k-1))|``);
    * ``coupling_step (r-1,)``: ``|c^(k) - c^(k-1)|`` for k = 2..r, the couplings of iteration k against
      those of the iteration before;
    * ``output_step (r-1,)``: ``||v^(k) - v^(k-1)||`` for k = 2..r, the same for the outputs;
    * ``longest_output (r,)``: the length of each example's longest parent ``max_j ||v_j^(k)||``.

    Successive differences, not distances from the last iteration: a distance from iteration r falls to
    zero at k = r whatever routing does, so only the steps show whether it settles.
    """
    added = [b1 - b0 for b0, b1 in zip(trace.logits[:-1], trace.logits[1:])]       # r tensors (batch, n_in, n_out)
    return {
        "logit_change": trace.logit_changes().numpy(),
        "logit_change_step": np.array([float((a1 - a0).abs().mean()) for a0, a1 in zip(added[:-1], added[1:])]),
        "coupling_step": np.array([float((c1 - c0).abs().mean())
                                   for c0, c1 in zip(trace.couplings[:-1], trace.couplings[1:])]),
        "output_step": np.array([float((v1 - v0).norm(dim=-1).mean())
                                 for v0, v1 in zip(trace.outputs[:-1], trace.outputs[1:])]),
        "longest_output": np.array([float(v.norm(dim=-1).max(dim=-1).values.mean()) for v in trace.outputs]),
    }


# ----------------------------------------------------------------------------- drawing

def plot_coincidence(ax: Axes, dims: Sequence[int], curves: Mapping[float, ArrayLike]) -> list:
    """P(two random directions have cosine > t) against dimension, log scale, one line per threshold ``t``.

    ``curves`` as from :func:`capsedu.teaching.agreement.coincidence_curves` over the same ``dims``.
    Returns the lines.
    """
    dims = list(dims)
    lines = [ax.semilogy(dims, as_numpy(p), "o-", ms=3, label=f"cos > {t}")[0] for t, p in curves.items()]
    ax.set_xlabel("dimension of the prediction vectors")
    ax.set_ylabel("P(agreement by chance)")
    return lines


def plot_votes(axes, u_hat: ArrayLike, couplings: ArrayLike, outputs: ArrayLike, limit: float = 2.0) -> list:
    """One panel per parent j: the 2-D votes ``u_hat_{j|i}`` as arrows whose width and opacity grow
    with ``c_ij``, and the output ``v_j`` as a thick red arrow.

    ``u_hat (n_in, n_out, 2)``, ``couplings (n_in, n_out)``, ``outputs (n_out, 2)`` (one example).
    Returns the list of panels' vote arrows ``[[FancyArrow per child] per parent]``.
    """
    u_hat, couplings, outputs = as_numpy(u_hat), as_numpy(couplings), as_numpy(outputs)
    n_in, n_out = couplings.shape
    drawn = []
    for j, ax in enumerate(np.atleast_1d(axes)[:n_out]):
        ax.clear()
        arrows = []
        for i in range(n_in):
            c = float(couplings[i, j])
            x, y = (float(a) for a in u_hat[i, j])
            arrows.append(ax.arrow(0, 0, x, y, width=0.005 + 0.05 * c, alpha=0.15 + 0.85 * c, color=f"C{i % 10}",
                                   length_includes_head=True, head_width=0.06 + 0.1 * c))
            ax.annotate(str(i), (x, y), fontsize=11, color=f"C{i % 10}")
        vx, vy = (float(a) for a in outputs[j])
        ax.arrow(0, 0, vx, vy, width=0.04, color="red", length_includes_head=True, zorder=5)
        t = np.linspace(0, 2 * np.pi, 100)
        ax.plot(np.cos(t), np.sin(t), color="gray", ls=":", lw=1)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_title(f"parent {j}: |v| = {float(np.hypot(vx, vy)):.2f}", fontsize=11)
        ax.set_xlabel("vote of child i: wider,\ndarker = larger c_ij\nred: the output v_j" if j == 0 else "",
                      fontsize=10)
        drawn.append(arrows)
    return drawn


def plot_couplings(ax: Axes, couplings: ArrayLike, vmax: float = 1.0):
    """Heat map of ``couplings (n_in, n_out)`` with values written in. Returns the ``AxesImage``."""
    c = as_numpy(couplings)
    im = ax.imshow(c, cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
    for (i, j), val in np.ndenumerate(c):
        ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=10, color="white" if val > 0.6 * vmax else "k")
    ax.set_xlabel("parent j")
    ax.set_ylabel("child i")
    ax.set_xticks(range(c.shape[1]))
    ax.set_yticks(range(c.shape[0]))
    ax.set_title("couplings c_ij", fontsize=10)
    return im


def plot_routing_dynamics(ax_change: Axes, ax_steps: Axes, convergence: Mapping[str, ArrayLike]) -> Dict[str, object]:
    """Routing dynamics from :func:`capsedu.teaching.agreement.routing_convergence`.

    Left: bars of ``logit_change`` per iteration k (what the paper's Fig. A.1 plots). Right (log scale):
    ``coupling_step`` and ``output_step``, how much iteration k changed the couplings and the outputs
    against iteration k - 1 (k = 2..r): falling lines mean routing settles, flat or rising ones that it
    does not.
    Returns ``{"bars": BarContainer, "lines": [coupling line, output line]}``.
    """
    changes = as_numpy(convergence["logit_change"])
    k = np.arange(1, len(changes) + 1)
    bars = ax_change.bar(k, changes, color="C0")
    ax_change.set_xlabel("routing iteration k")
    ax_change.set_ylabel("mean |b(k) - b(k-1)|")
    ax_change.set_title("what each iteration adds to the logits", fontsize=10)
    lines = [ax_steps.semilogy(k[1:], as_numpy(convergence["coupling_step"]), "o-",
                               label="couplings: mean |c(k) - c(k-1)|")[0],
             ax_steps.semilogy(k[1:], as_numpy(convergence["output_step"]), "s-",
                               label="outputs: mean ||v(k) - v(k-1)||")[0]]
    ax_steps.set_xlabel("routing iteration k")
    ax_steps.set_ylabel("change from iteration k - 1")
    ax_steps.set_title("does routing settle?", fontsize=10)
    ax_steps.set_xlim(0.5, len(changes) + 0.5)
    ax_steps.legend(fontsize=9)
    return {"bars": bars, "lines": lines}


def draw_capsule_schema(ax: Optional[Axes] = None) -> Dict[str, object]:
    """The slides' "capsule schema with routing" (slide 14): child outputs, the votes of eq. 2, the routing
    softmax of eq. 3, the weighted sum of eq. 2, squash (eq. 1), and line 7 of Procedure 1 feeding the
    agreement back into the logits. Returns :func:`~capsedu.teaching.images.draw_flow`'s record."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7.6, 4.0))
    # three rows of two boxes, so that each box is wide enough for its text at a readable size: the votes come
    # down into the sum, and the routing loop goes round the lower square (sum -> v -> b -> c -> sum)
    boxes = {
        "u": (0.0, 4.0, "child outputs\n$u_i$", "#a1d99b"),
        "votes": (5.8, 4.0, "votes (eq. 2), $W_{ij}$ learned\n$\\hat u_{j|i} = W_{ij} u_i$", "#fdd0a2"),
        "sum": (5.8, 2.0, "total input (eq. 2)\n$s_j = \\sum_i c_{ij} \\hat u_{j|i}$", "#fdd0a2"),
        "v": (5.8, 0.0, "parent outputs (eq. 1)\n$v_j = \\mathrm{squash}(s_j)$", "#9ecae1"),
        "c": (0.0, 2.0, "couplings (eq. 3)\n$c_{ij} = \\mathrm{softmax}_j(b_{ij})$", "#dadaeb"),
        "b": (0.0, 0.0, "logits, line 7, r times\n$b_{ij} \\leftarrow b_{ij} + \\hat u_{j|i} \\cdot v_j$", "#dadaeb"),
    }
    arrows = [("u", "votes", ""), ("votes", "sum", ""), ("sum", "v", ""), ("c", "sum", ""), ("v", "b", "agreement"),
              ("b", "c", "")]
    return draw_flow(ax, boxes, arrows, size=(3.6, 1.1), fontsize=11)


# ----------------------------------------------------------------------------- widget

def routing_widget(u_hat: Optional[torch.Tensor] = None, iterations: int = 1, max_iterations: int = 10,
                   snapshots: Sequence[Mapping[str, Any]] = ({"iterations": 1}, {"iterations": 3},
                                                             {"iterations": 10})):
    """Chapter 3: routing iterations slider (1..``max_iterations``) for one example of 2-D votes.

    ``u_hat`` is ``(1, n_in, n_out, 2)`` (default :func:`capsedu.teaching.agreement.toy_votes`). Redraws
    the votes with widths given by the couplings, the outputs ``v_j`` and a coupling heat map.
    ``state``: ``couplings (n_in, n_out)`` (the c used in the last iteration), ``outputs (n_out, 2)``,
    ``logits (n_in, n_out)`` (b after the last update), ``iterations``. Below the figure the couplings
    are printed as text (``box.readout``, an HTML widget).
    """
    from .interactive import InteractiveFigure, new_figure
    import ipywidgets as W
    from ..routing import routing_trace

    if u_hat is None:
        u_hat = toy_votes()[0]
    n_out = u_hat.shape[2]
    controls = {"iterations": W.IntSlider(iterations, 1, max_iterations, description="iterations r")}
    fig, axes = new_figure(n_out + 1, 2.4 * (n_out + 1), 3.0)    # 11+ px text where the book shows it
    fig.subplots_adjust(wspace=0.4)
    out = W.Output()
    readout = W.HTML()

    def compute(v):
        trace = routing_trace(u_hat, v["iterations"])
        c, outputs = trace.couplings[-1][0], trace.outputs[-1][0]
        plot_votes(axes[:n_out], u_hat[0], c, outputs)
        axes[-1].clear()
        plot_couplings(axes[-1], c)
        readout.value = _couplings_html(c, v["iterations"])
        return {"couplings": c, "outputs": outputs, "logits": trace.logits[-1][0], "iterations": v["iterations"]}

    def describe(v, state):
        lengths = ", ".join(f"{float(x):.2f}" for x in state["outputs"].norm(dim=-1))
        return f"r = {v['iterations']} routing iterations: parent lengths |v_j| = ({lengths})"

    box = InteractiveFigure([controls["iterations"], out, readout], compute, controls, figure=fig, output=out,
                           snapshots=snapshots, describe=describe)
    box.readout = readout
    box.update()
    return box


def _couplings_html(c: torch.Tensor, iterations: int) -> str:
    """The couplings ``c (n_in, n_out)`` as a preformatted text table (what the routing widget prints)."""
    head = "child | " + " ".join(f"c(i->{j})" for j in range(c.shape[1]))
    rows = [f"{i:5d} | " + " ".join(f"{float(x):7.3f}" for x in row) for i, row in enumerate(c)]
    return (f"<pre class='capsedu-couplings'>couplings after r = {iterations}:\n" + "\n".join([head] + rows)
            + "</pre>")
