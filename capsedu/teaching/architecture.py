"""Chapter 4: per-layer shapes, parameter counts, compute and timings of a CapsNet.

Shapes come from a real forward pass (forward hooks on ``conv1``, ``primary``, ``digits`` and
``decoder``); parameters are counted on the modules; multiply-adds ("MACs", per image) follow
from the layer sizes:

* a convolution costs ``H_out * W_out * C_out * (k * k * C_in)`` MACs,
* the prediction vectors ``u_hat_{j|i} = W_ij u_i`` (Eq. 2) cost ``n_in * n_out * d_out * d_in``,
* one routing iteration costs ``n_in * n_out * d_out`` MACs for the total input
  ``s_j = sum_i c_ij u_hat_{j|i}`` (Eq. 2) plus as many for the agreement ``u_hat . v`` (line 7 of
  Procedure 1); the last iteration skips the agreement,
* a fully connected layer costs ``n_in * n_out``.

Element-wise work (ReLU, squash, softmax, sigmoid) is not counted: it is tiny next to these.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..models import PRESETS, CapsNet, count_parameters
from ..routing import dynamic_routing

__all__ = ["LayerRow", "layer_table", "routing_macs", "routing_memory_bytes", "time_layers", "totals",
           "format_table", "conv_linear_macs", "draw_capsnet_diagram", "plot_layer_costs", "architecture_widget"]


@dataclass(frozen=True)
class LayerRow:
    """One line of the architecture table (numbers are per image)."""

    name: str
    output_shape: Tuple[int, ...]   # without the batch axis
    params: int
    macs: int
    note: str = ""


def routing_macs(n_in: int, n_out: int, dim: int, iterations: int) -> int:
    """Multiply-adds of Procedure 1 for one image of ``n_in`` children, ``n_out`` parents of ``dim`` dimensions.

    The weighted sum of Eq. 2 every iteration, the agreement in all but the last.
    """
    per_product = n_in * n_out * dim
    return iterations * per_product + (iterations - 1) * per_product


def routing_memory_bytes(batch: int, n_in: int, n_out: int, dim: int, bytes_per_value: int = 4) -> int:
    """Bytes of one ``u_hat`` tensor ``(batch, n_in, n_out, dim)``: what routing reads every iteration."""
    return batch * n_in * n_out * dim * bytes_per_value


def _conv_macs(conv: torch.nn.Conv2d, out_hw: Tuple[int, int]) -> int:
    k_h, k_w = conv.kernel_size
    per_output = k_h * k_w * conv.in_channels // conv.groups
    return out_hw[0] * out_hw[1] * conv.out_channels * per_output


@torch.no_grad()
def layer_table(model: CapsNet, image_size: Optional[int] = None) -> List[LayerRow]:
    """Shapes (from a forward pass of one blank image), parameters and multiply-adds of every stage.

    ``image_size`` defaults to the model's own (``model.config.image_size``); the model only accepts
    that size, so the argument is a check that the table is for the image size you think it is.
    """
    cfg = model.config
    size = cfg.image_size if image_size is None else image_size
    if size != cfg.image_size:
        raise ValueError(f"this model takes {cfg.image_size}x{cfg.image_size} images, not {size}x{size}; "
                         f"build CapsNet(..., image_size={size})")
    shapes: Dict[str, Tuple[int, ...]] = {}
    hooks = []
    for name in ("conv1", "primary", "digits", "decoder"):
        module = getattr(model, name)
        if module is None:
            continue
        hooks.append(module.register_forward_hook(
            lambda _m, _inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))))
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, cfg.in_channels, size, size, device=next(model.parameters()).device)
        model(x)
        u = model.primary_capsules(x)                  # (1, n_primary, primary_dim)
        u_hat_shape = tuple(model.digits.predictions(u).shape[1:])  # (n_primary, n_classes, digit_dim)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    conv1_hw = shapes["conv1"][1:]
    primary_conv = model.primary.conv
    grid = model.primary.output_grid(*conv1_hw)
    n_in, n_out, d_out = u_hat_shape
    rows = [
        LayerRow("input", (cfg.in_channels, size, size), 0, 0, "image"),
        LayerRow("conv1", shapes["conv1"], count_parameters(model.conv1), _conv_macs(model.conv1, conv1_hw),
                 f"{cfg.conv_channels} kernels {cfg.conv_kernel}x{cfg.conv_kernel}, stride 1, ReLU"),
        LayerRow("PrimaryCaps", shapes["primary"], count_parameters(model.primary), _conv_macs(primary_conv, grid),
                 f"{cfg.primary_types} types x {cfg.primary_dim}-D on a {grid[0]}x{grid[1]} grid, squash"),
        LayerRow("DigitCaps u_hat", u_hat_shape, count_parameters(model.digits), n_in * n_out * d_out * cfg.primary_dim,
                 f"one {d_out}x{cfg.primary_dim} W_ij per (i, j), no bias (Eq. 2)"),
        LayerRow(f"routing (r={model.routing_iterations})", shapes["digits"], 0,
                 routing_macs(n_in, n_out, d_out, model.routing_iterations), "Eqs. 1-3 + agreement"),
    ]
    if model.decoder is not None:
        linears = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
        rows.append(LayerRow("decoder", shapes["decoder"], count_parameters(model.decoder),
                             sum(m.in_features * m.out_features for m in linears),
                             " -> ".join([str(linears[0].in_features)] + [str(m.out_features) for m in linears])))
    return rows


@torch.no_grad()
def conv_linear_macs(model: torch.nn.Module, image_shape: Tuple[int, int, int] = (1, 28, 28)) -> int:
    """Multiply-adds per image of every ``Conv2d`` and ``Linear`` in ``model`` (e.g. the baseline CNN),
    measured with forward hooks on one image of ``image_shape``; other work is not counted."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k_h, k_w = module.kernel_size
            total += output[0].numel() * k_h * k_w * module.in_channels // module.groups
        else:
            total += output[0].numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters())
        model(torch.zeros(1, *image_shape, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total


def totals(rows: List[LayerRow]) -> Dict[str, int]:
    """Total parameters and multiply-adds, with and without the decoder."""
    params = sum(r.params for r in rows)
    macs = sum(r.macs for r in rows)
    dec = [r for r in rows if r.name == "decoder"]
    return {"params": params, "macs": macs,
            "params_without_decoder": params - sum(r.params for r in dec),
            "macs_without_decoder": macs - sum(r.macs for r in dec)}


def format_table(rows: List[LayerRow]) -> str:
    """Plain-text table of :func:`layer_table` rows."""
    lines = [f"{'layer':<18}{'output shape':<18}{'params':>12}{'MACs/image':>15}  note"]
    for r in rows:
        shape = "x".join(str(s) for s in r.output_shape)
        lines.append(f"{r.name:<18}{shape:<18}{r.params:>12,}{r.macs:>15,}  {r.note}")
    t = totals(rows)
    lines.append(f"{'total':<18}{'':<18}{t['params']:>12,}{t['macs']:>15,}")
    return "\n".join(lines)


@torch.no_grad()
def time_layers(model: CapsNet, batch_size: int = 16, repeats: int = 3, seed: int = 0) -> Dict[str, float]:
    """Median wall-clock seconds of each stage for one forward pass of ``batch_size`` random images."""
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, cfg.in_channels, cfg.image_size, cfg.image_size, generator=gen)
    was_training = model.training
    model.eval()
    stages: Dict[str, List[float]] = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        stages.setdefault(name, []).append(time.perf_counter() - start)
        return out

    try:
        for rep in range(repeats + 1):  # the first pass only warms up (allocations, kernel selection)
            h = timed("conv1", lambda t: F.relu(model.conv1(t)), x)
            u = timed("PrimaryCaps", model.primary, h)
            u_hat = timed("DigitCaps u_hat", model.digits.predictions, u)
            v = timed("routing", lambda t: dynamic_routing(t, model.routing_iterations), u_hat)
            if model.decoder is not None:
                classes = v.norm(dim=-1).argmax(dim=1)
                timed("decoder", model.reconstruct, v, classes)
    finally:
        model.train(was_training)
    return {k: sorted(vals[1:])[len(vals[1:]) // 2] for k, vals in stages.items()}


# ----------------------------------------------------------------------------- drawing

def draw_capsnet_diagram(rows: Sequence, ax: Optional[Axes] = None) -> Tuple[Figure, List[str]]:
    """Boxes and arrows of the CapsNet data flow, labelled with the shapes of ``layer_table`` rows
    (:class:`capsedu.teaching.architecture.LayerRow`).

    More than three stages are drawn in two rows (the first row's last box leads to the second row's first),
    so that at the book's column width each box is wide enough for its text at a readable size.
    Returns ``(fig, labels)``: ``labels`` are the texts written in the boxes, top to bottom of the flow.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path

    n = len(rows)
    per_row = n if n <= 3 else -(-n // 2)
    n_rows = -(-n // per_row) if n else 1
    width, height, gap, row_gap = 1.0, 1.0, 0.45, 0.8
    pitch = height + row_gap
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.2, 1.9 * n_rows + 0.4))
    else:
        fig = ax.figure
    colours = {"input": "#dddddd", "conv1": "#9ecae1", "PrimaryCaps": "#a1d99b", "DigitCaps u_hat": "#fdd0a2",
               "decoder": "#dadaeb"}
    labels = []

    def corner(k):                                           # lower left corner of box k
        return (k % per_row) * (width + gap), -(k // per_row) * pitch

    for k, row in enumerate(rows):
        x, y = corner(k)
        colour = colours.get(row.name, "#fcbba1")
        ax.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.03", fc=colour, ec="black"))
        shape = " x ".join(str(s) for s in row.output_shape)
        text = f"{row.name}\n({shape})\n{row.params:,} params\n{row.macs / 1e6:.2f}M MACs"
        ax.text(x + width / 2, y + height / 2, text, ha="center", va="center", fontsize=10)
        labels.append(text)
        if k == n - 1:
            continue
        if (k + 1) % per_row:                                # to the next box in the same row
            ax.add_patch(FancyArrowPatch((x + width + 0.03, y + height / 2), (x + width + gap - 0.03, y + height / 2),
                                         arrowstyle="-|>", mutation_scale=14, color="black"))
        else:                                                # down, back to the left, down into the next row
            x_next, y_next = corner(k + 1)
            middle = y - row_gap / 2
            path = Path([(x + width / 2, y - 0.05), (x + width / 2, middle), (x_next + width / 2, middle),
                         (x_next + width / 2, y_next + height + 0.05)])
            ax.add_patch(FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=14, color="black"))
    ax.text(0, height + 0.12, "encoder: conv1 -> PrimaryCaps -> DigitCaps (routing)", fontsize=10, ha="left")
    if rows and rows[-1].name == "decoder":
        x, y = corner(n - 1)
        ax.text(x + width / 2, y - 0.1, "decoder (training regulariser)", fontsize=10, ha="center", va="top")
    ax.set_xlim(-0.1, min(n, per_row) * (width + gap) - gap + 0.1)
    ax.set_ylim(-(n_rows - 1) * pitch - 0.4, height + 0.35)
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
        _, axes = plt.subplots(1, panels, figsize=(3.0 * panels, 3.0))  # 11+ px text in the book's column
    axes = np.atleast_1d(axes)
    axes[0].barh(names, params, color="#6baed6")
    axes[0].set_xlabel("parameters")
    axes[1].barh(names, np.maximum(macs, 1), color="#fd8d3c")  # log axis: a zero-cost row still gets a bar
    axes[1].set_xscale("log")
    axes[1].set_xlabel("multiply-adds per image\n(log scale)")
    secs = None
    if times:
        secs = np.array([times.get(n, times.get(n.split(" ")[0], 0.0)) for n in names], dtype=float)
        axes[2].barh(names, secs * 1e3, color="#74c476")
        axes[2].set_xlabel("measured ms per batch\n(this CPU)")
    for ax in axes:
        ax.invert_yaxis()
    for ax in axes[1:]:
        ax.set_yticklabels([])
    return {"names": names, "params": params, "macs": macs, "times": secs}


# ----------------------------------------------------------------------------- widget

def _layer_table_html(rows, tot: Mapping[str, int], config) -> str:
    """The per-layer table and a line of totals as HTML (what the architecture widget shows)."""
    parts = ["<table><tr><th>layer</th><th>output shape</th><th>params</th><th>MACs / image</th></tr>"]
    for r in rows:
        shape = " x ".join(str(s) for s in r.output_shape)
        parts.append(f"<tr><td>{r.name}</td><td>{shape}</td><td>{r.params:,}</td><td>{r.macs:,}</td></tr>")
    parts.append(f"<tr><th>total</th><td></td><th>{tot['params']:,}</th><th>{tot['macs']:,}</th></tr></table>")
    parts.append(f"<p>without decoder: {tot['params_without_decoder']:,} parameters; "
                f"{config.n_primary:,} primary capsules; u_hat per image: "
                f"{config.n_primary * config.n_classes * config.digit_dim:,} numbers</p>")
    return "".join(parts)


def architecture_widget(preset: str = "paper",
                        snapshots: Sequence[Mapping[str, Any]] = ({"preset": "paper"}, {"preset": "small"})):
    """Chapter 4: pick a preset or change conv1 channels, primary capsule types, image size and routing
    iterations; the per-layer table of shapes, parameters and multiply-adds is recomputed from a real model.

    ``state``: ``rows`` (:class:`capsedu.teaching.architecture.LayerRow` list), ``totals``, ``config`` (dict).
    """
    from .interactive import InteractiveFigure, control_row
    import ipywidgets as W

    cfg = PRESETS[preset]
    controls = {
        "preset": W.Dropdown(options=sorted(PRESETS), value=preset, description="preset"),
        "conv_channels": W.IntSlider(value=cfg.conv_channels, min=16, max=512, step=16, description="conv1 ch."),
        "primary_types": W.IntSlider(value=cfg.primary_types, min=4, max=64, step=4, description="caps types"),
        "image_size": W.IntSlider(value=cfg.image_size, min=18, max=48, step=2, description="image size"),
        "routing_iterations": W.IntSlider(value=cfg.routing_iterations, min=1, max=6, description="routing r"),
    }
    table = W.HTML()
    last_preset = {"name": preset}

    def compute(values):
        if values["preset"] != last_preset["name"]:  # a new preset resets the sliders to its sizes
            last_preset["name"] = values["preset"]
            base = PRESETS[values["preset"]]
            with box.muted():
                for key in ("conv_channels", "primary_types", "image_size", "routing_iterations"):
                    controls[key].value = getattr(base, key)
                    values[key] = getattr(base, key)
        sizes = {k: v for k, v in values.items() if k != "preset"}
        model = CapsNet(values["preset"], **sizes)
        rows = layer_table(model)
        tot = totals(rows)
        table.value = _layer_table_html(rows, tot, model.config)
        return {"rows": rows, "totals": tot, "config": model.config.to_dict()}

    def render(values):
        """The table for a preset's own sizes (a static snapshot; the live controls are left alone)."""
        model = CapsNet(values["preset"])
        rows = layer_table(model)
        return _layer_table_html(rows, totals(rows), model.config)

    def describe(values, _state):
        base = PRESETS[values["preset"]]
        return (f"preset {values['preset']!r}: conv1 {base.conv_channels} channels, {base.primary_types} primary "
                f"capsule types, {base.image_size}x{base.image_size} images, r = {base.routing_iterations}")

    box = InteractiveFigure([control_row([controls["preset"], controls["routing_iterations"]]),
                            control_row([controls["conv_channels"], controls["primary_types"], controls["image_size"]]),
                            table], compute, controls, snapshots=snapshots, describe=describe, render=render)
    box.update()
    return box
