"""Inverted dot-product attention routing (Tsai, Srivastava, Goh & Salakhutdinov, ICLR 2020).

The parents' poses ``p_j`` start at zero and are refined ``iterations`` times; each pass is lines 3-6 of
the paper's Procedure 1 (the votes ``v_ij = W_ij p_i`` of line 2, Eq. 1, are our ``u_hat``):

* line 3, Eq. 2: ``a_ij = p_j . v_ij / sqrt(dim)``     agreement of a child's vote with the parent's pose
* line 4, Eq. 3: ``r_ij = softmax_j(a_ij)``            parents compete for each child ("inverted" attention)
* line 5:        ``p_j = sum_i r_ij v_ij``             pose update
* line 6:        ``p_j = LayerNorm(p_j)``              normalisation, instead of a squash

The first pass sees ``p = 0``, so its couplings are uniform. ``1 / sqrt(dim)`` and the learned affine
LayerNorm are those of the authors' code (``CapsuleFC`` in github.com/apple/ml-capsules-inverted-attention-
routing, ``src/layers.py``); Eq. 2 prints the plain dot product. Before its learned scale and shift, a
LayerNorm'd pose has length ``sqrt(dim)`` (up to LayerNorm's epsilon) whatever the input, so presence cannot
be read from its length: as in that code, one linear map shared by all classes scores each class capsule's
pose, and here the score's logistic becomes the length of the output capsule.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..routing_autograd import block_diagonal, diagonal_blocks
from .base import Routing, capsule_from_presence

__all__ = ["InvertedAttentionRouting", "inverted_attention_routing", "inverted_attention_routing_fast"]


def inverted_attention_routing(u_hat: torch.Tensor, iterations: int,
                               normalize: Callable[[torch.Tensor], torch.Tensor]
                               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Poses after ``iterations`` passes of lines 3-6 (see the module docstring).

    Args:
        u_hat: votes ``(batch, n_in, n_out, dim)``, already checked.
        iterations: number of pose updates (>= 1); the first uses uniform couplings.
        normalize: line 6, applied to ``(batch, n_out, dim)`` poses (a LayerNorm over ``dim``).

    Returns:
        poses ``p (batch, n_out, dim)`` and the routing coefficients ``r (batch, n_in, n_out)`` of the last pass.
    """
    batch, _, n_out, dim = u_hat.shape
    pose = u_hat.new_zeros(batch, n_out, dim)  # "set to 0 initially"
    for _ in range(iterations):
        agreement = torch.einsum("bijd,bjd->bij", u_hat, pose) / math.sqrt(dim)  # line 3, Eq. 2
        r = torch.softmax(agreement, dim=2)                                      # line 4, Eq. 3
        pose = normalize(torch.einsum("bij,bijd->bjd", r, u_hat))               # lines 5 and 6
    return pose, r


def inverted_attention_routing_fast(u_hat: torch.Tensor, iterations: int,
                                    normalize: Callable[[torch.Tensor], torch.Tensor]
                                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`inverted_attention_routing` with the same arguments and results (equal up to rounding).

    Each example's votes are read in place as one ``n_in x (n_out * dim)`` matrix, as dynamic routing's fast
    path does (:mod:`capsedu.routing_autograd`): line 3's agreements and line 5's sums become one matrix
    product each against a small block-diagonal matrix, where ``einsum`` copies the votes into a batched
    layout at every pass. The first pass, against ``p = 0``, is a plain mean.
    """
    batch, n_in, n_out, dim = u_hat.shape
    votes = u_hat.flatten(2)                                                   # (batch, n_in, n_out * dim)
    r = u_hat.new_full((batch, n_out, n_in), 1.0 / n_out)                      # first pass: softmax of zeros
    pose = normalize(votes.sum(dim=1).view(batch, n_out, dim) / n_out)         # lines 5 and 6
    for _ in range(iterations - 1):
        # line 3, Eq. 2: blockdiag(p)^T V^T, (batch, n_out, n_in)
        agreement = torch.matmul(block_diagonal(pose.unsqueeze(2)), votes.transpose(1, 2)) / math.sqrt(dim)
        r = torch.softmax(agreement, dim=1)                                    # line 4, Eq. 3, over the parents
        pose = normalize(diagonal_blocks(torch.matmul(r, votes), n_out))       # lines 5 and 6
    return pose, r.transpose(1, 2)


class InvertedAttentionRouting(Routing):
    """Inverted dot-product attention routing with a learned LayerNorm and class score.

    Parameters: the LayerNorm's scale and shift (``dim`` each) and the shared score ``w . p_j + b``
    (``dim + 1``); the output capsule is ``logistic(w . p_j + b) p_j / ||p_j||``.

    Args:
        n_in, n_out, dim: see :class:`~capsedu.routings.base.Routing`.
    """

    def __init__(self, n_in: int, n_out: int, dim: int):
        super().__init__(n_in, n_out, dim)
        self.norm = nn.LayerNorm(dim)
        self.score = nn.Linear(dim, 1)

    def _normalize(self, pose: torch.Tensor) -> torch.Tensor:
        # the parameters follow the poses' dtype: float32 routing of a half-precision model, float64 tests
        return F.layer_norm(pose, (self.dim,), self.norm.weight.to(pose.dtype), self.norm.bias.to(pose.dtype),
                            self.norm.eps)

    def route(self, u_hat: torch.Tensor, iterations: int, activations: Optional[torch.Tensor],
              return_couplings: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        pose, r = inverted_attention_routing_fast(u_hat, iterations, self._normalize)
        logit = F.linear(pose, self.score.weight.to(pose.dtype), self.score.bias.to(pose.dtype)).squeeze(-1)
        return capsule_from_presence(pose, torch.sigmoid(logit)), r
