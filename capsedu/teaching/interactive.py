"""The book's interactive figures: :class:`InteractiveFigure`, an ipywidgets box whose controls recompute
and redraw, and the layout pieces every chapter's widget is built from.

Each chapter's widget (``pooling_widget`` in :mod:`~capsedu.teaching.motivation`, ``squash_widget`` in
:mod:`~capsedu.teaching.squashing`, ...) is an :class:`InteractiveFigure` whose ``update(**values)`` tests
call directly, without a browser. Without a kernel (the HTML book, the slides) a widget cannot move, so
every one also has a static rendering, :meth:`InteractiveFigure.static_html` (its ``_repr_html_``, so it
travels in the cell's output next to the interactive view): the figure or table for a few preset settings
(``snapshots``) and a line on how to run it live.

Layout: no widget has a fixed total width. Rows of controls wrap (:func:`control_row`) and grids of sliders
fill as many columns as the notebook's width allows (:func:`slider_grid`), so every control and readout
stays visible in a narrow JupyterLab pane (its output area is under 1000 px wide with the file browser open).

This module needs ipywidgets (``pip install 'capsedu[book]'``); the chapters' modules import it only when
a widget is built, so their computations work without Jupyter.
"""
from __future__ import annotations

import base64
import contextlib
import html
import io
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

try:
    import ipywidgets as W
except ImportError as exc:  # pragma: no cover - exercised only without the book extra
    raise ImportError("the interactive widgets need ipywidgets: pip install 'capsedu[book]'") from exc

__all__ = ["InteractiveFigure", "control_row", "slider_grid", "new_figure", "SLIDER_MIN_WIDTH", "LIVE_HINT",
           "STATIC_DPI"]

#: the narrowest column of a slider grid: room for a label, a short track and the readout
SLIDER_MIN_WIDTH = "230px"

#: the resolution of a widget's static rendering (the figures a page without a kernel shows)
STATIC_DPI = 90

LIVE_HINT = ("A live widget: a static page has no Python kernel, so here are {what}. To move the controls "
             "yourself, open this chapter in JupyterLab (<code>make book</code> in the repository) and run it.")


def control_row(children: List[Any]) -> "W.HBox":
    """An HBox of controls that wraps onto a new line when the notebook is too narrow for all of them."""
    return W.HBox(children, layout=W.Layout(flex_flow="row wrap", align_items="center"))


def slider_grid(sliders: List[Any], min_width: str = SLIDER_MIN_WIDTH) -> "W.GridBox":
    """Sliders in as many equal columns of at least ``min_width`` as fit (CSS grid ``auto-fill``), each
    filling its column."""
    for slider in sliders:
        slider.layout.width = "auto"
    return W.GridBox(sliders, layout=W.Layout(
        grid_template_columns=f"repeat(auto-fill, minmax({min_width}, 1fr))", width="100%"))


def new_figure(ncols: int, width: float = 9.0, height: float = 3.2):
    """A matplotlib Figure not registered with pyplot (so notebooks don't display it twice), and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, ncols)


class InteractiveFigure(W.VBox):
    """A VBox of controls and outputs where every control's change recomputes and redraws.

    Args:
        children: the widgets shown, top to bottom (rows of controls, the figure's ``output``, readouts).
        compute: ``compute(values) -> state`` does the work for the controls' ``values`` and draws into
            ``figure`` (if any); the box keeps the result as ``state``.
        controls: name -> control widget; setting a control's ``.value`` recomputes.
        figure: the matplotlib figure ``compute`` draws into, shown in ``output`` after each update.
        output: an ``ipywidgets.Output`` for ``figure``.
        snapshots: partial control settings drawn by :meth:`static_html`.
        describe: ``describe(values, state) -> str``, a snapshot's caption (default: the values).
        render: ``render(values) -> html`` for widgets without a figure (a table): a snapshot's body.
    """

    def __init__(self, children: Sequence[Any], compute: Callable[[Dict[str, Any]], Dict[str, Any]],
                 controls: Mapping[str, Any], figure=None, output=None,
                 snapshots: Sequence[Mapping[str, Any]] = (), describe: Optional[Callable] = None,
                 render: Optional[Callable[[Dict[str, Any]], str]] = None):
        super().__init__(list(children))
        self.controls = dict(controls)
        self.state: Dict[str, Any] = {}
        self.figure = figure
        self.snapshots = [dict(s) for s in snapshots]
        self._compute, self._output, self._describe, self._render = compute, output, describe, render
        self._muted = False
        for control in self.controls.values():
            control.observe(self._on_change, names="value")

    def current_values(self) -> Dict[str, Any]:
        """The controls' values, by name."""
        return {name: c.value for name, c in self.controls.items()}

    @contextlib.contextmanager
    def muted(self) -> Iterator[None]:
        """Move controls inside this block without each move recomputing."""
        self._muted = True
        try:
            yield
        finally:
            self._muted = False

    def update(self, **values) -> Dict[str, Any]:
        """Move the named controls (one recomputation, not one per control), recompute, redraw; returns ``state``."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; this widget has {sorted(self.controls)}")
        with self.muted():
            for name, value in values.items():
                self.controls[name].value = value
        self.state = self._compute(self.current_values())
        if self._output is not None and self.figure is not None:
            from IPython.display import display

            with self._output:
                self._output.clear_output(wait=True)
                display(self.figure)
        return self.state

    def static_html(self) -> str:
        """The figure (or table) for each snapshot setting, with captions, as one HTML block; the live
        controls, state and figure are left as they were."""
        now = self.current_values()
        items = []
        try:
            for snap in self.snapshots:
                values = {**now, **snap}
                if self._render is not None:
                    body, state = self._render(values), None
                else:
                    state = self._compute(values)
                    body = (f'<img src="data:image/png;base64,{_png_base64(self.figure)}" '
                            f'alt="{html.escape(_describe_values(snap))}">')
                caption = self._describe(values, state) if self._describe else _describe_values(snap)
                items.append(f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>")
        finally:
            if self._render is None and self.snapshots:
                self._compute(now)                # leave the live figure as the controls say
        names = ", ".join(getattr(c, "description", n) or n for n, c in self.controls.items())
        what = f"{len(items)} settings of its controls ({html.escape(names)})"
        return (f'<div class="capsedu-static-widget"><p><em>{LIVE_HINT.format(what=what)}</em></p>'
                + "".join(items) + "</div>")

    def _repr_html_(self) -> str:
        return self.static_html()

    def _on_change(self, _change) -> None:
        if not self._muted:
            self.update()


def _describe_values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in values.items())


def _png_base64(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=STATIC_DPI, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
