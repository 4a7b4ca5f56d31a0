"""Short training runs for side-by-side comparisons in the book (chapters 5 and 6).

A few hundred Adam steps of a small CapsNet are enough to see how a choice of loss changes the
early learning curves; these helpers record loss and accuracy at every step so they can be plotted.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .losses import margin_loss, reconstruction_loss

__all__ = ["train_steps", "length_cross_entropy", "margin_plus_reconstruction", "heldout_accuracy"]

Batch = Tuple[torch.Tensor, torch.Tensor]


def length_cross_entropy(scale: float = 10.0) -> Callable:
    """Softmax cross-entropy with ``scale * ||v_k||`` as the logits (lengths lie in [0, 1), so they are
    scaled to let the softmax become confident). A loss function ``(out, images, labels) -> loss``."""
    def loss_fn(out, images, labels):
        return F.cross_entropy(scale * out.lengths, labels)
    return loss_fn


def margin_plus_reconstruction(weight: float) -> Callable:
    """Margin loss (eq. 5) + ``weight`` x summed squared reconstruction error (0.0005 in the paper)."""
    def loss_fn(out, images, labels):
        margin = margin_loss(out.lengths, labels)
        recon = (reconstruction_loss(out.reconstructions, images) if out.reconstructions is not None
                 else torch.zeros(()))
        loss_fn.parts = {"margin": margin.item(), "reconstruction": recon.item()}  # recorded by train_steps
        return margin + weight * recon if weight else margin
    loss_fn.parts = {}
    return loss_fn


def train_steps(model: torch.nn.Module, batches: Iterable[Batch], loss_fn: Callable, steps: int,
                lr: float = 1e-3, on_step: Optional[Callable[[int, Dict[str, float]], None]] = None
                ) -> Dict[str, List[float]]:
    """``steps`` Adam updates (cycling over ``batches`` as often as needed); loss and batch accuracy per step.

    The CapsNet is called with the labels, so its decoder (if any) sees the true class (masking).
    Returns ``{"loss": [...], "accuracy": [...]}`` plus any extra terms ``loss_fn`` stores in
    ``loss_fn.parts`` (a dict of floats) under their names.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: Dict[str, List[float]] = {"loss": [], "accuracy": []}
    model.train()
    step = 0
    while step < steps:
        seen_any = False
        for images, labels in batches:
            seen_any = True
            out = model(images, labels)
            loss = loss_fn(out, images, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history["loss"].append(loss.item())
            history["accuracy"].append(float((out.lengths.argmax(1) == labels).float().mean()))
            for name, value in getattr(loss_fn, "parts", {}).items():
                history.setdefault(name, []).append(float(value))
            if on_step is not None:
                on_step(step, {k: v[-1] for k, v in history.items()})
            step += 1
            if step >= steps:
                break
        if not seen_any:
            raise ValueError("train_steps got no batches")
    return history


@torch.no_grad()
def heldout_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 250) -> float:
    """Fraction of ``images`` whose longest digit capsule is the label (eval mode, no labels given)."""
    was_training = model.training
    model.eval()
    correct = 0
    for k in range(0, images.shape[0], batch_size):
        out = model(images[k:k + batch_size])
        correct += int((out.lengths.argmax(1) == labels[k:k + batch_size]).sum())
    model.train(was_training)
    return correct / images.shape[0]
