"""Plotting helpers for the book (matplotlib only; no Jupyter needed).

Each function draws into a given ``ax`` (or makes a figure) and returns what it drew, so tests
can check the plotted values without a screen.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

# ---- section: chapters 1-3 (motivation, squash, routing) ----

def show_images(axes, images, titles=None, cmap="gray_r"):
    """Draw ``images`` (a sequence or a ``(N, [1,] H, W)`` tensor) into ``axes`` side by side, no ticks.

    Returns the list of ``AxesImage`` artists.
    """
    artists = []
    for k, ax in enumerate(np.atleast_1d(axes)):
        img = images[k]
        img = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        artists.append(ax.imshow(img.reshape(img.shape[-2:]), cmap=cmap))
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[k], fontsize=9)
    return artists


#: Outline of each cartoon-face part in its own frame (unit size), for :func:`draw_face_scene`.
def _part_outline(name):
    t = np.linspace(0, 2 * np.pi, 40)
    if name.endswith("eye"):
        return np.stack([np.cos(t), 0.6 * np.sin(t)])
    if name == "nose":
        return np.array([[0.0, -0.6, 0.6, 0.0], [1.0, -0.6, -0.6, 1.0]])
    if name == "mouth":
        u = np.linspace(-1, 1, 30)
        return np.stack([np.concatenate([u, u[::-1]]), np.concatenate([0.35 * u ** 2 - 0.15, 0.5 * u[::-1] ** 2 - 0.35])])
    return np.stack([np.cos(t), np.sin(t)])  # the face itself: a unit circle


def _apply_pose(pose, xy):
    p = pose.detach().cpu().numpy() if isinstance(pose, torch.Tensor) else np.asarray(pose)
    return p[:2, :2] @ xy + p[:2, 2:3]


def draw_face_scene(ax, whole, parts=None, observed=None, votes=None, color="C0"):
    """Draw a face scene graph: the face outline under pose ``whole`` and each part under its pose.

    ``parts`` maps names to poses relative to the face (default :data:`capsedu.poses.FACE_PARTS`);
    ``observed`` (name -> pose in the picture) overrides where the parts are drawn (e.g. scrambled);
    ``votes`` (name -> predicted face pose) are drawn as dashed outlines, one per part.
    Returns ``{"outline": line, "parts": {name: line}, "votes": {name: line}}``.
    """
    from .poses import FACE_PARTS, place_parts

    parts = FACE_PARTS if parts is None else parts
    where = place_parts(whole, parts) if observed is None else observed
    out = {"outline": None, "parts": {}, "votes": {}}
    if whole is not None:
        xy = _apply_pose(whole, _part_outline("face"))
        out["outline"], = ax.plot(xy[0], xy[1], color=color, lw=2)
    for name, pose in where.items():
        xy = _apply_pose(pose, _part_outline(name))
        out["parts"][name], = ax.plot(xy[0], xy[1], color="k", lw=1.5)
    for k, (name, pose) in enumerate((votes or {}).items()):
        xy = _apply_pose(pose, _part_outline("face"))
        out["votes"][name], = ax.plot(xy[0], xy[1], ls="--", lw=1, color=f"C{k + 1}", label=f"vote of {name}")
    ax.set_aspect("equal")
    return out


def plot_pooling_vs_pose(axes, image, maps, readout):
    """Chapter 1 widget panel: the picture with detections marked, and the max-pooled presence.

    ``axes``: two axes. ``maps`` from :func:`capsedu.toys.detect_parts`, ``readout`` from
    :func:`capsedu.toys.capsule_readout`. Returns ``{"image": AxesImage, "marks": PathCollection, "bars": BarContainer}``.
    """
    from .toys import PART_TEMPLATES

    ax_img, ax_bar = axes
    ax_img.clear()
    ax_bar.clear()
    names = list(PART_TEMPLATES)
    im = ax_img.imshow(image.numpy(), cmap="gray_r")
    pos = readout["positions"].numpy()
    centre = np.array([[(PART_TEMPLATES[names[t]].shape[1] - 1) / 2, (PART_TEMPLATES[names[t]].shape[0] - 1) / 2]
                       for t in pos[:, 0]]).reshape(-1, 2)  # template centre offsets (x, y)
    marks = ax_img.scatter(pos[:, 2] + centre[:, 0], pos[:, 1] + centre[:, 1], edgecolors=[f"C{t}" for t in pos[:, 0]],
                           s=250, marker="s", facecolors="none", linewidths=1.5)
    for t, r, c in pos:
        ax_img.annotate(f"{names[t]} ({r},{c})", (c, r), xytext=(0, 12), textcoords="offset points",
                        fontsize=7, color=f"C{t}")
    ax_img.set_title("picture + capsule readout (type, row, col)", fontsize=9)
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    bars = ax_bar.bar(names, readout["presence"].numpy(), color=[f"C{k}" for k in range(len(names))])
    ax_bar.set_ylim(0, 1.1)
    ax_bar.set_title("global max-pool: what a CNN keeps", fontsize=9)
    return {"image": im, "marks": marks, "bars": bars}


def plot_squash_1d(ax, limit=5.0, n=401):
    """The slides' 1-D squash plot: ``v = s^2 / (1 + s^2) * sign(s)`` for scalar ``s``.

    Returns ``(s, v)`` as numpy arrays (computed with :func:`capsedu.functional.squash`).
    """
    from .functional import squash

    s = torch.linspace(-limit, limit, n)
    v = squash(s.unsqueeze(-1)).squeeze(-1)
    ax.plot(s.numpy(), v.numpy(), lw=2, label="squash(s)")
    ax.axhline(1, color="gray", ls=":", lw=1)
    ax.axhline(-1, color="gray", ls=":", lw=1)
    ax.set_xlabel("s (1-D input)")
    ax.set_ylabel("v")
    return s.numpy(), v.numpy()


def plot_length_histograms(axes, dims=(2, 8, 16), n=2000, scale=1.0, seed=0, bins=40):
    """For each ``d`` in ``dims``: histogram of ``|s|`` and ``|squash(s)|`` for ``s ~ N(0, scale^2 / d I)``.

    The ``1/d`` keeps ``E|s|^2 = scale^2`` equal across dimensions. Returns ``{d: (len_s, len_v)}``.
    """
    from .functional import squash

    g = torch.Generator().manual_seed(seed)
    out = {}
    for ax, d in zip(np.atleast_1d(axes), dims):
        s = torch.randn(n, d, generator=g) * scale / d ** 0.5
        ls, lv = s.norm(dim=-1), squash(s).norm(dim=-1)
        ax.hist(ls.numpy(), bins=bins, alpha=0.5, label="|s|", density=True)
        ax.hist(lv.numpy(), bins=bins, alpha=0.5, label="|v| = |squash(s)|", density=True)
        ax.axvline(1.0, color="k", ls=":", lw=1)
        ax.set_title(f"d = {d}", fontsize=9)
        out[d] = (ls.numpy(), lv.numpy())
    return out


def plot_squash_gradient(ax, max_norm=4.0, n=200):
    """``d|v|/d|s|`` against ``|s|``: autograd through :func:`~capsedu.functional.squash` (points) and
    the analytic ``2|s| / (1 + |s|^2)^2`` (line). Returns ``(norms, autograd, analytic)`` numpy arrays."""
    from .functional import squash

    norms = torch.linspace(1e-3, max_norm, n, dtype=torch.float64)
    direction = torch.tensor([0.6, 0.8], dtype=torch.float64)
    t = norms.clone().requires_grad_(True)
    lengths = squash(t.unsqueeze(-1) * direction).norm(dim=-1)
    grad, = torch.autograd.grad(lengths.sum(), t)
    analytic = 2 * norms / (1 + norms ** 2) ** 2
    ax.plot(norms.numpy(), analytic.numpy(), lw=2, label="analytic 2|s|/(1+|s|²)²")
    ax.plot(norms.numpy()[::8], grad.numpy()[::8], "o", ms=4, label="autograd")
    ax.set_xlabel("|s|")
    ax.set_ylabel("d|v| / d|s|")
    return norms.numpy(), grad.numpy(), analytic.numpy()


def draw_squash_2d(ax, s, limit=3.0):
    """Draw a 2-D vector ``s``, its squash ``v`` and the unit circle. Returns ``{"s", "v", "arrows", "circle"}``."""
    from .functional import squash

    s = torch.as_tensor(s, dtype=torch.float32).reshape(2)
    v = squash(s)
    ax.clear()
    t = np.linspace(0, 2 * np.pi, 200)
    circle, = ax.plot(np.cos(t), np.sin(t), color="gray", ls=":", lw=1)
    arrows = [ax.annotate("", xy=tuple(vec.tolist()), xytext=(0, 0),
                          arrowprops=dict(arrowstyle="->", lw=lw, color=col))
              for vec, lw, col in ((s, 1.5, "C0"), (v, 3, "C3"))]
    ax.plot([], [], color="C0", label=f"s, |s| = {float(s.norm()):.2f}")
    ax.plot([], [], color="C3", lw=3, label=f"v = squash(s), |v| = {float(v.norm()):.3f}")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    return {"s": s, "v": v, "arrows": arrows, "circle": circle}


def plot_coincidence(ax, dims=range(2, 17), thresholds=(0.8, 0.9, 0.95)):
    """P(two random directions have cosine > t) against dimension, log scale. Returns ``{t: probabilities}``."""
    from .toys import coincidence_probability

    dims = list(dims)
    out = {}
    for t in thresholds:
        p = np.array([coincidence_probability(d, t) for d in dims])
        ax.semilogy(dims, p, "o-", ms=3, label=f"cos > {t}")
        out[t] = p
    ax.set_xlabel("dimension of the prediction vectors")
    ax.set_ylabel("P(agreement by chance)")
    return out


def plot_votes(axes, u_hat, couplings, outputs, limit=2.0):
    """One panel per parent j: the 2-D votes ``u_hat_{j|i}`` as arrows whose width and opacity grow
    with ``c_ij``, and the output ``v_j`` as a thick red arrow.

    ``u_hat (n_in, n_out, 2)``, ``couplings (n_in, n_out)``, ``outputs (n_out, 2)`` (one example).
    Returns the list of panels' vote arrows ``[[FancyArrow per child] per parent]``.
    """
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


def plot_couplings(ax, couplings, vmax=1.0):
    """Heat map of ``couplings (n_in, n_out)`` with values written in. Returns the ``AxesImage``."""
    c = couplings.detach().cpu().numpy() if isinstance(couplings, torch.Tensor) else np.asarray(couplings)
    im = ax.imshow(c, cmap="Blues", vmin=0, vmax=vmax, aspect="auto")
    for (i, j), val in np.ndenumerate(c):
        ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=7, color="white" if val > 0.6 * vmax else "k")
    ax.set_xlabel("parent j")
    ax.set_ylabel("child i")
    ax.set_xticks(range(c.shape[1]))
    ax.set_yticks(range(c.shape[0]))
    ax.set_title("couplings c_ij", fontsize=9)
    return im


def plot_routing_dynamics(ax_change, ax_final, trace):
    """Routing dynamics from a :class:`capsedu.routing.RoutingTrace` (paper Fig. A.1/A.2 style).

    Left: mean ``|b^(k) - b^(k-1)|``, the change of the routing logits made by iteration k.
    Right (log scale): distance of iteration k's couplings and outputs from those of the last
    iteration r, mean ``|c^(k) - c^(r)|`` and mean ``||v^(k) - v^(r)||``.
    Returns ``{"logit_change": (r,), "coupling_diff": (r-1,), "output_diff": (r-1,)}`` numpy arrays.
    """
    changes = trace.logit_changes().numpy()
    c_final, v_final = trace.couplings[-1], trace.outputs[-1]
    c_diff = np.array([float((c - c_final).abs().mean()) for c in trace.couplings[:-1]])
    v_diff = np.array([float((v - v_final).norm(dim=-1).mean()) for v in trace.outputs[:-1]])
    k = np.arange(1, len(changes) + 1)
    ax_change.bar(k, changes, color="C0")
    ax_change.set_xlabel("routing iteration k")
    ax_change.set_ylabel("mean |b(k) - b(k-1)|")
    ax_final.semilogy(k[:-1], c_diff, "o-", label="couplings: mean |c(k) - c(r)|")
    ax_final.semilogy(k[:-1], v_diff, "s-", label="outputs: mean ||v(k) - v(r)||")
    ax_final.set_xlabel("routing iteration k")
    ax_final.set_ylabel(f"distance from iteration r = {len(changes)}")
    ax_final.legend(fontsize=7)
    return {"logit_change": changes, "coupling_diff": c_diff, "output_diff": v_diff}

# ---- end section: chapters 1-3 ----

# ---- section: chapters 4-6 (architecture, margin loss, decoder) ----
# Chapter 4: architecture ---------------------------------------------------------------------


def draw_capsnet_diagram(rows, ax=None):
    """Boxes and arrows of the CapsNet data flow, labelled with the shapes of ``layer_table`` rows.

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


