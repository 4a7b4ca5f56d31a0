"""Chapter 3: routing by agreement, measured.

* :func:`coincidence_probability`, :func:`coincidence_monte_carlo`, :func:`coincidence_curves`: how
  unlikely it is that random predictions agree in d dimensions (the slides' "high-dimensional coincidence").
* :func:`toy_votes`: a handful of 2-D prediction vectors ``u_hat_{j|i}`` with one agreeing cluster
  per parent and an outlier, for routing by hand.
* :func:`routing_convergence`: what each routing iteration of a :class:`capsedu.routing.RoutingTrace`
  changes: the logits (paper Appendix A, Fig. A.1), and the couplings and outputs, iteration against
  the one before (whether routing settles).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, Iterable, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ..routing import RoutingTrace

__all__ = ["coincidence_probability", "coincidence_monte_carlo", "coincidence_curves", "toy_votes",
           "routing_convergence"]


# ----------------------------------------------------------------------------- high-dimensional coincidence

def coincidence_probability(dim: int, cos_threshold: float = 0.9, steps: int = 20001) -> float:
    """P(cos(angle) > cos_threshold) for two independent uniformly random directions in ``dim`` dimensions.

    The angle phi between them has density proportional to ``sin(phi)**(dim - 2)`` on [0, pi];
    integrated numerically (trapezoid rule on ``steps`` points).
    """
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")

    def integral(upper: float) -> torch.Tensor:
        phi = torch.linspace(0.0, upper, steps, dtype=torch.float64)
        return torch.trapezoid(torch.sin(phi) ** (dim - 2), phi)

    return float(integral(math.acos(cos_threshold)) / integral(math.pi))


def coincidence_monte_carlo(dim: int, cos_threshold: float = 0.9, n: int = 100_000, seed: int = 0) -> float:
    """Monte Carlo estimate of :func:`coincidence_probability` from ``n`` random pairs."""
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    b = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    return float(((a * b).sum(1) > cos_threshold).double().mean())


def coincidence_curves(dims: Iterable[int] = range(2, 17), thresholds: Sequence[float] = (0.8, 0.9, 0.95)
                       ) -> Dict[float, np.ndarray]:
    """``{threshold: P(cos > threshold) for each d in dims}``, from :func:`coincidence_probability`."""
    dims = list(dims)
    return {t: np.array([coincidence_probability(d, t) for d in dims]) for t in thresholds}


# ----------------------------------------------------------------------------- toy routing votes

def toy_votes(seed: int = 0, noise: float = 0.12) -> Tuple[torch.Tensor, Dict[str, object]]:
    """Seven children voting for three parents with 2-D predictions: ``u_hat (1, 7, 3, 2)``.

    * children 0-3 agree about parent 0 (votes near (1.2, 0.9));
    * children 4-5 agree about parent 1 (votes near (-1.0, 1.1));
    * child 6 is an outlier: its vote for parent 0 points away from the cluster, the others are random;
    * every other vote is a random direction with a length in [0.3, 0.8], so parent 2 gets no agreement.

    ``noise`` is the standard deviation of the agreeing votes around their centre.
    Returns ``(u_hat, info)`` with ``info["groups"] = {parent: [children]}``, ``info["outlier"]``
    and ``info["centres"] = {parent: centre (2,)}``.
    """
    g = torch.Generator().manual_seed(seed)
    n_in, n_out = 7, 3
    angles = torch.rand(n_in, n_out, generator=g) * 2 * math.pi
    lengths = 0.3 + 0.5 * torch.rand(n_in, n_out, generator=g)
    u = torch.stack([torch.cos(angles), torch.sin(angles)], -1) * lengths.unsqueeze(-1)  # (n_in, n_out, 2)
    centres = {0: torch.tensor([1.2, 0.9]), 1: torch.tensor([-1.0, 1.1])}
    groups = {0: [0, 1, 2, 3], 1: [4, 5]}
    for j, children in groups.items():
        for i in children:
            u[i, j] = centres[j] + noise * torch.randn(2, generator=g)
    u[6, 0] = torch.tensor([-0.9, -0.6])  # the outlier's vote for parent 0 points away from the cluster
    return u.unsqueeze(0), {"groups": groups, "outlier": 6, "centres": centres}


# ----------------------------------------------------------------------------- how routing settles

def routing_convergence(trace: RoutingTrace) -> Dict[str, np.ndarray]:
    """What each of the ``r`` iterations recorded in ``trace`` changed.

    Returns numpy arrays, all means over examples, children and parents:

    * ``logit_change (r,)``: ``|b^(k) - b^(k-1)|``, what iteration k added to the logits (line 7 of
      Procedure 1 adds the agreement ``u_hat . v^(k)``; the paper's Fig. A.1 plots this quantity);
    * ``logit_change_step (r-1,)``: ``|(b^(k) - b^(k-1)) - (b^(k-1) - b^(k-2))|`` for k = 2..r, how much
      that addition itself changed (it is ``|u_hat . (v^(k) - v^(k-1))|``);
    * ``coupling_step (r-1,)``: ``|c^(k) - c^(k-1)|`` for k = 2..r, the couplings of iteration k against
      those of the iteration before;
    * ``output_step (r-1,)``: ``||v^(k) - v^(k-1)||`` for k = 2..r, the same for the outputs;
    * ``longest_output (r,)``: the length of each example's longest parent ``max_j ||v_j^(k)||``.

    Successive differences, not distances from the last iteration: a distance from iteration r falls to
    zero at k = r whatever routing does, so only the steps show whether it settles.
    """
    added = [b1 - b0 for b0, b1 in zip(trace.logits[:-1], trace.logits[1:])]       # r tensors (batch, n_in, n_out)
    return {
        "logit_change": trace.logit_changes().numpy(),
        "logit_change_step": np.array([float((a1 - a0).abs().mean()) for a0, a1 in zip(added[:-1], added[1:])]),
        "coupling_step": np.array([float((c1 - c0).abs().mean())
                                   for c0, c1 in zip(trace.couplings[:-1], trace.couplings[1:])]),
        "output_step": np.array([float((v1 - v0).norm(dim=-1).mean())
                                 for v0, v1 in zip(trace.outputs[:-1], trace.outputs[1:])]),
        "longest_output": np.array([float(v.norm(dim=-1).max(dim=-1).values.mean()) for v in trace.outputs]),
    }
