"""MultiMNIST analyses of a trained model, inference only (paper section 6, chapter 7.3).

The paper's rule: a pair is right when the model's two highest scores (the two longest capsules, or the
two largest logits) are exactly its two classes. These functions also ask how that depends on how much
the two digits overlap, how often at least one of the two digits is found, and how a trained CapsNet's
error changes when it routes with another number of iterations at test time.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, NamedTuple, Sequence, Tuple

import torch

from .overlap import pair_overlaps

__all__ = ["PairResults", "pair_results", "error_by_overlap", "at_least_one_right", "routing_sweep"]

PairBatch = Tuple[object, torch.Tensor]   # (capsedu.data.Pairs, int64 (B, 2) labels)


class PairResults(NamedTuple):
    """Per test pair: ``found`` int64 (N,), how many of its two classes are among the model's top two
    (0, 1 or 2), and ``overlap`` float64 (N,), the bounding-box overlap of its two digits
    (:func:`capsedu.teaching.overlap.pair_overlaps`, intersection over the smaller box)."""

    found: torch.Tensor
    overlap: torch.Tensor

    @property
    def error(self) -> float:
        """The paper's error: the fraction of pairs whose top two are not exactly their two classes."""
        return float((self.found < 2).double().mean())


def _scores(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    out = model(images)
    return out.lengths if hasattr(out, "lengths") else out   # a CapsNet's capsule lengths, else logits


@torch.no_grad()
def pair_results(model: torch.nn.Module, batches: Iterable[PairBatch]) -> PairResults:
    """Score every pair of ``batches`` (pair batches ``(Pairs, labels)``, e.g. ``pair_test_batches``) with
    ``model`` in eval mode; the model's training mode is restored afterwards.

    Raises:
        ValueError: ``batches`` holds no pairs.
    """
    was_training = model.training
    model.eval()
    found, overlap = [], []
    try:
        for pairs, labels in batches:
            top2 = _scores(model, pairs.overlay).topk(2, dim=1).indices          # (B, 2)
            hits = (top2.unsqueeze(2) == labels.to(top2.device).unsqueeze(1))    # (B, 2, 2)
            found.append(hits.any(dim=1).sum(dim=1).cpu())
            overlap.append(pair_overlaps(pairs.first, pairs.second).cpu())
    finally:
        model.train(was_training)
    if not found:
        raise ValueError("no pairs to analyse: batches is empty")
    return PairResults(torch.cat(found), torch.cat(overlap))


def error_by_overlap(results: PairResults, edges: Sequence[float] = (0.0, 0.5, 0.7, 0.8, 0.9, 1.0)
                     ) -> List[Dict[str, float]]:
    """The paper's error within each overlap bin ``[edges[k], edges[k + 1])`` (the last bin includes 1):
    one ``{"low", "high", "pairs", "error"}`` per bin, ``error`` NaN for an empty bin."""
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must be at least two increasing numbers, got {list(edges)}")
    rows = []
    for k, (low, high) in enumerate(zip(edges, edges[1:])):
        last = k == len(edges) - 2
        inside = (results.overlap >= low) & ((results.overlap <= high) if last else (results.overlap < high))
        n = int(inside.sum())
        error = float((results.found[inside] < 2).double().mean()) if n else float("nan")
        rows.append({"low": low, "high": high, "pairs": n, "error": error})
    return rows


def at_least_one_right(results: PairResults) -> float:
    """The fraction of pairs with at least one of their two classes among the model's top two."""
    return float((results.found >= 1).double().mean())


def routing_sweep(model: torch.nn.Module, batches: Iterable[PairBatch], iterations: Sequence[int] = (1, 2, 3, 5)
                  ) -> Dict[int, float]:
    """The paper's error of a trained CapsNet routing with each number of ``iterations`` at test time (it was
    trained with one r); the model's own setting is restored afterwards."""
    saved = model.routing_iterations
    try:
        out = {}
        for r in iterations:
            model.routing_iterations = r
            out[r] = pair_results(model, batches).error
        return out
    finally:
        model.routing_iterations = saved
