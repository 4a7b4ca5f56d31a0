"""The book's figures (matplotlib only). Every function draws data it is given and computes nothing
beyond layout; the numbers come from the computing modules of :mod:`capsedu.teaching`.

Each function draws into the given axes (or makes a figure) and returns what it drew, so tests can
check the plotted values without a screen.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .decoder import PERTURBATION_DELTAS

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]

__all__ = [
    "show_images", "show_image_rows",
    "draw_face_scene", "plot_pooling_vs_pose",
    "plot_squash_1d", "plot_length_histograms", "plot_squash_gradient", "draw_squash_2d",
    "plot_coincidence", "plot_votes", "plot_couplings", "plot_routing_dynamics",
    "draw_capsnet_diagram", "plot_layer_costs",
    "plot_margin_loss", "plot_training_curves",
    "draw_reconstruction", "plot_perturbation_grid", "plot_strongest_dimensions",
]


def _numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ----------------------------------------------------------------------------- images

def _as_images(x: ArrayLike) -> np.ndarray:
    x = x.detach().float().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float32)
    return x.reshape(x.shape[0], x.shape[-2], x.shape[-1]).numpy()


def show_images(axes, images, titles: Optional[Sequence[str]] = None, cmap: str = "gray_r") -> list:
    """Draw ``images`` (a sequence or a ``(N, [1,] H, W)`` tensor) into ``axes`` side by side, no ticks.

    Returns the list of ``AxesImage`` artists.
    """
    artists = []
    for k, ax in enumerate(np.atleast_1d(axes)):
        img = _numpy(images[k])
        artists.append(ax.imshow(img.reshape(img.shape[-2:]), cmap=cmap))
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    return artists


def show_image_rows(rows: Sequence[ArrayLike], row_titles: Optional[Sequence[str]] = None,
                    captions: Optional[Sequence[str]] = None, size: float = 1.1) -> Figure:
    """A grid of grey images: ``rows`` is a list of image batches ``(n, [1,] H, W)`` of equal ``n``.

    ``captions`` (optional) is a list of ``n`` strings written above the first row. Returns the figure.
    """
    arrays = [_as_images(r) for r in rows]
    n = arrays[0].shape[0]
    fig, axes = plt.subplots(len(arrays), n, figsize=(size * n, size * len(arrays) + 0.3), squeeze=False)
    for i, arr in enumerate(arrays):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(arr[j], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and captions is not None:
                ax.set_title(captions[j], fontsize=8)
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- chapter 1: motivation

def _part_outline(name: str) -> np.ndarray:
    """Outline ``(2, n)`` of a cartoon-face part in its own frame (unit size); the face itself is a circle."""
    t = np.linspace(0, 2 * np.pi, 40)
    if name.endswith("eye"):
        return np.stack([np.cos(t), 0.6 * np.sin(t)])
    if name == "nose":
        return np.array([[0.0, -0.6, 0.6, 0.0], [1.0, -0.6, -0.6, 1.0]])
    if name == "mouth":
        u = np.linspace(-1, 1, 30)
        upper, lower = 0.35 * u ** 2 - 0.15, 0.5 * u[::-1] ** 2 - 0.35     # a closed smile
        return np.stack([np.concatenate([u, u[::-1]]), np.concatenate([upper, lower])])
    return np.stack([np.cos(t), np.sin(t)])


def _apply_pose(pose: ArrayLike, xy: np.ndarray) -> np.ndarray:
    p = _numpy(pose)
    return p[:2, :2] @ xy + p[:2, 2:3]


def draw_face_scene(ax: Axes, whole: Optional[ArrayLike] = None, parts: Optional[Mapping[str, ArrayLike]] = None,
                    votes: Optional[Mapping[str, ArrayLike]] = None, color: str = "C0") -> Dict[str, object]:
    """Draw a face scene: the face outline under pose ``whole``, each part under its pose in the picture.

    ``whole``: 3x3 pose of the face (``None``: no outline); ``parts``: name -> 3x3 pose in the picture
    (e.g. :func:`capsedu.teaching.poses.place_parts`); ``votes``: name -> predicted face pose, drawn
    as dashed outlines, one per part. Returns ``{"outline": line, "parts": {name: line}, "votes": {name: line}}``.
    """
    out: Dict[str, object] = {"outline": None, "parts": {}, "votes": {}}
    if whole is not None:
        xy = _apply_pose(whole, _part_outline("face"))
        out["outline"], = ax.plot(xy[0], xy[1], color=color, lw=2)
    for name, pose in (parts or {}).items():
        xy = _apply_pose(pose, _part_outline(name))
        out["parts"][name], = ax.plot(xy[0], xy[1], color="k", lw=1.5)
    for k, (name, pose) in enumerate((votes or {}).items()):
        xy = _apply_pose(pose, _part_outline("face"))
        out["votes"][name], = ax.plot(xy[0], xy[1], ls="--", lw=1, color=f"C{k + 1}", label=f"vote of {name}")
    ax.set_aspect("equal")
    return out


def plot_pooling_vs_pose(axes: Sequence[Axes], readout: Mapping[str, torch.Tensor], part_names: Sequence[str]
                         ) -> Dict[str, object]:
    """Chapter 1 widget panel: the picture with its detected parts marked, and the max-pooled presence.

    ``readout`` from :func:`capsedu.teaching.motivation.face_readout` (``image``, ``positions``,
    ``centres``, ``presence``); ``part_names`` names the part types in order.
    Returns ``{"image": AxesImage, "marks": PathCollection, "bars": BarContainer}``.
    """
    ax_img, ax_bar = axes
    ax_img.clear()
    ax_bar.clear()
    im = ax_img.imshow(_numpy(readout["image"]), cmap="gray_r")
    pos, centres = _numpy(readout["positions"]), _numpy(readout["centres"]).reshape(-1, 2)
    marks = ax_img.scatter(centres[:, 1], centres[:, 0], edgecolors=[f"C{t}" for t in pos[:, 0]],
                           s=250, marker="s", facecolors="none", linewidths=1.5)
    for t, r, c in pos:
        ax_img.annotate(f"{part_names[t]} ({r},{c})", (c, r), xytext=(0, 12), textcoords="offset points",
                        fontsize=7, color=f"C{t}")
    ax_img.set_title("picture + capsule readout (type, row, col)", fontsize=9)
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    bars = ax_bar.bar(list(part_names), _numpy(readout["presence"]), color=[f"C{k}" for k in range(len(part_names))])
    ax_bar.set_ylim(0, 1.1)
    ax_bar.set_title("global max-pool: what a CNN keeps", fontsize=9)
    return {"image": im, "marks": marks, "bars": bars}


# ----------------------------------------------------------------------------- chapter 2: squash

def plot_squash_1d(ax: Axes, s: ArrayLike, v: ArrayLike):
    """The slides' 1-D squash plot of scalar inputs ``s`` and outputs ``v``, with the asymptotes ``+-1``.

    Returns the curve's ``Line2D``.
    """
    line, = ax.plot(_numpy(s), _numpy(v), lw=2, label="squash(s)")
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
        ax.hist(_numpy(ls), bins=bins, alpha=0.5, label="|s|", density=True)
        ax.hist(_numpy(lv), bins=bins, alpha=0.5, label="|v| = |squash(s)|", density=True)
        ax.axvline(1.0, color="k", ls=":", lw=1)
        ax.set_title(f"d = {d}", fontsize=9)
        drawn.append(ax)
    return drawn


def plot_squash_gradient(ax: Axes, norms: ArrayLike, autograd: ArrayLike, analytic: ArrayLike, every: int = 8):
    """``d|v|/d|s|`` against ``|s|``: the analytic slope as a line, every ``every``-th autograd value as a point.

    Returns ``(line, points)``.
    """
    norms, autograd, analytic = _numpy(norms), _numpy(autograd), _numpy(analytic)
    line, = ax.plot(norms, analytic, lw=2, label="analytic 2|s|/(1+|s|²)²")
    points, = ax.plot(norms[::every], autograd[::every], "o", ms=4, label="autograd")
    ax.set_xlabel("|s|")
    ax.set_ylabel("d|v| / d|s|")
    return line, points


def draw_squash_2d(ax: Axes, s: ArrayLike, v: ArrayLike, limit: float = 3.0) -> Dict[str, object]:
    """Draw a 2-D vector ``s``, its squash ``v`` and the unit circle (clears ``ax`` first).

    Returns ``{"arrows": [s arrow, v arrow], "circle": line}``.
    """
    s, v = _numpy(s).reshape(2), _numpy(v).reshape(2)
    ax.clear()
    t = np.linspace(0, 2 * np.pi, 200)
    circle, = ax.plot(np.cos(t), np.sin(t), color="gray", ls=":", lw=1)
    arrows = [ax.annotate("", xy=tuple(float(a) for a in vec), xytext=(0, 0),
                          arrowprops=dict(arrowstyle="->", lw=lw, color=col))
              for vec, lw, col in ((s, 1.5, "C0"), (v, 3, "C3"))]
    ax.plot([], [], color="C0", label=f"s, |s| = {float(np.hypot(*s)):.2f}")
    ax.plot([], [], color="C3", lw=3, label=f"v = squash(s), |v| = {float(np.hypot(*v)):.3f}")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    return {"arrows": arrows, "circle": circle}


# ----------------------------------------------------------------------------- chapter 3: routing

def plot_coincidence(ax: Axes, dims: Sequence[int], curves: Mapping[float, ArrayLike]) -> list:
    """P(two random directions have cosine > t) against dimension, log scale, one line per threshold ``t``.

    ``curves`` as from :func:`capsedu.teaching.agreement.coincidence_curves` over the same ``dims``.
    Returns the lines.
    """
    dims = list(dims)
    lines = [ax.semilogy(dims, _numpy(p), "o-", ms=3, label=f"cos > {t}")[0] for t, p in curves.items()]
    ax.set_xlabel("dimension of the prediction vectors")
    ax.set_ylabel("P(agreement by chance)")
    return lines


def plot_votes(axes, u_hat: ArrayLike, couplings: ArrayLike, outputs: ArrayLike, limit: float = 2.0) -> list:
    """One panel per parent j: the 2-D votes ``u_hat_{j|i}`` as arrows whose width and opacity grow
    with ``c_ij``, and the output ``v_j`` as a thick red arrow.

    ``u_hat (n_in, n_out, 2)``, ``couplings (n_in, n_out)``, ``outputs (n_out, 2)`` (one example).
    Returns the list of panels' vote arrows ``[[FancyArrow per child] per parent]``.
    """
    u_hat, couplings, outputs = _numpy(u_hat), _numpy(couplings), _numpy(outputs)
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
            ax.annotate(str(i), (x, y), fontsize=7, color=f"C{i % 10}")
        vx, vy = (float(a) for a in outputs[j])
        ax.arrow(0, 0, vx, vy, width=0.04, color="red", length_includes_head=True, zorder=5)
        t = np.linspace(0, 2 * np.pi, 100)
        ax.plot(np.cos(t), np.sin(t), color="gray", ls=":", lw=1)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_title(f"parent {j}: |v| = {float(np.hypot(vx, vy)):.2f}", fontsize=9)
        drawn.append(arrows)
    return drawn


def plot_couplings(ax: Axes, couplings: ArrayLike, vmax: float = 1.0):
    """Heat map of ``couplings (n_in, n_out)`` with values written in. Returns the ``AxesImage``."""
    c = _numpy(couplings)
    im = ax.imshow(c, cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
    for (i, j), val in np.ndenumerate(c):
        ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=7, color="white" if val > 0.6 * vmax else "k")
    ax.set_xlabel("parent j")
    ax.set_ylabel("child i")
    ax.set_xticks(range(c.shape[1]))
    ax.set_yticks(range(c.shape[0]))
    ax.set_title("couplings c_ij", fontsize=9)
    return im


def plot_routing_dynamics(ax_change: Axes, ax_steps: Axes, convergence: Mapping[str, ArrayLike]) -> Dict[str, object]:
    """Routing dynamics from :func:`capsedu.teaching.agreement.routing_convergence`.

    Left: bars of ``logit_change`` per iteration k (what the paper's Fig. A.1 plots). Right (log scale):
    ``coupling_step`` and ``output_step``, how much iteration k changed the couplings and the outputs
    against iteration k - 1 (k = 2..r): falling lines mean routing settles, flat or rising ones that it
    does not.
    Returns ``{"bars": BarContainer, "lines": [coupling line, output line]}``.
    """
    changes = _numpy(convergence["logit_change"])
    k = np.arange(1, len(changes) + 1)
    bars = ax_change.bar(k, changes, color="C0")
    ax_change.set_xlabel("routing iteration k")
    ax_change.set_ylabel("mean |b(k) - b(k-1)|")
    ax_change.set_title("what each iteration adds to the logits", fontsize=9)
    lines = [ax_steps.semilogy(k[1:], _numpy(convergence["coupling_step"]), "o-",
                               label="couplings: mean |c(k) - c(k-1)|")[0],
             ax_steps.semilogy(k[1:], _numpy(convergence["output_step"]), "s-",
                               label="outputs: mean ||v(k) - v(k-1)||")[0]]
    ax_steps.set_xlabel("routing iteration k")
    ax_steps.set_ylabel("change from iteration k - 1")
    ax_steps.set_title("does routing settle?", fontsize=9)
    ax_steps.set_xlim(0.5, len(changes) + 0.5)
    ax_steps.legend(fontsize=7)
    return {"bars": bars, "lines": lines}


# ----------------------------------------------------------------------------- chapter 4: architecture

def draw_capsnet_diagram(rows: Sequence, ax: Optional[Axes] = None) -> Tuple[Figure, List[str]]:
    """Boxes and arrows of the CapsNet data flow, labelled with the shapes of ``layer_table`` rows
    (:class:`capsedu.teaching.architecture.LayerRow`).

    Returns ``(fig, labels)``: ``labels`` are the texts written in the boxes, top to bottom of the flow.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if ax is None:
        fig, ax = plt.subplots(figsize=(12, 3.2))
    else:
        fig = ax.figure
    colours = {"input": "#dddddd", "conv1": "#9ecae1", "PrimaryCaps": "#a1d99b", "DigitCaps u_hat": "#fdd0a2",
               "decoder": "#dadaeb"}
    labels = []
    n = len(rows)
    width, gap = 1.0, 0.45
    for k, row in enumerate(rows):
        x = k * (width + gap)
        colour = colours.get(row.name, "#fcbba1")
        ax.add_patch(FancyBboxPatch((x, 0.0), width, 1.0, boxstyle="round,pad=0.03", fc=colour, ec="black"))
        shape = " x ".join(str(s) for s in row.output_shape)
        text = f"{row.name}\n({shape})\n{row.params:,} params\n{row.macs / 1e6:.2f}M MACs"
        ax.text(x + width / 2, 0.5, text, ha="center", va="center", fontsize=8)
        labels.append(text)
        if k < n - 1:
            ax.add_patch(FancyArrowPatch((x + width + 0.03, 0.5), (x + width + gap - 0.03, 0.5),
                                         arrowstyle="-|>", mutation_scale=14, color="black"))
    ax.text(0, 1.15, "encoder: conv1 -> PrimaryCaps -> DigitCaps (routing)", fontsize=9, ha="left")
    if rows and rows[-1].name == "decoder":
        ax.text((n - 1) * (width + gap), 1.15, "decoder (training regulariser)", fontsize=9, ha="left")
    ax.set_xlim(-0.1, n * (width + gap) - gap + 0.1)
    ax.set_ylim(-0.15, 1.3)
    ax.axis("off")
    return fig, labels


def plot_layer_costs(rows: Sequence, times: Optional[Mapping[str, float]] = None, axes=None) -> Dict[str, object]:
    """Bar charts of parameters, multiply-adds (log scale) and, if given, measured seconds per layer.

    ``rows``: ``layer_table`` rows; ``times`` maps row names (or their first word) to seconds, as from
    :func:`capsedu.teaching.architecture.time_layers`. Returns ``{"names", "params", "macs", "times"}``.
    """
    rows = [r for r in rows if r.name != "input"]
    names = [r.name for r in rows]
    params = np.array([r.params for r in rows], dtype=float)
    macs = np.array([r.macs for r in rows], dtype=float)
    panels = 3 if times else 2
    if axes is None:
        _, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.2))
    axes = np.atleast_1d(axes)
    axes[0].barh(names, params, color="#6baed6")
    axes[0].set_xlabel("parameters")
    axes[1].barh(names, np.maximum(macs, 1), color="#fd8d3c")  # log axis: a zero-cost row still gets a bar
    axes[1].set_xscale("log")
    axes[1].set_xlabel("multiply-adds per image (log)")
    secs = None
    if times:
        secs = np.array([times.get(n, times.get(n.split(" ")[0], 0.0)) for n in names], dtype=float)
        axes[2].barh(names, secs * 1e3, color="#74c476")
        axes[2].set_xlabel("measured ms per batch (this CPU)")
    for ax in axes:
        ax.invert_yaxis()
    for ax in axes[1:]:
        ax.set_yticklabels([])
    return {"names": names, "params": params, "macs": macs, "times": secs}