def plot_layer_costs(rows, times=None, axes=None):
    """Bar charts of parameters, multiply-adds (log scale) and, if given, measured seconds per layer.

    ``times`` maps row names (or their first word) to seconds. Returns ``{"names", "params", "macs", "times"}``.
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
    axes[1].barh(names, np.maximum(macs, 1), color="#fd8d3c")
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


# Chapter 5: margin loss ----------------------------------------------------------------------


def margin_loss_curves(m_pos=0.9, m_neg=0.1, lam=0.5, lengths=None):
    """Loss of one digit capsule (eq. 5) and its derivative against its length ``||v||``.

    Computed with :func:`capsedu.losses.margin_loss` itself (one class, batch of lengths), so the
    curves are exactly what training sees. Returns numpy arrays ``lengths, present, absent,
    d_present, d_absent``.
    """
    from .losses import margin_loss

    if lengths is None:
        lengths = torch.linspace(0.0, 1.0, 201)
    lengths = torch.as_tensor(lengths, dtype=torch.float32)
    out = {"lengths": lengths.numpy().copy()}
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


def plot_margin_loss(m_pos=0.9, m_neg=0.1, lam=0.5, ax=None, gradients=False, lengths=None):
    """The slides' plot: loss of a present and of an absent class against ``||v||`` (optionally the slopes)."""
    curves = margin_loss_curves(m_pos, m_neg, lam, lengths)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    key_p, key_a = ("d_present", "d_absent") if gradients else ("present", "absent")
    ax.plot(curves["lengths"], curves[key_p], label=f"present class (T=1), zero for ||v|| >= m+ = {m_pos:.2f}")
    ax.plot(curves["lengths"], curves[key_a], label=f"absent class (T=0), zero for ||v|| <= m- = {m_neg:.2f}")
    ax.axvline(m_pos, color="C0", ls=":", lw=1)
    ax.axvline(m_neg, color="C1", ls=":", lw=1)
    ax.set_xlabel("capsule length ||v||")
    ax.set_ylabel("dL/d||v||" if gradients else "loss L_k")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return curves


