"""Chapter 2: the squash non-linearity (Eq. 1 of the paper) measured three ways.

* :func:`squash_curve_1d`: squash of scalar inputs, ``v = sign(s) s^2 / (1 + s^2)`` (the slides' 1-D plot).
* :func:`squashed_lengths`: lengths of random vectors before and after squash, per dimension.
* :func:`squash_length_slope`: ``d||v|| / d||s||`` by autograd through the library's squash and by formula.

All values come from :func:`capsedu.functional.squash` itself, so they are what a CapsNet computes.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from ..functional import squash

__all__ = ["squash_curve_1d", "squashed_lengths", "squash_length_slope"]


def squash_curve_1d(limit: float = 5.0, n: int = 401) -> Tuple[np.ndarray, np.ndarray]:
    """``(s, v)``: ``n`` scalar inputs evenly spaced in ``[-limit, limit]`` and their squash (1-D vectors)."""
    s = torch.linspace(-limit, limit, n)
    v = squash(s.unsqueeze(-1)).squeeze(-1)
    return s.numpy(), v.numpy()


def squashed_lengths(dims: Sequence[int] = (2, 8, 16), n: int = 2000, scale: float = 1.0, seed: int = 0
                     ) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """For each ``d`` in ``dims``: ``(|s|, |squash(s)|)`` of ``n`` samples ``s ~ N(0, scale^2 / d I)``.

    The ``1/d`` keeps ``E|s|^2 = scale^2`` equal across dimensions, so only the dimension changes.
    One seeded generator draws the dimensions in order.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for d in dims:
        s = torch.randn(n, d, generator=g) * scale / d ** 0.5
        out[d] = (s.norm(dim=-1).numpy(), squash(s).norm(dim=-1).numpy())
    return out


def squash_length_slope(max_norm: float = 4.0, n: int = 200) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(norms, autograd, analytic)``: ``d||v||/d||s||`` at ``n`` lengths in ``(0, max_norm]``.

    ``autograd`` differentiates the library's squash along a fixed direction (float64);
    ``analytic`` is ``2|s| / (1 + |s|^2)^2``, the derivative of the length factor of Eq. 1.
    """
    norms = torch.linspace(1e-3, max_norm, n, dtype=torch.float64)
    direction = torch.tensor([0.6, 0.8], dtype=torch.float64)  # any unit vector: the length ignores direction
    t = norms.clone().requires_grad_(True)
    lengths = squash(t.unsqueeze(-1) * direction).norm(dim=-1)
    grad, = torch.autograd.grad(lengths.sum(), t)
    analytic = 2 * norms / (1 + norms ** 2) ** 2
    return norms.numpy(), grad.numpy(), analytic.numpy()
