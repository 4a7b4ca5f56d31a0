"""How far a trained CapsNet's couplings move from uniform: the evidence for "does routing matter?".

Routing starts every example from uniform couplings ``c_ij = 1 / n_out`` (Procedure 1, line 2 and Eq. 3)
and moves them towards the parents whose output agrees with the child's prediction (Eq. 2's ``u_hat``).
Two measures say how far: the entropy of each child's couplings (1 = uniform, 0 = all to one parent) and
their polarisation (0 = uniform, 1 = all to one parent). Paik, Kwak & Kim (2019) found that routing
procedures do not behave as expected and often do no better than couplings assigned uniformly or at
random, while routing polarises the couplings; their exact polarisation measure could not be read here,
so :func:`polarisation` is this book's: the largest coupling of each child, rescaled from its uniform
value to one. Children whose votes are short barely move any parent and keep near-uniform couplings by
construction, so each measure is also reported weighted by the child's total vote length.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, Sequence

import numpy as np
import torch

from ..routing import routing_trace
from ..train import evaluate

__all__ = ["coupling_statistics", "accuracy_by_iterations", "entropy", "polarisation", "weighted_mean"]


def entropy(c: torch.Tensor) -> torch.Tensor:
    """Entropy of each child's couplings ``c (..., n_out)`` over the parents, divided by ``log n_out``:
    ``(...)``, 1 for uniform couplings, 0 for all to one parent."""
    return -(c * c.clamp_min(1e-30).log()).sum(-1) / math.log(c.shape[-1])


def polarisation(c: torch.Tensor) -> torch.Tensor:
    """How much each child's couplings ``c (..., n_out)`` favour one parent: ``(max_j c_ij - 1/n_out) /
    (1 - 1/n_out)``, ``(...)``, 0 for uniform couplings, 1 for all to one parent."""
    n_out = c.shape[-1]
    return (c.max(dim=-1).values - 1.0 / n_out) / (1.0 - 1.0 / n_out)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> float:
    """``sum(values * weights) / sum(weights)`` over all entries (e.g. per child, weighted by vote length)."""
    return float((values * weights).sum() / weights.sum())


@torch.no_grad()
def coupling_statistics(model: torch.nn.Module, images: torch.Tensor, iterations: int = 3) -> Dict[str, np.ndarray]:
    """Statistics of the couplings of each routing iteration of ``model`` (a CapsNet) on ``images``.

    Returns arrays of shape ``(iterations,)`` (entry ``k`` describes the couplings used in iteration
    ``k + 1``; entry 0 is always uniform):

    * ``entropy``: mean over children of :func:`entropy` (1 = uniform, 0 = all to one parent).
    * ``weighted_entropy``: the same, each child weighted by its total vote length ``sum_j ||u_hat_j|i||``
      (children that predict nothing count for little).
    * ``polarisation`` and ``weighted_polarisation``: :func:`polarisation` averaged the same two ways
      (0 = uniform, 1 = all to one parent).
    * ``max_coupling``: mean over children of their largest coupling (uniform: ``1 / n_out``).
    * ``to_predicted``: mean coupling to the predicted class's capsule, each child weighted by the length
      of its prediction for that class (children that predict nothing do not count).
    * ``same_prediction``: fraction of examples whose predicted class after iteration ``k + 1`` equals
      the prediction with uniform couplings (iteration 1).
    * ``length_of_predicted``: mean length of the predicted capsule after each iteration.

    and ``uniform = 1 / n_out``.
    """
    model.eval()
    u_hat = model.predictions(images)                 # (batch, n_in, n_out, d)
    trace = routing_trace(u_hat, iterations)
    n_out = u_hat.shape[2]
    lengths = [v.norm(dim=-1) for v in trace.outputs]  # each (batch, n_out)
    predicted = lengths[-1].argmax(dim=1)              # (batch,)
    first = lengths[0].argmax(dim=1)
    votes = u_hat.norm(dim=-1)                          # (batch, n_in, n_out) ||u_hat_{j|i}||
    vote_for_pred = votes.gather(2, predicted.view(-1, 1, 1).expand(-1, votes.shape[1], 1)).squeeze(2)  # (batch, n_in)
    child_weight = votes.sum(dim=-1)                    # (batch, n_in) total vote length of each child
    out: Dict[str, list] = {k: [] for k in ("entropy", "weighted_entropy", "polarisation", "weighted_polarisation",
                                            "max_coupling", "to_predicted", "same_prediction", "length_of_predicted")}
    for c, length in zip(trace.couplings, lengths):    # c: (batch, n_in, n_out)
        h, p = entropy(c), polarisation(c)              # each (batch, n_in)
        out["entropy"].append(h.mean().item())
        out["weighted_entropy"].append(weighted_mean(h, child_weight))
        out["polarisation"].append(p.mean().item())
        out["weighted_polarisation"].append(weighted_mean(p, child_weight))
        out["max_coupling"].append(c.max(dim=-1).values.mean().item())
        c_pred = c.gather(2, predicted.view(-1, 1, 1).expand(-1, c.shape[1], 1)).squeeze(2)  # (batch, n_in)
        out["to_predicted"].append(((c_pred * vote_for_pred).sum() / vote_for_pred.sum()).item())
        out["same_prediction"].append((length.argmax(dim=1) == first).float().mean().item())
        out["length_of_predicted"].append(length.gather(1, predicted.view(-1, 1)).mean().item())
    stats = {k: np.asarray(v) for k, v in out.items()}
    stats["uniform"] = np.asarray(1.0 / n_out)
    return stats


def accuracy_by_iterations(model: torch.nn.Module, batches: Iterable, iterations: Sequence[int] = (1, 2, 3, 5)
                           ) -> Dict[int, float]:
    """Test accuracy of a trained CapsNet when it routes with each number of ``iterations`` at inference
    (the model is trained with one r; this asks how much its predictions depend on it)."""
    saved = model.routing_iterations
    try:
        out = {}
        for r in iterations:
            model.routing_iterations = r
            out[r] = evaluate(model, batches)["accuracy"]
        return out
    finally:
        model.routing_iterations = saved