def plot_training_curves(histories, axes=None, smooth=5):
    """Loss and accuracy per step for several runs: ``{name: {"loss": [...], "accuracy": [...]}}``.

    Curves are smoothed with a running mean over ``smooth`` steps. Returns the smoothed arrays.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.3))
    drawn = {}
    for name, h in histories.items():
        drawn[name] = {}
        for ax, key in zip(axes, ("loss", "accuracy")):
            y = np.asarray(h[key], dtype=float)
            k = max(1, min(smooth, len(y)))
            ys = np.convolve(y, np.ones(k) / k, mode="valid")
            ax.plot(np.arange(len(ys)) + k - 1, ys, label=name)
            drawn[name][key] = ys
    axes[0].set_ylabel("training loss (own scale per run)")
    axes[1].set_ylabel("training-batch accuracy")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return drawn


# Chapter 6: decoder --------------------------------------------------------------------------


def _as_images(x):
    x = x.detach().float().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(x, dtype=torch.float32)
    return x.reshape(x.shape[0], x.shape[-2], x.shape[-1]).numpy()


def show_image_rows(rows, row_titles=None, captions=None, size=1.1):
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


PERTURBATION_DELTAS = tuple(round(-0.25 + 0.05 * k, 2) for k in range(11))


@torch.no_grad()
def perturbation_grid(model, pose, digit, deltas=PERTURBATION_DELTAS, dims=None):
    """Reconstructions after adding each of ``deltas`` to one dimension of a digit capsule (paper Fig. 4).

    ``pose`` is the 16-D vector of digit capsule ``digit``. Returns ``(len(dims), len(deltas), H, W)``.
    """
    pose = torch.as_tensor(pose, dtype=torch.float32).reshape(-1)
    n_classes = model.config.n_classes
    dims = list(range(pose.numel())) if dims is None else list(dims)
    deltas = torch.as_tensor(deltas, dtype=torch.float32)
    tweaked = pose.repeat(len(dims), len(deltas), 1)                      # (dims, deltas, 16)
    for r, d in enumerate(dims):
        tweaked[r, :, d] += deltas
    poses = torch.zeros(len(dims) * len(deltas), n_classes, pose.numel())   # (n, 10, 16)
    poses[:, digit] = tweaked.reshape(-1, pose.numel())
    classes = torch.full((poses.shape[0],), int(digit), dtype=torch.long)
    images = model.reconstruct(poses, classes)                           # (n, 1, 28, 28)
    return images.reshape(len(dims), len(deltas), *images.shape[-2:])


def plot_perturbation_grid(grid, deltas=PERTURBATION_DELTAS, dims=None, title=None, ax=None):
    """Tile a :func:`perturbation_grid` (rows: dimensions, columns: deltas) into one image."""
    g = grid.detach().cpu().numpy() if isinstance(grid, torch.Tensor) else np.asarray(grid)
    n_rows, n_cols, h, w = g.shape
    tiled = g.transpose(0, 2, 1, 3).reshape(n_rows * h, n_cols * w)
    if ax is None:
        _, ax = plt.subplots(figsize=(n_cols * 0.45 + 0.8, n_rows * 0.45 + 0.6))
    ax.imshow(tiled, cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([w * k + w / 2 for k in range(n_cols)])
    ax.set_xticklabels([f"{d:+.2f}" for d in deltas], fontsize=6, rotation=90)
    dims = list(range(n_rows)) if dims is None else list(dims)
    ax.set_yticks([h * k + h / 2 for k in range(n_rows)])
    ax.set_yticklabels([f"dim {d}" for d in dims], fontsize=6)
    if title:
        ax.set_title(title, fontsize=9)
    return tiled

# ---- end section: chapters 4-6 ----
