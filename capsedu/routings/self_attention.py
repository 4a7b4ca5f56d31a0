"""Self-attention routing (Mazzia, Salvetti & Chiaberge, 2021, "Efficient-CapsNet"): one pass, no iterations.

For each parent j the children's predictions are the rows of ``U_j (n_in x dim)``. Their self-attention
matrix ``A_j = U_j U_j^T / sqrt(dim)`` says how much child i's prediction agrees with child k's; a child's
score is its total agreement with all children, and a softmax over the parents makes couplings of the
scores. A learned prior ``b_ij`` (zero at the start) is added to them, and the parents squash their totals
with the paper's own squash:

* ``c_ij = softmax_j( sum_k A_j[i, k] )``          couplings, one softmax per child over the parents
* ``s_j = sum_i (c_ij + b_ij) u_hat_{j|i}``         total input
* ``v_j = (1 - exp(-||s_j||)) s_j / ||s_j||``        :func:`squash_efficient`

The ``1 / sqrt(dim)`` scaling and the place of ``b`` (added after the softmax) are those of the authors'
code (``FCCaps`` in github.com/EscVM/Efficient-CapsNet, ``utils/layers.py``). ``sum_k A_j[i, k] =
u_hat_{j|i} . sum_k u_hat_{j|k}``, so the ``n_in x n_in`` matrices never exist: CapsNet's 1152 children
would need one of 1.3M entries per parent and example; the tests build ``A`` explicitly and compare.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn

from .base import _NORM_EPS, Routing

__all__ = ["SelfAttentionRouting", "self_attention_routing", "squash_efficient"]


def squash_efficient(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Efficient-CapsNet's squash: ``(1 - exp(-||s||)) s / ||s||``, lengths in [0, 1).

    Unlike Eq. 1 of Sabour et al. it is steep at the origin (``v ~ s`` for short ``s``); it reaches length
    0.95 at ``||s|| = 3`` where Eq. 1 gives 0.9. The zero vector maps to zero with a finite gradient.

    Args:
        s: floating-point tensor whose ``dim`` axis holds capsule vectors.
        dim: the axis of the vector components.
    """
    norm = torch.sqrt((s * s).sum(dim=dim, keepdim=True) + _NORM_EPS)
    return s * (-torch.expm1(-norm) / norm)


def self_attention_routing(u_hat: torch.Tensor, prior: Optional[torch.Tensor] = None
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Route ``u_hat (batch, n_in, n_out, dim)`` in one pass; see the module docstring.

    Args:
        u_hat: predictions, already checked (:class:`SelfAttentionRouting` checks them).
        prior: ``b (n_out, n_in)`` added to the couplings, or ``None`` for zero.

    Returns:
        ``v (batch, n_out, dim)`` and the softmax couplings ``c (batch, n_in, n_out)`` (without ``b``).
    """
    dim = u_hat.shape[-1]
    total = u_hat.sum(dim=1, keepdim=True)                      # sum_k u_hat_{j|k}, (batch, 1, n_out, dim)
    scores = (u_hat * total).sum(dim=-1) / math.sqrt(dim)       # sum_k A_j[i, k], (batch, n_in, n_out)
    c = torch.softmax(scores, dim=2)                            # over the parents j
    weights = c if prior is None else c + prior.t().to(c.dtype)
    s = torch.einsum("bij,bijd->bjd", weights, u_hat)           # s_j = sum_i (c_ij + b_ij) u_hat_{j|i}
    return squash_efficient(s), c


class SelfAttentionRouting(Routing):
    """Self-attention routing with a learned prior ``b (n_out, n_in)``, initialised to zero as in the
    authors' code. Non-iterative: ``iterations`` is checked and ignored.

    Args:
        n_in, n_out, dim: see :class:`~capsedu.routings.base.Routing`.
    """

    iterative = False

    def __init__(self, n_in: int, n_out: int, dim: int):
        super().__init__(n_in, n_out, dim)
        self.prior = nn.Parameter(torch.zeros(n_out, n_in))

    def route(self, u_hat: torch.Tensor, iterations: int, activations: Optional[torch.Tensor],
              return_couplings: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return self_attention_routing(u_hat, self.prior)
