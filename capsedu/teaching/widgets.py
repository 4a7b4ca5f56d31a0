"""ipywidgets front-ends for the book. Each ``*_widget`` function builds and returns a widget
(an ``ipywidgets.VBox``) whose ``update(**values)`` can be called directly by tests, without a browser.
A control change computes with the teaching modules, then draws with :mod:`capsedu.teaching.plots`.

Without a kernel (the HTML book, the slides) a widget cannot move. Every widget therefore also has a
static rendering, ``static_html()`` (its ``_repr_html_``, so it travels in the cell's output next to the
interactive view): the figure or table for a few preset settings (``snapshots``) and a line on how to
run it live. Jupyter shows the interactive view; the static site shows the static one.

Layout: no widget has a fixed total width. Rows of controls wrap (:func:`_row`) and grids of sliders fill
as many columns as the notebook's width allows (:func:`_slider_grid`), so every control and readout stays
visible in a narrow JupyterLab pane (its output area is under 1000 px wide with the file browser open).

ipywidgets is imported lazily so ``capsedu.teaching`` works without Jupyter installed.
"""
from __future__ import annotations

import html
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch

__all__ = ["pooling_widget", "squash_widget", "routing_widget", "architecture_widget", "margin_loss_widget",
           "perturbation_widget"]


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError as exc:  # pragma: no cover - exercised only without the book extra
        raise ImportError("the interactive widgets need ipywidgets: pip install 'capsedu[book]'") from exc
    return ipywidgets


def _row(children: List[Any]):
    """An HBox of controls that wraps onto a new line when the notebook is too narrow for all of them."""
    W = _ipywidgets()
    return W.HBox(children, layout=W.Layout(flex_flow="row wrap", align_items="center"))


#: the narrowest column of a slider grid: room for a label, a short track and the readout
SLIDER_MIN_WIDTH = "230px"


def _slider_grid(sliders: List[Any]):
    """Sliders in as many equal columns as fit (CSS grid ``auto-fill``), each filling its column."""
    W = _ipywidgets()
    for slider in sliders:
        slider.layout.width = "auto"
    return W.GridBox(sliders, layout=W.Layout(
        grid_template_columns=f"repeat(auto-fill, minmax({SLIDER_MIN_WIDTH}, 1fr))", width="100%"))


LIVE_HINT = ("A live widget: a static page has no Python kernel, so here are {what}. To move the controls "
             "yourself, open this chapter in JupyterLab (<code>make book</code> in the repository) and run it.")


def _interactive_box(children: List[Any], compute: Callable[[Dict[str, Any]], Dict[str, Any]],
                     controls: Mapping[str, Any], figure=None, output=None,
                     snapshots: Sequence[Mapping[str, Any]] = (), describe: Optional[Callable] = None,
                     render: Optional[Callable[[Dict[str, Any]], str]] = None):
    """A VBox with ``.update(**values)``, ``.state`` and ``.static_html()``; every control's change calls
    the same update.

    ``compute(values) -> state`` does the work and the drawing into ``figure`` (if any), which the box then
    shows in ``output``; ``controls`` maps names to widgets. Setting a control's ``.value`` triggers
    ``update`` through ``observe``; ``update(**values)`` first moves the controls (without re-triggering)
    then recomputes once.

    The static rendering draws each of ``snapshots`` (partial control values) with the same ``compute``,
    captioned by ``describe(values, state)``, then redraws the current setting. Widgets without a figure
    pass ``render(values) -> html`` instead.
    """
    W = _ipywidgets()

    class InteractiveBox(W.VBox):
        def _repr_html_(self):
            return self.static_html()

    box = InteractiveBox(children)
    box.controls = controls
    box.state = {}
    box.figure = figure
    box.snapshots = [dict(s) for s in snapshots]
    box._muted = False

    def current() -> Dict[str, Any]:
        return {name: c.value for name, c in controls.items()}

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
        box.state = compute(current())
        if output is not None and figure is not None:
            _show_figure(output, figure)
        return box.state

    def static_html() -> str:
        """The figure (or table) for each snapshot setting, with captions, as one HTML block."""
        now = current()
        items = []
        try:
            for snap in box.snapshots:
                values = {**now, **snap}
                if render is not None:
                    body = render(values)
                    caption = describe(values, None) if describe else _describe_values(snap)
                else:
                    state = compute(values)
                    body = (f'<img src="data:image/png;base64,{_png_base64(figure)}" '
                            f'alt="{html.escape(_describe_values(snap))}">')
                    caption = describe(values, state) if describe else _describe_values(snap)
                items.append(f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>")
        finally:
            if render is None and box.snapshots:
                compute(now)                      # leave the live figure as the controls say
        names = ", ".join(getattr(c, "description", n) or n for n, c in controls.items())
        what = f"{len(items)} settings of its controls ({html.escape(names)})"
        return (f'<div class="capsedu-static-widget"><p><em>{LIVE_HINT.format(what=what)}</em></p>'
                + "".join(items) + "</div>")

    def on_change(_change):
        if not box._muted:
            update()

    for c in controls.values():
        c.observe(on_change, names="value")
    box.update = update
    box.static_html = static_html
    return box


def _describe_values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in values.items())


