"""Chapter 6: what the decoder draws from one digit capsule, and from its perturbed dimensions (paper Fig. 4).

* :func:`decode_capsule`: reconstructions from capsule vectors placed in one digit's slot;
* :func:`perturbation_grid`: the paper's Fig. 4 for one capsule, every dimension by every offset;
* :func:`perturbation_effects`, :func:`rank_dimensions`: how much each dimension changes the picture,
  and the dimensions ordered by it (so a figure can show the strongest few large).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .images import ArrayLike, as_numpy

__all__ = ["PERTURBATION_DELTAS", "decode_capsule", "perturbation_grid", "perturbation_effects",
           "rank_dimensions", "draw_reconstruction", "plot_perturbation_grid", "plot_strongest_dimensions",
           "perturbation_widget"]

#: The paper's offsets: steps of 0.05 in [-0.25, 0.25] (Fig. 4).
PERTURBATION_DELTAS = tuple(round(-0.25 + 0.05 * k, 2) for k in range(11))


@torch.no_grad()
def decode_capsule(model: torch.nn.Module, poses: Union[torch.Tensor, Sequence[Sequence[float]]], digit: int
                   ) -> torch.Tensor:
    """Reconstructions ``(n, H, W)`` from capsule vectors ``poses (n, digit_dim)`` placed in ``digit``'s slot.

    Every other digit capsule is zero, as the decoder's mask makes it in training and at test time.
    ``model`` is a :class:`capsedu.models.CapsNet` with a decoder.
    """
    poses = torch.as_tensor(poses, dtype=torch.float32)
    poses = poses.reshape(-1, poses.shape[-1])                                   # (n, digit_dim)
    caps = torch.zeros(poses.shape[0], model.config.n_classes, poses.shape[-1])   # (n, n_classes, digit_dim)
    caps[:, digit] = poses
    classes = torch.full((poses.shape[0],), int(digit), dtype=torch.long)
    images = model.reconstruct(caps, classes)                                    # (n, 1, H, W)
    return images.reshape(poses.shape[0], *images.shape[-2:])


@torch.no_grad()
def perturbation_grid(model: torch.nn.Module, pose: Union[torch.Tensor, Sequence[float]], digit: int,
                      deltas: Sequence[float] = PERTURBATION_DELTAS, dims: Optional[Sequence[int]] = None
                      ) -> torch.Tensor:
    """Reconstructions after adding each of ``deltas`` to one dimension of a digit capsule (paper Fig. 4).

    ``pose`` is the vector of digit capsule ``digit``; ``dims`` the dimensions to perturb (default all).
    Returns ``(len(dims), len(deltas), H, W)``: row ``r`` perturbs ``dims[r]``, column ``k`` by ``deltas[k]``.
    """
    pose = torch.as_tensor(pose, dtype=torch.float32).reshape(-1)
    dims = list(range(pose.numel())) if dims is None else list(dims)
    deltas = torch.as_tensor(deltas, dtype=torch.float32)
    tweaked = pose.repeat(len(dims), len(deltas), 1)                      # (dims, deltas, digit_dim)
    for r, d in enumerate(dims):
        tweaked[r, :, d] += deltas
    images = decode_capsule(model, tweaked.reshape(-1, pose.numel()), digit)
    return images.reshape(len(dims), len(deltas), *images.shape[-2:])


def perturbation_effects(grid: torch.Tensor, deltas: Sequence[float] = PERTURBATION_DELTAS) -> torch.Tensor:
    """How much each row of a :func:`perturbation_grid` changes the picture: ``(rows,)``.

    For row ``r``: the mean absolute pixel difference between each perturbed reconstruction and the
    unperturbed one (the column whose delta is 0), averaged over the other columns. Pixels are in
    ``[0, 1]``, so 0.01 means one percent of full ink per pixel on average.
    """
    grid = torch.as_tensor(grid, dtype=torch.float32)
    deltas = [float(d) for d in deltas]
    if grid.dim() != 4 or grid.shape[1] != len(deltas):
        raise ValueError(f"grid must be (rows, {len(deltas)} deltas, H, W), got {tuple(grid.shape)}")
    if 0.0 not in deltas or len(deltas) < 2:
        raise ValueError(f"deltas must contain 0 (the unperturbed capsule) and another offset, got {deltas}")
    centre = deltas.index(0.0)
    others = [k for k in range(len(deltas)) if k != centre]
    diff = (grid[:, others] - grid[:, centre:centre + 1]).abs()           # (rows, n_deltas - 1, H, W)
    return diff.mean(dim=(1, 2, 3))


def rank_dimensions(grid: torch.Tensor, deltas: Sequence[float] = PERTURBATION_DELTAS,
                    dims: Optional[Sequence[int]] = None) -> Tuple[List[int], torch.Tensor]:
    """The grid's dimensions ordered by :func:`perturbation_effects`, strongest first.

    ``dims`` names the grid's rows (as passed to :func:`perturbation_grid`; default ``0..rows-1``).
    Returns ``(dims in that order, their effects (rows,) in that order)``.
    """
    effects = perturbation_effects(grid, deltas)
    dims = list(range(len(effects))) if dims is None else list(dims)
    if len(dims) != len(effects):
        raise ValueError(f"{len(dims)} dimension names for {len(effects)} rows")
    order = torch.argsort(effects, descending=True, stable=True)
    return [dims[int(k)] for k in order], effects[order]


# ----------------------------------------------------------------------------- drawing

def draw_reconstruction(ax: Axes, image: ArrayLike, title: str = ""):
    """Show one decoder output ``image (H, W)`` in [0, 1] without axes (clears ``ax`` first).

    Returns the ``AxesImage``.
    """
    ax.clear()
    im = ax.imshow(as_numpy(image), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return im


def plot_perturbation_grid(grid: ArrayLike, deltas: Sequence[float] = PERTURBATION_DELTAS,
                           dims: Optional[Sequence[int]] = None, title: Optional[str] = None,
                           ax: Optional[Axes] = None) -> np.ndarray:
    """Tile a :func:`capsedu.teaching.decoder.perturbation_grid` (rows: dimensions, columns: ``deltas``)
    into one image and show it. Returns the tiled ``(rows * H, columns * W)`` array."""
    g = as_numpy(grid)
    n_rows, n_cols, h, w = g.shape
    tiled = g.transpose(0, 2, 1, 3).reshape(n_rows * h, n_cols * w)
    if ax is None:
        _, ax = plt.subplots(figsize=(n_cols * 0.45 + 0.8, n_rows * 0.45 + 0.6))
    ax.imshow(tiled, cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([w * k + w / 2 for k in range(n_cols)])
    ax.set_xticklabels([f"{d:+.2f}" for d in deltas], fontsize=9, rotation=90)
    dims = list(range(n_rows)) if dims is None else list(dims)
    ax.set_yticks([h * k + h / 2 for k in range(n_rows)])
    ax.set_yticklabels([f"dim {d}" for d in dims], fontsize=9)
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

    The figure is about 12 inches wide and shown in a column of under 700 pixels, so its text is large and
    only the first, middle and last offsets are labelled.
    """
    grids = [as_numpy(g) for _, g, _ in panels]
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
        ends = sorted({0, cols // 2, cols - 1})
        ax.set_xticks([w * k + w / 2 for k in ends])
        ax.set_xticklabels([f"{deltas[k]:+.2f}" for k in ends], fontsize=14)
        ax.set_yticks([h * k + h / 2 for k in range(rows)])
        ax.set_yticklabels(list(labels), fontsize=14)
        ax.set_title(title, fontsize=15)
        tiled_all.append(tiled)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig, tiled_all


# ----------------------------------------------------------------------------- widget

def perturbation_widget(model: torch.nn.Module, poses: torch.Tensor, digit: int = 0, limit: float = 0.25,
                        snapshots: Sequence[Mapping[str, Any]] = ({}, {"d0": 0.25}, {"d5": -0.25})):
    """Chapter 6: a digit selector and one slider per capsule dimension that adds an offset to it;
    the decoder redraws the reconstruction live. Beside it, the full perturbation grid of the digit's
    unedited capsule (paper Fig. 4: every dimension by every offset in steps of 0.05 over [-0.25, 0.25]),
    its rows ordered by how much they change the picture (:func:`capsedu.teaching.decoder.rank_dimensions`).

    Args:
        model: a trained :class:`capsedu.models.CapsNet` with a decoder.
        poses: ``(n_classes, digit_dim)``: for each class, the capsule vector of one example of it.
        digit: the class shown first.
        limit: slider range ``[-limit, limit]`` (the paper perturbs by up to 0.25).
        snapshots: offsets drawn in the static rendering (for the digit shown).

    ``state``: ``digit``, ``offsets`` (digit_dim,), ``pose`` (the perturbed vector), ``image`` (H, W) numpy,
    ``ranking`` (the dimensions, strongest first), ``effects`` (their mean pixel change, same order) and
    ``grid`` ``(digit_dim, n_deltas, H, W)`` numpy, rows in ``ranking`` order.
    The text under the figure (``box.readout``) names the offsets, the capsule's length and the strongest
    dimensions.
    """
    from .interactive import InteractiveFigure, control_row, slider_grid
    import ipywidgets as W

    poses = torch.as_tensor(poses, dtype=torch.float32).detach()
    n_classes, dim = poses.shape
    controls = {"digit": W.Dropdown(options=list(range(n_classes)), value=digit, description="digit")}
    for d in range(dim):
        controls[f"d{d}"] = W.FloatSlider(value=0.0, min=-limit, max=limit, step=0.01, description=f"dim {d}",
                                          continuous_update=False)
    reset = W.Button(description="reset offsets")
    output = W.Output()
    readout = W.HTML()
    fig = Figure(figsize=(6.8, 5.6))                          # not registered with pyplot (see new_figure)
    ax, ax_grid = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.45]})
    grids: Dict[int, Dict[str, Any]] = {}                     # per digit: its full grid, ranked (computed once)

    def ranked_grid(c: int) -> Dict[str, Any]:
        if c not in grids:
            grid = perturbation_grid(model, poses[c], c)                     # (dim, n_deltas, H, W)
            order, effects = rank_dimensions(grid)
            grids[c] = {"grid": grid[order].numpy(), "ranking": order, "effects": effects.numpy()}
        return grids[c]

    def compute(values):
        c = int(values["digit"])
        offsets = torch.tensor([values[f"d{d}"] for d in range(dim)], dtype=torch.float32)
        pose = poses[c] + offsets                                    # (digit_dim,) perturbed capsule
        image = decode_capsule(model, pose[None], c)[0].numpy()      # (H, W)
        draw_reconstruction(ax, image, f"digit {c} edited, ||v|| = {float(pose.norm()):.2f}")
        full = ranked_grid(c)
        ax_grid.clear()
        plot_perturbation_grid(full["grid"], PERTURBATION_DELTAS, dims=full["ranking"], ax=ax_grid,
                               title=f"digit {c} unedited: all {dim} dimensions, strongest first")
        readout.value = (f"<pre class='capsedu-pose'>{_offsets_text(c, offsets, pose)}\n"
                         f"{_ranking_text(full['ranking'], full['effects'])}</pre>")
        return {"digit": c, "offsets": offsets.numpy(), "pose": pose.numpy(), "image": image, "figure": fig,
                **full}

    def describe(values, state):
        return _offsets_text(state["digit"], torch.as_tensor(state["offsets"]), torch.as_tensor(state["pose"]))

    sliders = [controls[f"d{d}"] for d in range(dim)]
    box = InteractiveFigure([control_row([controls["digit"], reset]), slider_grid(sliders), output, readout], compute,
                           controls, figure=fig, output=output, snapshots=snapshots, describe=describe)
    box.readout = readout

    def on_reset(_button):
        box.update(**{f"d{d}": 0.0 for d in range(dim)})

    reset.on_click(on_reset)
    box.update()
    return box


def _ranking_text(ranking: Sequence[int], effects, shown: int = 4) -> str:
    """The strongest dimensions and their mean pixel change, as the perturbation widget prints them."""
    top = ", ".join(f"dim {d} ({float(e):.3f})" for d, e in zip(ranking[:shown], effects[:shown]))
    return f"strongest dimensions (mean pixel change over the offsets): {top}"


def _offsets_text(digit: int, offsets: torch.Tensor, pose: torch.Tensor) -> str:
    moved = [f"dim {d} {float(o):+.2f}" for d, o in enumerate(offsets) if float(o) != 0.0]
    return f"digit {digit}, offsets: {', '.join(moved) or 'none'}; ||v|| = {float(pose.norm()):.3f}"
