"""ipywidgets front-ends for the book. Each ``*_widget`` function builds and returns a widget
(an ``ipywidgets.VBox``) whose ``update(**values)`` can be called directly by tests, without a browser.
A control change computes with the teaching modules, then draws with :mod:`capsedu.teaching.plots`.

ipywidgets is imported lazily so ``capsedu.teaching`` works without Jupyter installed.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional

import torch

__all__ = ["pooling_widget", "squash_widget", "routing_widget", "architecture_widget", "margin_loss_widget",
           "perturbation_widget"]


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - exercised only without the book extra
        raise ImportError("the interactive widgets need ipywidgets: pip install 'capsedu[book]'") from exc
    return ipywidgets


def _interactive_box(children: List[Any], compute: Callable[[Dict[str, Any]], Dict[str, Any]],
                     controls: Mapping[str, Any]):
    """A VBox with ``.update(**values)`` and ``.state``; every control's change calls the same update.

    ``compute(values) -> state`` does the work (and the drawing); ``controls`` maps names to widgets.
    Setting a control's ``.value`` triggers ``update`` through ``observe``; ``update(**values)``
    first moves the controls (without re-triggering) then recomputes once.
    """
    W = _ipywidgets()

    class InteractiveBox(W.VBox):
        pass

    box = InteractiveBox(children)
    box.controls = controls
    box.state = {}
    box._muted = False

    def update(**values):
        unknown = set(values) - set(controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; this widget has {sorted(controls)}")
        box._muted = True
        try:
            for name, value in values.items():
                controls[name].value = value
        finally:
            box._muted = False
        box.state = compute({name: c.value for name, c in controls.items()})
        return box.state

    def on_change(_change):
        if not box._muted:
            update()

    for c in controls.values():
        c.observe(on_change, names="value")
    box.update = update
    return box


def _figure(ncols: int, width: float = 9.0, height: float = 3.2):
    """A matplotlib Figure not registered with pyplot (so notebooks don't display it twice), and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, ncols)


def _show_figure(output, fig) -> None:
    from IPython.display import display

    with output:
        output.clear_output(wait=True)
        display(fig)


# ----------------------------------------------------------------------------- chapter 1

def pooling_widget(max_shift: int = 6):
    """Chapter 1: shift the cartoon face (sliders ``dx``, ``dy`` in pixels, up to ``max_shift``).

    The max-pooled part presence (what a pooling CNN keeps) stays exactly the same, while the
    capsule-like readout (part positions) moves with the face.
    ``state``: ``presence (3,)``, ``positions (n, 3)`` rows ``(type, row, col)``, ``centre`` (mean row, col
    of the detections), ``image``.
    """
    W = _ipywidgets()
    from .motivation import PART_TEMPLATES, face_readout
    from .plots import plot_pooling_vs_pose

    controls = {"dx": W.IntSlider(0, -max_shift, max_shift, description="shift x"),
                "dy": W.IntSlider(0, -max_shift, max_shift, description="shift y")}
    fig, axes = _figure(2, 8, 3.4)
    out = W.Output()

    def compute(v):
        readout = face_readout(shift=(v["dy"], v["dx"]))
        plot_pooling_vs_pose(axes, readout, list(PART_TEMPLATES))
        _show_figure(out, fig)
        return {key: readout[key] for key in ("presence", "positions", "centre", "image")}

    box = _interactive_box([W.HBox(list(controls.values())), out], compute, controls)
    box.update()
    box.figure = fig
    return box


# ----------------------------------------------------------------------------- chapter 2

def squash_widget(x: float = 1.0, y: float = 0.5, limit: float = 3.0):
    """Chapter 2: set a 2-D vector ``s = (x, y)`` with two sliders in ``[-limit, limit]``; see ``s``,
    ``v = squash(s)`` (Eq. 1) and the unit circle.

    ``state``: ``s``, ``v`` (tensors of shape (2,)), ``length_s``, ``length_v``.
    """
    W = _ipywidgets()
    from ..functional import squash
    from .plots import draw_squash_2d

    controls = {"x": W.FloatSlider(x, min=-limit, max=limit, step=0.05, description="s_x"),
                "y": W.FloatSlider(y, min=-limit, max=limit, step=0.05, description="s_y")}
    fig, ax = _figure(1, 4.5, 4.5)
    out = W.Output()

    def compute(values):
        s = torch.tensor([values["x"], values["y"]], dtype=torch.float32)
        v = squash(s)
        draw_squash_2d(ax, s, v, limit=limit)
        _show_figure(out, fig)
        return {"s": s, "v": v, "length_s": float(s.norm()), "length_v": float(v.norm())}

    box = _interactive_box([W.HBox(list(controls.values())), out], compute, controls)
    box.update()
    box.figure = fig
    return box


# ----------------------------------------------------------------------------- chapter 3

def routing_widget(u_hat: Optional[torch.Tensor] = None, iterations: int = 1, max_iterations: int = 10):
    """Chapter 3: routing iterations slider (1..``max_iterations``) for one example of 2-D votes.

    ``u_hat`` is ``(1, n_in, n_out, 2)`` (default :func:`capsedu.teaching.agreement.toy_votes`). Redraws
    the votes with widths given by the couplings, the outputs ``v_j`` and a coupling heat map.
    ``state``: ``couplings (n_in, n_out)`` (the c used in the last iteration), ``outputs (n_out, 2)``,
    ``logits (n_in, n_out)`` (b after the last update), ``iterations``.
    """
    W = _ipywidgets()
    from ..routing import routing_trace
    from .agreement import toy_votes
    from .plots import plot_couplings, plot_votes

    if u_hat is None:
        u_hat = toy_votes()[0]
    n_out = u_hat.shape[2]
    controls = {"iterations": W.IntSlider(iterations, 1, max_iterations, description="iterations r")}
    fig, axes = _figure(n_out + 1, 3.0 * (n_out + 1), 3.2)
    out = W.Output()

    def compute(v):
        trace = routing_trace(u_hat, v["iterations"])
        c, outputs = trace.couplings[-1][0], trace.outputs[-1][0]
        plot_votes(axes[:n_out], u_hat[0], c, outputs)
        axes[-1].clear()
        plot_couplings(axes[-1], c)
        _show_figure(out, fig)
        return {"couplings": c, "outputs": outputs, "logits": trace.logits[-1][0], "iterations": v["iterations"]}

    box = _interactive_box([controls["iterations"], out], compute, controls)
    box.update()
    box.figure = fig
    return box


# ----------------------------------------------------------------------------- chapter 4

def _layer_table_html(rows, tot: Mapping[str, int], config) -> str:
    """The per-layer table and a line of totals as HTML (what the architecture widget shows)."""
    html = ["<table><tr><th>layer</th><th>output shape</th><th>params</th><th>MACs / image</th></tr>"]
    for r in rows:
        shape = " x ".join(str(s) for s in r.output_shape)
        html.append(f"<tr><td>{r.name}</td><td>{shape}</td><td>{r.params:,}</td><td>{r.macs:,}</td></tr>")
    html.append(f"<tr><th>total</th><td></td><th>{tot['params']:,}</th><th>{tot['macs']:,}</th></tr></table>")
    html.append(f"<p>without decoder: {tot['params_without_decoder']:,} parameters; "
                f"{config.n_primary:,} primary capsules; u_hat per image: "
                f"{config.n_primary * config.n_classes * config.digit_dim:,} numbers</p>")
    return "".join(html)


def architecture_widget(preset: str = "paper"):
    """Chapter 4: pick a preset or change conv1 channels, primary capsule types, image size and routing
    iterations; the per-layer table of shapes, parameters and multiply-adds is recomputed from a real model.

    ``state``: ``rows`` (:class:`capsedu.teaching.architecture.LayerRow` list), ``totals``, ``config`` (dict).
    """
    W = _ipywidgets()
    from ..models import PRESETS, CapsNet
    from .architecture import layer_table, totals

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
            box._muted = True
            try:
                for key in ("conv_channels", "primary_types", "image_size", "routing_iterations"):
                    controls[key].value = getattr(base, key)
                    values[key] = getattr(base, key)
            finally:
                box._muted = False
        sizes = {k: v for k, v in values.items() if k != "preset"}
        model = CapsNet(values["preset"], **sizes)
        rows = layer_table(model)
        tot = totals(rows)
        table.value = _layer_table_html(rows, tot, model.config)
        return {"rows": rows, "totals": tot, "config": model.config.to_dict()}

    box = _interactive_box([W.HBox([controls["preset"], controls["routing_iterations"]]),
                            W.HBox([controls["conv_channels"], controls["primary_types"], controls["image_size"]]),
                            table], compute, controls)
    box.update()
    return box


# ----------------------------------------------------------------------------- chapter 5

def margin_loss_widget(m_pos: float = 0.9, m_neg: float = 0.1, lam: float = 0.5):
    """Chapter 5: sliders for m+, m- and lambda redraw the loss of a present and an absent class (Eq. 4).

    ``state``: the arrays and settings of :func:`capsedu.teaching.margin.margin_loss_curves`, and ``figure``.
    """
    W = _ipywidgets()
    from .margin import margin_loss_curves
    from .plots import plot_margin_loss

    controls = {
        "m_pos": W.FloatSlider(value=m_pos, min=0.5, max=1.0, step=0.05, description="m+"),
        "m_neg": W.FloatSlider(value=m_neg, min=0.0, max=0.5, step=0.05, description="m-"),
        "lam": W.FloatSlider(value=lam, min=0.0, max=1.0, step=0.05, description="lambda"),
    }
    output = W.Output()
    fig, axes = _figure(2, 10, 3.4)

    def compute(values):
        curves = margin_loss_curves(values["m_pos"], values["m_neg"], values["lam"])
        for ax in axes:
            ax.clear()
        plot_margin_loss(curves, ax=axes[0])
        plot_margin_loss(curves, ax=axes[1], gradients=True)
        axes[0].set_title("loss of one digit capsule (Eq. 4)", fontsize=9)
        axes[1].set_title("its slope: the push on ||v|| in training", fontsize=9)
        _show_figure(output, fig)
        return {**curves, "figure": fig}

    box = _interactive_box([W.HBox(list(controls.values())), output], compute, controls)
    box.update()
    return box


# ----------------------------------------------------------------------------- chapter 6

def perturbation_widget(model: torch.nn.Module, poses: torch.Tensor, digit: int = 0, limit: float = 0.25):
    """Chapter 6: a digit selector and one slider per capsule dimension that adds an offset to it;
    the decoder redraws the reconstruction live.

    Args:
        model: a trained :class:`capsedu.models.CapsNet` with a decoder.
        poses: ``(n_classes, digit_dim)``: for each class, the capsule vector of one example of it.
        digit: the class shown first.
        limit: slider range ``[-limit, limit]`` (the paper perturbs by up to 0.25).

    ``state``: ``digit``, ``offsets`` (digit_dim,), ``pose`` (the perturbed vector), ``image`` (H, W) numpy.
    """
    W = _ipywidgets()
    from .decoder import decode_capsule
    from .plots import draw_reconstruction

    poses = torch.as_tensor(poses, dtype=torch.float32).detach()
    n_classes, dim = poses.shape
    controls = {"digit": W.Dropdown(options=list(range(n_classes)), value=digit, description="digit")}
    for d in range(dim):
        controls[f"d{d}"] = W.FloatSlider(value=0.0, min=-limit, max=limit, step=0.01, description=f"dim {d}",
                                          continuous_update=False, layout=W.Layout(width="260px"))
    reset = W.Button(description="reset offsets")
    output = W.Output()
    fig, ax = _figure(1, 2.6, 2.6)

    def compute(values):
        c = int(values["digit"])
        offsets = torch.tensor([values[f"d{d}"] for d in range(dim)], dtype=torch.float32)
        pose = poses[c] + offsets                                    # (digit_dim,) perturbed capsule
        image = decode_capsule(model, pose[None], c)[0].numpy()      # (H, W)
        draw_reconstruction(ax, image, f"digit {c}, ||v|| = {float(pose.norm()):.2f}")
        _show_figure(output, fig)
        return {"digit": c, "offsets": offsets.numpy(), "pose": pose.numpy(), "image": image, "figure": fig}

    sliders = [controls[f"d{d}"] for d in range(dim)]
    grid = W.GridBox(sliders, layout=W.Layout(grid_template_columns="repeat(4, 270px)"))
    box = _interactive_box([W.HBox([controls["digit"], reset]), grid, output], compute, controls)

    def on_reset(_button):
        box.update(**{f"d{d}": 0.0 for d in range(dim)})

    reset.on_click(on_reset)
    box.update()
    return box