# ----------------------------------------------------------------------------- chapter 5: margin loss

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


def plot_training_curves(smoothed: Mapping[str, Mapping[str, Tuple[ArrayLike, ArrayLike]]], axes=None
                         ) -> Dict[str, list]:
    """Loss and accuracy per step for several runs, as from :func:`capsedu.teaching.curves.smooth_histories`
    (``{run: {"loss": (steps, values), "accuracy": (steps, values)}}``). Returns ``{run: [loss line, accuracy line]}``.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.3))
    drawn = {}
    for name, h in smoothed.items():
        drawn[name] = [ax.plot(*h[key], label=name)[0] for ax, key in zip(axes, ("loss", "accuracy"))]
    axes[0].set_ylabel("training loss (own scale per run)")
    axes[1].set_ylabel("training-batch accuracy")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return drawn


# ----------------------------------------------------------------------------- chapter 6: decoder

def draw_reconstruction(ax: Axes, image: ArrayLike, title: str = ""):
    """Show one decoder output ``image (H, W)`` in [0, 1] without axes (clears ``ax`` first).

    Returns the ``AxesImage``.
    """
    ax.clear()
    im = ax.imshow(_numpy(image), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return im


def plot_perturbation_grid(grid: ArrayLike, deltas: Sequence[float] = PERTURBATION_DELTAS,
                           dims: Optional[Sequence[int]] = None, title: Optional[str] = None,
                           ax: Optional[Axes] = None) -> np.ndarray:
    """Tile a :func:`capsedu.teaching.decoder.perturbation_grid` (rows: dimensions, columns: ``deltas``)
    into one image and show it. Returns the tiled ``(rows * H, columns * W)`` array."""
    g = _numpy(grid)
    n_rows, n_cols, h, w = g.shape
    tiled = g.transpose(0, 2, 1, 3).reshape(n_rows * h, n_cols * w)
    if ax is None:
        _, ax = plt.subplots(figsize=(n_cols * 0.45 + 0.8, n_rows * 0.45 + 0.6))
    ax.imshow(tiled, cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([w * k + w / 2 for k in range(n_cols)])
    ax.set_xticklabels([f"{d:+.2f}" for d in deltas], fontsize=7, rotation=90)
    dims = list(range(n_rows)) if dims is None else list(dims)
    ax.set_yticks([h * k + h / 2 for k in range(n_rows)])
    ax.set_yticklabels([f"dim {d}" for d in dims], fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return tiled


def plot_strongest_dimensions(panels: Sequence[Tuple[str, ArrayLike, Sequence[str]]],
                              deltas: Sequence[float] = PERTURBATION_DELTAS, ncols: int = 2,
                              tile: float = 0.46) -> Tuple[Figure, List[np.ndarray]]:
    """A few perturbation rows per digit, large: one panel per ``(title, grid, row_labels)`` in ``panels``.

    ``grid`` is ``(rows, len(deltas), H, W)`` (the rows of a :func:`capsedu.teaching.decoder.perturbation_grid`
    chosen by :func:`capsedu.teaching.decoder.rank_dimensions`); ``row_labels`` name its rows. Panels are laid
    out ``ncols`` to a line, each image ``tile`` inches wide. Returns ``(figure, tiled arrays)``.
    """
    grids = [_numpy(g) for _, g, _ in panels]
    n_rows_max = max(g.shape[0] for g in grids)
    n_cols = grids[0].shape[1]
    lines = -(-len(panels) // ncols)
    panel_w, panel_h = n_cols * tile + 1.0, n_rows_max * tile + 0.55
    fig, axes = plt.subplots(lines, ncols, figsize=(ncols * panel_w, lines * panel_h), squeeze=False)
    tiled_all = []
    for ax, (title, _, labels), g in zip(axes.flat, panels, grids):
        rows, cols, h, w = g.shape
        tiled = g.transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
        ax.imshow(tiled, cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([w * k + w / 2 for k in range(cols)])
        ax.set_xticklabels([f"{d:+.2f}" for d in deltas], fontsize=7)
        ax.set_yticks([h * k + h / 2 for k in range(rows)])
        ax.set_yticklabels(list(labels), fontsize=8)
        ax.set_title(title, fontsize=9)
        tiled_all.append(tiled)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig, tiled_all

