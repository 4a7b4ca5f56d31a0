"""Chapter 1: what max-pooling keeps and what it throws away, made exact on small examples.

* :func:`detect_1d`, :func:`presence_and_position_1d`: the slides' 1-D example of invariance
  (presence) versus equivariance (instantiation parameters).
* :func:`face_image`, :func:`detect_parts`, :func:`max_pool_presence`, :func:`capsule_readout`,
  :func:`face_readout`: a 28x28 cartoon face made of parts, matched-filter part detectors, global
  max pooling (what a pooling CNN keeps) and a capsule-like readout (presence *and* position) of
  the same detector maps.
* :class:`PoolingCNN`, :func:`train_pooling_cnn`: a small max-pooling CNN for MNIST and its own
  short training loop.
* :func:`displace_top_half`, :func:`scramble_patches`: move parts of a digit, keep the parts.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
from matplotlib.axes import Axes

from ..objectives import CrossEntropy
from ..train import train_epoch
from .images import as_numpy, draw_flow

__all__ = [
    "TEMPLATES_1D", "detect_1d", "presence_and_position_1d",
    "PART_TEMPLATES", "FACE_LAYOUT", "SCRAMBLED_LAYOUT", "face_image", "detect_parts", "max_pool_presence",
    "capsule_readout", "part_centres", "face_readout",
    "PoolingCNN", "train_pooling_cnn", "scramble_patches", "displace_top_half",
    "plot_pooling_vs_pose", "draw_transforming_autoencoder", "pooling_widget",
]

# ----------------------------------------------------------------------------- 1-D invariance vs equivariance

#: Four 1-D "entity" templates of width 2. Type 1 is the pattern (3, 2) of the slides' example.
TEMPLATES_1D = torch.tensor([[1.0, 1.0], [3.0, 2.0], [2.0, 3.0], [1.0, 4.0]])


def detect_1d(x: torch.Tensor, templates: torch.Tensor = TEMPLATES_1D, sharpness: float = 3.0) -> torch.Tensor:
    """Place-coded detector maps: ``exp(-sharpness * ||window - template||^2)`` at every position.

    ``x (L,)`` -> ``(n_types, L - width + 1)``; 1 where a window equals a template exactly.
    A convolution layer in disguise: it is translation *equivariant* (shift x, the map shifts).
    """
    width = templates.shape[1]
    windows = x.unfold(0, width, 1)  # (positions, width)
    d2 = ((windows.unsqueeze(0) - templates.unsqueeze(1)) ** 2).sum(-1)  # (n_types, positions)
    return torch.exp(-sharpness * d2)


def presence_and_position_1d(maps: torch.Tensor, beta: float = 20.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Capsule-like readout of ``maps (n_types, positions)``.

    Returns ``presence (n_types,)`` = max over positions (invariant, what pooling keeps) and
    ``position (n_types,)`` = soft-argmax position (equivariant, what pooling throws away).
    """
    presence = maps.amax(dim=1)
    weights = torch.softmax(beta * maps, dim=1)
    position = (weights * torch.arange(maps.shape[1], dtype=maps.dtype)).sum(1)
    return presence, position


# ----------------------------------------------------------------------------- a face made of parts