def _png_base64(fig) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


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

def pooling_widget(max_shift: int = 6,
                   snapshots: Sequence[Mapping[str, Any]] = ({"dx": 0, "dy": 0}, {"dx": 4, "dy": -2})):
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
        return {key: readout[key] for key in ("presence", "positions", "centre", "image")}

    def describe(v, state):
        return (f"face shifted by ({v['dx']}, {v['dy']}) px: pooled presence {state['presence'].tolist()} "
                f"(unchanged), centre of the parts (row, col) {[round(float(c), 1) for c in state['centre']]} (moves)")

    box = _interactive_box([_row(list(controls.values())), out], compute, controls, figure=fig, output=out,
                           snapshots=snapshots, describe=describe)
    box.update()
    return box


# ----------------------------------------------------------------------------- chapter 2

def squash_widget(x: float = 1.0, y: float = 0.5, limit: float = 3.0,
                  snapshots: Sequence[Mapping[str, Any]] = ({"x": 0.4, "y": 0.3}, {"x": 2.0, "y": 1.0})):
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
        return {"s": s, "v": v, "length_s": float(s.norm()), "length_v": float(v.norm())}

    def describe(v, state):
        return f"s = ({v['x']:.2f}, {v['y']:.2f}): |s| = {state['length_s']:.2f} -> |v| = {state['length_v']:.3f}"

    box = _interactive_box([_row(list(controls.values())), out], compute, controls, figure=fig, output=out,
                           snapshots=snapshots, describe=describe)
    box.update()
    return box


# ----------------------------------------------------------------------------- chapter 3

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

    box = _interactive_box([controls["iterations"], out, readout], compute, controls, figure=fig, output=out,
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


def architecture_widget(preset: str = "paper",
                        snapshots: Sequence[Mapping[str, Any]] = ({"preset": "paper"}, {"preset": "small"})):
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

    def render(values):
        """The table for a preset's own sizes (a static snapshot; the live controls are left alone)."""
        model = CapsNet(values["preset"])
        rows = layer_table(model)
        return _layer_table_html(rows, totals(rows), model.config)

    def describe(values, _state):
        base = PRESETS[values["preset"]]
        return (f"preset {values['preset']!r}: conv1 {base.conv_channels} channels, {base.primary_types} primary "
                f"capsule types, {base.image_size}x{base.image_size} images, r = {base.routing_iterations}")

    box = _interactive_box([_row([controls["preset"], controls["routing_iterations"]]),
                            _row([controls["conv_channels"], controls["primary_types"], controls["image_size"]]),
                            table], compute, controls, snapshots=snapshots, describe=describe, render=render)
    box.update()
    return box


# ----------------------------------------------------------------------------- chapter 5

def margin_loss_widget(m_pos: float = 0.9, m_neg: float = 0.1, lam: float = 0.5,
                       snapshots: Sequence[Mapping[str, Any]] = ({"m_pos": 0.9, "m_neg": 0.1, "lam": 0.5},
                                                                 {"m_pos": 0.9, "m_neg": 0.1, "lam": 1.0},
                                                                 {"m_pos": 0.6, "m_neg": 0.4, "lam": 0.5})):
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
        return {**curves, "figure": fig}

    def describe(v, _state):
        return f"m+ = {v['m_pos']:.2f}, m- = {v['m_neg']:.2f}, lambda = {v['lam']:.2f}"

    box = _interactive_box([_row(list(controls.values())), output], compute, controls, figure=fig,
                           output=output, snapshots=snapshots, describe=describe)
    box.update()
    return box


# ----------------------------------------------------------------------------- chapter 6

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
    W = _ipywidgets()
    from matplotlib.figure import Figure

    from .decoder import PERTURBATION_DELTAS, decode_capsule, perturbation_grid, rank_dimensions
    from .plots import draw_reconstruction, plot_perturbation_grid

    poses = torch.as_tensor(poses, dtype=torch.float32).detach()
    n_classes, dim = poses.shape
    controls = {"digit": W.Dropdown(options=list(range(n_classes)), value=digit, description="digit")}
    for d in range(dim):
        controls[f"d{d}"] = W.FloatSlider(value=0.0, min=-limit, max=limit, step=0.01, description=f"dim {d}",
                                          continuous_update=False)
    reset = W.Button(description="reset offsets")
    output = W.Output()
    readout = W.HTML()
    fig = Figure(figsize=(6.8, 5.6))                          # not registered with pyplot (see _figure)
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
    box = _interactive_box([_row([controls["digit"], reset]), _slider_grid(sliders), output, readout], compute,
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
