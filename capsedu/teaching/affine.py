"""Robustness to affine warps (paper section 5.2), for the experiments chapter: warp one digit by chosen
angles, shears and scales, and ask a CapsNet and a CNN what they see.

The two models were trained on digits placed at random on a 40x40 canvas (translation only) by
``python -m experiments.run affine_robustness``; they never saw a rotated, sheared or scaled digit.
Computing (:func:`warp`, :func:`predict`, :func:`accuracy_sweep`) is apart from drawing
(:func:`draw_prediction`, :func:`plot_sweep`) and from the widget (:func:`affine_widget`).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from ..data.transforms import RandomAffine, pad_to, to_float

__all__ = ["warp", "predict", "accuracy_sweep", "draw_prediction", "plot_sweep", "affine_widget", "SWEEPS"]

#: What :func:`accuracy_sweep` varies, one at a time, and over which values (the generated test set's
#: ranges are rotation +-20 degrees, shear +-0.1, scale 0.8-1.2: these go further).
SWEEPS: Dict[str, Sequence[float]] = {
    "rotation": (-60, -45, -30, -20, -10, 0, 10, 20, 30, 45, 60),
    "shear": (-0.5, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.5),
    "scale": (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5),
}


def warp(images: torch.Tensor, rotation: float = 0.0, shear: float = 0.0, scale: float = 1.0,
         canvas: int = 40) -> torch.Tensor:
    """Centre ``images (B, C, h, w)`` (uint8 or float) on a ``canvas`` x ``canvas`` zero canvas and warp
    them all by one affine map: ``rotation`` in degrees, horizontal ``shear`` factor, uniform ``scale``
    (:class:`capsedu.data.transforms.RandomAffine`'s parametrisation). Returns float32 in ``[0, 1]``."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    padded = pad_to(to_float(images), canvas)                                   # (B, C, canvas, canvas)
    params = torch.tensor([[math.radians(rotation), shear, scale, scale, 0.0, 0.0]],
                          dtype=torch.float64).expand(images.shape[0], 6)
    return RandomAffine().apply(padded, params).clamp_(0.0, 1.0)


@torch.no_grad()
def predict(capsnet: torch.nn.Module, baseline: Optional[torch.nn.Module], image: torch.Tensor) -> Dict[str, Any]:
    """Both models on one image ``(1, C, H, W)``: the CapsNet's capsule lengths, predicted class and its
    reconstruction of that class; the CNN's softmax probabilities and predicted class (``None`` without
    a ``baseline``)."""
    capsnet.eval()
    out = capsnet(image)
    probs = cls = None
    if baseline is not None:
        probs = torch.softmax(baseline.eval()(image), dim=1)[0]
        cls = int(probs.argmax())
    recon = out.reconstructions
    if recon is not None:
        recon = recon.view(image.shape[1:])
    return {"capsnet_lengths": out.lengths[0], "capsnet_class": int(out.lengths[0].argmax()),
            "reconstruction": recon, "baseline_probs": probs, "baseline_class": cls}


@torch.no_grad()
def accuracy_sweep(models: Mapping[str, torch.nn.Module], images: torch.Tensor, labels: torch.Tensor,
                   sweeps: Mapping[str, Sequence[float]] = SWEEPS, canvas: int = 40, batch_size: int = 500
                   ) -> Dict[str, Dict[str, np.ndarray]]:
    """Accuracy of each model on ``images`` warped by each value of each sweep (one parameter at a time).

    Returns ``{parameter: {"values": array, model_name: accuracies array}}``.
    """
    from ..objectives import scores

    out: Dict[str, Dict[str, np.ndarray]] = {}
    for name, values in sweeps.items():
        row: Dict[str, list] = {m: [] for m in models}
        for value in values:
            kwargs = {name: float(value)}
            correct = {m: 0 for m in models}
            for lo in range(0, len(images), batch_size):
                x = warp(images[lo:lo + batch_size], canvas=canvas, **kwargs)
                y = labels[lo:lo + batch_size]
                for m, model in models.items():
                    model.eval()
                    correct[m] += int((scores(model(x)).argmax(dim=1) == y).sum())
            for m in models:
                row[m].append(correct[m] / len(images))
        out[name] = {"values": np.asarray(values, dtype=float), **{m: np.asarray(v) for m, v in row.items()}}
    return out


# ----------------------------------------------------------------------------- drawing

def draw_prediction(axes: Sequence[Any], image: torch.Tensor, prediction: Mapping[str, Any]) -> None:
    """Three panels: the warped input, the CapsNet's reconstruction, both models' scores per class."""
    ax_in, ax_rec, ax_bar = axes
    for ax in (ax_in, ax_rec, ax_bar):
        ax.clear()
    ax_in.imshow(image[0, 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax_in.set_title("input")
    recon = prediction["reconstruction"]
    if recon is not None:
        ax_rec.imshow(recon[0].numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax_rec.set_title(f"CapsNet reconstructs {prediction['capsnet_class']}")
    for ax in (ax_in, ax_rec):
        ax.set_xticks([]), ax.set_yticks([])
    classes = np.arange(len(prediction["capsnet_lengths"]))
    title = f"CapsNet: {prediction['capsnet_class']}"
    if prediction["baseline_probs"] is None:
        ax_bar.bar(classes, prediction["capsnet_lengths"].numpy(), 0.6, label="CapsNet |v_k|")
    else:
        ax_bar.bar(classes - 0.2, prediction["capsnet_lengths"].numpy(), 0.4, label="CapsNet |v_k|")
        ax_bar.bar(classes + 0.2, prediction["baseline_probs"].numpy(), 0.4, label="CNN softmax")
        title += f"   CNN: {prediction['baseline_class']}"
    ax_bar.set_xticks(classes), ax_bar.set_ylim(0, 1.5), ax_bar.set_yticks([0, 0.5, 1])
    ax_bar.set_title(title)
    ax_bar.legend(loc="upper center", fontsize=9)             # above the bars (all <= 1), covering none


def plot_sweep(axes: Sequence[Any], sweep: Mapping[str, Mapping[str, np.ndarray]],
               units: Mapping[str, str] = {"rotation": "degrees", "shear": "factor", "scale": "factor"}) -> None:
    """Accuracy against each warp parameter, one panel per parameter, one line per model."""
    for ax, (name, row) in zip(axes, sweep.items()):
        for model, acc in row.items():
            if model != "values":
                ax.plot(row["values"], 100 * acc, marker="o", label=model)
        ax.set_xlabel(f"{name} ({units.get(name, '')})", fontsize=12), ax.set_ylabel("test accuracy (%)", fontsize=12)
        ax.set_ylim(0, 100), ax.grid(alpha=0.3), ax.tick_params(labelsize=12)
    axes[0].legend(fontsize=12)


# ----------------------------------------------------------------------------- widget

def affine_widget(capsnet: torch.nn.Module, baseline: Optional[torch.nn.Module], digits: torch.Tensor,
                  canvas: int = 40, snapshots: Sequence[Mapping[str, Any]] = (
                      {"rotation": 0, "shear": 0.0, "scale": 1.0}, {"rotation": 30, "shear": 0.0, "scale": 1.0},
                      {"rotation": -20, "shear": 0.3, "scale": 0.8})):
    """Chapter 7: rotate, shear and scale a test digit with sliders and watch both models' predictions
    and the CapsNet's reconstruction change. ``digits``: a few test digits ``(n, 1, 28, 28)`` to pick from;
    ``canvas``: the models' input size (the digits are centred on it, then warped); ``baseline`` may be
    ``None`` (the CapsNet alone).

    ``state``: the warped ``image``, and :func:`predict`'s dict.
    """
    from .interactive import InteractiveFigure, new_figure, slider_grid
    import ipywidgets as W

    controls = {
        "digit": W.IntSlider(0, 0, len(digits) - 1, description="test digit"),
        "rotation": W.IntSlider(0, -90, 90, step=5, description="rotation °"),
        "shear": W.FloatSlider(0.0, min=-0.6, max=0.6, step=0.05, description="shear"),
        "scale": W.FloatSlider(1.0, min=0.5, max=1.6, step=0.05, description="scale"),
    }
    fig, axes = new_figure(3, 7.8, 3.0)     # at most the book's column wide: its text stays 11+ px there
    out = W.Output()
    # two sliders to a line at most: a track a few hundred pixels long moves a few degrees per step
    sliders = slider_grid(list(controls.values()), min_width="400px")

    def compute(v):
        image = warp(digits[v["digit"]:v["digit"] + 1], v["rotation"], v["shear"], v["scale"], canvas)
        prediction = predict(capsnet, baseline, image)
        draw_prediction(axes, image, prediction)
        fig.tight_layout()
        return {"image": image, **prediction}

    def describe(v, state):
        text = (f"rotation {v['rotation']} degrees, shear {v['shear']}, scale {v['scale']}: CapsNet says "
                f"{state['capsnet_class']}")
        return text + ("" if state["baseline_class"] is None else f", the CNN says {state['baseline_class']}")

    box = InteractiveFigure([sliders, out], compute, controls, figure=fig, output=out, snapshots=snapshots,
                           describe=describe)
    box.update()
    return box