#: Binary part templates (matched filters): an eye (a plus), a nose (a vertical bar), a mouth (a smile).
PART_TEMPLATES: Dict[str, torch.Tensor] = {
    "eye": torch.tensor([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float32),
    "nose": torch.tensor([[1], [1], [1], [1]], dtype=torch.float32),
    "mouth": torch.tensor([[1, 0, 0, 0, 0, 0, 1], [0, 1, 1, 1, 1, 1, 0]], dtype=torch.float32),
}

#: Top-left (row, col) of each part on a 28x28 canvas: a face ...
FACE_LAYOUT: List[Tuple[str, int, int]] = [("eye", 8, 7), ("eye", 8, 18), ("nose", 11, 13), ("mouth", 18, 10)]
#: ... and the same parts, shuffled around (the "Picasso face").
SCRAMBLED_LAYOUT: List[Tuple[str, int, int]] = [("mouth", 6, 10), ("eye", 17, 5), ("eye", 12, 20), ("nose", 16, 13)]


def face_image(layout: Sequence[Tuple[str, int, int]] = FACE_LAYOUT, size: int = 28, shift: Tuple[int, int] = (0, 0)
               ) -> torch.Tensor:
    """Draw the parts of ``layout`` at their (row + dy, col + dx) positions: ``(size, size)`` in {0, 1}.

    ``shift`` is ``(dy, dx)`` in pixels; a part pushed off the canvas raises ``ValueError``.
    """
    img = torch.zeros(size, size)
    dy, dx = shift
    for name, r, c in layout:
        t = PART_TEMPLATES[name]
        r, c = r + dy, c + dx
        if r < 0 or c < 0 or r + t.shape[0] > size or c + t.shape[1] > size:
            raise ValueError(f"part {name!r} at ({r}, {c}) does not fit on a {size}x{size} canvas")
        img[r:r + t.shape[0], c:c + t.shape[1]] = torch.maximum(img[r:r + t.shape[0], c:c + t.shape[1]], t)
    return img


def detect_parts(image: torch.Tensor) -> torch.Tensor:
    """Matched-filter detector maps of ``image (size, size)``, one per part type: ``(n_types, size, size)``.

    Each template is correlated with the image ('same' padding, anchored at the template's
    top-left corner) and normalised by its energy, then thresholded so an exact match gives 1
    and anything less than 90% of a match gives 0. A convolution + ReLU layer, written by hand.
    """
    size = image.shape[-1]
    maps = []
    for t in PART_TEMPLATES.values():
        kh, kw = t.shape
        padded = F.pad(image[None, None], (0, kw - 1, 0, kh - 1))
        resp = F.conv2d(padded, t[None, None]) / t.sum()  # (1, 1, size, size)
        maps.append(torch.clamp((resp[0, 0] - 0.9) / 0.1, min=0.0, max=1.0)[:size, :size])
    return torch.stack(maps)


def max_pool_presence(maps: torch.Tensor) -> torch.Tensor:
    """What a CNN with global max pooling keeps of ``maps (n_types, H, W)``: one number per type."""
    return maps.flatten(1).amax(dim=1)


def capsule_readout(maps: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Presence *and* instantiation parameters of every detection in ``maps (n_types, H, W)``.

    Returns ``presence (n_types,)`` (max, as pooling), ``count (n_types,)`` (number of detections)
    and ``positions``: a ``(n_detections, 3)`` tensor of ``(type, row, col)`` rows, sorted.
    """
    hits = torch.nonzero(maps > 0.5)  # (n_detections, 3): type, row, col
    return {"presence": max_pool_presence(maps), "count": torch.bincount(hits[:, 0], minlength=maps.shape[0]),
            "positions": hits}


def part_centres(positions: torch.Tensor) -> torch.Tensor:
    """Centre ``(row, col)`` of each detected part, from ``positions (n, 3)`` rows ``(type, row, col)``.

    Detections are anchored at the template's top-left corner; the centre is where a reader sees the part.
    """
    sizes = torch.tensor([t.shape for t in PART_TEMPLATES.values()], dtype=torch.float64)  # (n_types, 2)
    return positions[:, 1:].double() + (sizes[positions[:, 0]] - 1) / 2


def face_readout(shift: Tuple[int, int] = (0, 0), layout: Sequence[Tuple[str, int, int]] = FACE_LAYOUT
                 ) -> Dict[str, torch.Tensor]:
    """Draw the face shifted by ``(dy, dx)``, detect its parts and read them out both ways.

    Returns ``image (28, 28)``, ``maps (n_types, 28, 28)``, the :func:`capsule_readout` entries
    (``presence``, ``count``, ``positions``), ``centres (n, 2)`` of the detected parts and ``centre``,
    the mean ``(row, col)`` of the detections (moves with the face; ``presence`` does not).
    """
    image = face_image(layout, shift=shift)
    maps = detect_parts(image)
    readout = capsule_readout(maps)
    return {"image": image, "maps": maps, **readout, "centres": part_centres(readout["positions"]),
            "centre": readout["positions"][:, 1:].double().mean(0)}


# ----------------------------------------------------------------------------- a pooling CNN on MNIST

class PoolingCNN(nn.Module):
    """conv 5x5 -> ReLU -> max-pool 2 -> conv 5x5 -> ReLU -> *global* max-pool -> linear.

    The global max pool keeps, for every feature, only "how strongly is it somewhere", which is
    exactly what Hinton's criticism is about. ``features`` gives the maps before pooling,
    ``pooled`` the vector after it.
    """

    def __init__(self, channels: Tuple[int, int] = (16, 32), n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels[0], 5)
        self.conv2 = nn.Conv2d(channels[0], channels[1], 5)
        self.fc = nn.Linear(channels[1], n_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 28, 28)`` -> feature maps ``(B, channels[1], 8, 8)``."""
        x = F.max_pool2d(F.relu(self.conv1(images)), 2)
        return F.relu(self.conv2(x))

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """Global max over positions: ``(B, channels[1])``."""
        return self.features(images).amax(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(images))


def train_pooling_cnn(images: torch.Tensor, labels: torch.Tensor, steps: int = 300, batch_size: int = 64,
                      lr: float = 3e-3, seed: int = 0) -> Tuple[PoolingCNN, List[float]]:
    """Train a :class:`PoolingCNN` with Adam on float ``images (N, 1, 28, 28)``; returns (model, losses).

    Each step draws ``batch_size`` random examples (with replacement) and takes one step of the
    library's loop (:func:`capsedu.train.train_epoch`, cross-entropy). Runs on one CPU thread (restored afterwards): for convolutions this small, synchronising threads
    costs more than it saves, and on a busy shared machine it can be many times slower.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = PoolingCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses: List[float] = []

    def random_batches():
        for _ in range(steps):
            idx = torch.randint(images.shape[0], (batch_size,), generator=g)
            yield images[idx], labels[idx]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_epoch(model, random_batches(), opt, objective=CrossEntropy(), progress=False,
                    on_step=lambda record: losses.append(float(record.loss)))
    finally:
        torch.set_num_threads(threads)
    return model.eval(), losses


# ----------------------------------------------------------------------------- moving parts of a digit

def scramble_patches(images: torch.Tensor, grid: int = 2, perm: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Cut ``images (..., H, W)`` into ``grid x grid`` patches and put them back in the order ``perm``.

    The default permutation reverses the patch order (for 2x2: swaps diagonally opposite quadrants),
    so every part lands somewhere else while all of them stay in the picture.
    """
    h, w = images.shape[-2:]
    if h % grid or w % grid:
        raise ValueError(f"image size {h}x{w} is not divisible by grid {grid}")
    n = grid * grid
    perm = list(range(n))[::-1] if perm is None else list(perm)
    if sorted(perm) != list(range(n)):
        raise ValueError(f"perm must be a permutation of range({n}), got {perm}")
    ph, pw = h // grid, w // grid
    patches = [images[..., (k // grid) * ph:(k // grid + 1) * ph, (k % grid) * pw:(k % grid + 1) * pw] for k in range(n)]
    rows = [torch.cat([patches[perm[r * grid + c]] for c in range(grid)], dim=-1) for r in range(grid)]
    return torch.cat(rows, dim=-2)


def displace_top_half(images: torch.Tensor, shift: int) -> torch.Tensor:
    """Move the top half of ``images (..., H, W)`` ``shift`` pixels to the right (zero fill), leaving the
    bottom half in place: the parts stay intact, their relative position changes."""
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    h, w = images.shape[-2:]
    out = images.clone()
    if shift:
        out[..., :h // 2, :] = 0
        out[..., :h // 2, shift:] = images[..., :h // 2, :w - shift]
    return out


# ----------------------------------------------------------------------------- drawing

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
    im = ax_img.imshow(as_numpy(readout["image"]), cmap="gray_r")
    pos, centres = as_numpy(readout["positions"]), as_numpy(readout["centres"]).reshape(-1, 2)
    marks = ax_img.scatter(centres[:, 1], centres[:, 0], edgecolors=[f"C{t}" for t in pos[:, 0]],
                           s=250, marker="s", facecolors="none", linewidths=1.5)
    for t, r, c in pos:
        # above the part, or to its right where another part sits just above it (the nose under the eyes)
        crowded = any(0 < r - r2 <= 4 for _, r2, _ in pos)
        ax_img.annotate(f"{part_names[t]} ({r},{c})", (c, r), xytext=(12, 0) if crowded else (0, 12),
                        textcoords="offset points", fontsize=9, color=f"C{t}", ha="left" if crowded else "center",
                        va="center" if crowded else "baseline")
    ax_img.set_title("picture + capsule readout (type, row, col)", fontsize=9)
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    bars = ax_bar.bar(list(part_names), as_numpy(readout["presence"]), color=[f"C{k}" for k in range(len(part_names))])
    ax_bar.set_ylim(0, 1.1)
    ax_bar.set_title("global max-pool: what a CNN keeps", fontsize=9)
    return {"image": im, "marks": marks, "bars": bars}


def draw_transforming_autoencoder(ax: Optional[Axes] = None, capsules: int = 3) -> Dict[str, object]:
    """The slides' earlier capsules (slide 12; Hinton, Krizhevsky & Wang, 2011): each capsule's recognition
    units read the image and output a probability $p$ and a position $(x, y)$; the known shift
    $(\\Delta x, \\Delta y)$ is added; generation units draw the capsule's part at the new position, scaled by
    $p$; the parts are summed into the shifted image the network is trained to produce. Returns
    :func:`~capsedu.teaching.images.draw_flow`'s record."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8.4, 1.3 * capsules + 0.4))
    # each text is broken into short lines, so that the five boxes of a row fit the book's column at a
    # readable size
    boxes = {"image": (0.0, capsules - 1.0, "input image", "#dddddd"),
             "output": (16.0, capsules - 1.0, "output: the\nimage shifted\nby $(\\Delta x, \\Delta y)$", "#dddddd")}
    arrows = []
    for k in range(capsules):
        y = 2.0 * (capsules - 1 - k)
        boxes[f"rec{k}"] = (4.0, y, f"capsule {k + 1}:\nrecognition\nunits", "#a1d99b")
        boxes[f"pose{k}"] = (8.0, y, "$p$\n$x + \\Delta x$\n$y + \\Delta y$", "#fdd0a2")
        boxes[f"gen{k}"] = (12.0, y, "generation\nunits:\noutput $\\times\\ p$", "#9ecae1")
        arrows += [("image", f"rec{k}", ""), (f"rec{k}", f"pose{k}", ""), (f"pose{k}", f"gen{k}", ""),
                   (f"gen{k}", "output", "")]
    return draw_flow(ax, boxes, arrows, size=(3.2, 1.55), fontsize=10)


# ----------------------------------------------------------------------------- widget

def pooling_widget(max_shift: int = 6,
                   snapshots: Sequence[Mapping[str, Any]] = ({"dx": 0, "dy": 0}, {"dx": 4, "dy": -2})):
    """Chapter 1: shift the cartoon face (sliders ``dx``, ``dy`` in pixels, up to ``max_shift``).

    The max-pooled part presence (what a pooling CNN keeps) stays exactly the same, while the
    capsule-like readout (part positions) moves with the face.
    ``state``: ``presence (3,)``, ``positions (n, 3)`` rows ``(type, row, col)``, ``centre`` (mean row, col
    of the detections), ``image``.
    """
    from .interactive import InteractiveFigure, control_row, new_figure
    import ipywidgets as W

    controls = {"dx": W.IntSlider(0, -max_shift, max_shift, description="shift x"),
                "dy": W.IntSlider(0, -max_shift, max_shift, description="shift y")}
    fig, axes = new_figure(2, 8, 3.4)
    out = W.Output()

    def compute(v):
        readout = face_readout(shift=(v["dy"], v["dx"]))
        plot_pooling_vs_pose(axes, readout, list(PART_TEMPLATES))
        return {key: readout[key] for key in ("presence", "positions", "centre", "image")}

    def describe(v, state):
        return (f"face shifted by ({v['dx']}, {v['dy']}) px: pooled presence {state['presence'].tolist()} "
                f"(unchanged), centre of the parts (row, col) {[round(float(c), 1) for c in state['centre']]} (moves)")

    box = InteractiveFigure([control_row(list(controls.values())), out], compute, controls, figure=fig, output=out,
                           snapshots=snapshots, describe=describe)
    box.update()
    return box
