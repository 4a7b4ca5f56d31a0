"""EM routing between matrix capsules (Hinton, Sabour & Frosst, ICLR 2018, Procedure 1).

A capsule is a 4x4 pose matrix ``M`` and an activation ``a`` (the probability that its entity is present).
Child i votes ``V_ij = M_i W_ij`` for parent j (:func:`matrix_votes`; as 16 numbers, ``h = 1..16``). Each
parent is a Gaussian cluster of the votes with a diagonal covariance, and routing is EM on that mixture:

* ``R_ij <- 1 / n_out``                                            (line 2) uniform assignments
* M-step (line 4, :func:`m_step`)::

      R_ij <- R_ij a_i                                             children vote as much as they are present
      mu_j^h <- sum_i R_ij V_ij^h / sum_i R_ij
      (sigma_j^h)^2 <- sum_i R_ij (V_ij^h - mu_j^h)^2 / sum_i R_ij
      cost^h <- (beta_u + log sigma_j^h) sum_i R_ij
      a_j <- logistic(lambda (beta_a - sum_h cost^h))

* E-step (line 5, :func:`e_step`)::

      p_ij <- prod_h N(V_ij^h; mu_j^h, (sigma_j^h)^2)
      R_ij <- a_j p_ij / sum_k a_k p_ik

The parent's pose is ``mu_j`` and its activation ``a_j`` from the last M-step. A parent is active when
many present children agree closely (a small ``sigma``, so a negative cost); ``beta_u`` and ``beta_a``
(one each per parent here) are learned. The inverse temperature ``lambda`` grows with the iteration, by the
schedule the authors gave in their answers on OpenReview (as quoted in IBM/matrix-capsules-with-em-routing,
``em_routing.py``): ``lambda_t = final_lambda (1 - 0.95^t)`` for iterations ``t = 1, 2, ...``, with
``final_lambda = 0.01`` (:func:`inverse_temperature`).

Training it in the CapsNet, the first Adam step at lr 1e-3 drives every class activation towards 1, and the margin
loss rises. This is not a slip in the procedure above (it is the paper's Procedure 1 with the schedule IBM's
reimplementation quotes) but how three choices of this library meet Adam's first step:

* the class score is ``a_j`` itself (the capsule's length, which the margin loss reads). The paper trains it with
  the spread loss, which sees only ``a_t - a_i``; the margin loss wants nine of ten activations below 0.1;
* ``beta_a = beta_u = 0`` at the start, and with the small CapsNet's tiny votes every ``log sigma_j^h`` is
  negative, so every cost is negative and every parent starts above 0.5, with or without evidence. IBM's
  reimplementation instead draws ``beta_a`` around -1000 and scales the cost by 100 / (children per parent)
  (Gritzman 2019, "Avoiding implementation pitfalls of Matrix capsules with EM routing"), and quotes Hinton's
  answer on OpenReview: they set the initialisation so that half the capsules in each layer start active;
* the children's activations ``a_i`` are the lengths of the squashed primary capsules (the paper gives each capsule
  a separate logistic unit), so the mass ``sum_i R_ij a_i`` that multiplies every negative cost grows with the
  poses.

``python -m experiments.em_first_steps`` (seed 0, one thread, the first 64 digits of the shipped subset, small
CapsNet, r = 3) measured: at the start the argument of the logistic is 0.74 and every class activation about 0.68
(loss 1.639); Adam's first step at lr 1e-3 moves every weight by about the learning rate whatever its gradient, the
primary capsules swing round (mean cosine with their old direction -0.47) and come out six times longer (mean length
0.079 -> 0.484), the mass grows from 4.6 to 27.9, the argument to 3.55, every activation to about 0.96, and the
loss to 3.398 (1.686 after 20 steps on that batch, accuracy still 0.16). At lr 1e-4 the same step shortens the
primary capsules as the gradient asks (0.079 -> 0.051) and the loss falls at every step (1.639, 1.379, 1.294,
1.263, 1.230; accuracy 0.66 after four steps, 0.898 and 1.00 after 20; at 3e-4, 0.860 after 20). Even then the nine
other classes stay above 0.5 (0.522 after 20 steps): the logistic's argument stays positive while the votes are
small and ``beta_a``, whose gradient carries the factor ``lambda`` (0.0014), has barely moved, so the margin loss's
0.1 is out of reach early on. Dynamic routing's first step at 1e-3 makes the primary capsules 8 times longer too
(``--routing dynamic``), but its class scores are squashed sums of the votes, 0.08 to 0.09 after that step, and its
loss falls (0.901 -> 0.744). The routing comparison (chapter 10) keeps the 2017 paper's Adam at 1e-3 for every
procedure, so its EM runs start with this jump.

Numerics: the E-step works with logarithms (``R`` is a softmax of ``log a_j + log p_ij``, so far-away votes
do not underflow ``p`` to 0/0), a variance gets ``1e-9`` added before its logarithm (a parent with one
child has ``sigma = 0``), and the M-step divides by ``sum_i R_ij + 1e-12`` (absent children give 0).

Speed: :func:`em_routing` is Procedure 1 written step by step from :func:`m_step` and :func:`e_step`; the
:class:`EMRouting` module runs :func:`em_routing_fast`, the same arithmetic laid out so that every sum over the
children is a matrix product and each iteration's squared deviations ``(V - mu)^2`` serve both the variance and
the next E-step. ``python benchmarks/bench_routings.py`` times the two side by side.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn as nn

from .base import Routing, capsule_from_presence

__all__ = ["EMRouting", "EMResult", "em_routing", "em_routing_fast", "m_step", "e_step", "inverse_temperature",
           "matrix_votes"]

_VARIANCE_EPS = 1e-9
_MASS_EPS = 1e-12
#: keeps log a_j finite when a parent's activation underflows to 0
_ACTIVATION_EPS = 1e-30


def inverse_temperature(iteration: int, final_lambda: float = 0.01) -> float:
    """``lambda`` of routing iteration ``iteration`` (1, 2, ...): ``final_lambda (1 - 0.95^iteration)``."""
    return final_lambda * (1.0 - 0.95 ** iteration)


def matrix_votes(poses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Votes ``V_ij = M_i W_ij`` of 4x4 pose matrices, flattened to 16 numbers.

    Args:
        poses: ``M (batch, n_in, 4, 4)``.
        weights: ``W (n_in, n_out, 4, 4)``, the learned viewpoint-invariant transformations.

    Returns:
        ``(batch, n_in, n_out, 16)``, row-major flattening of each ``M_i W_ij``.
    """
    if poses.dim() != 4 or poses.shape[-2:] != (4, 4) or weights.dim() != 4 or weights.shape[-2:] != (4, 4) \
            or weights.shape[0] != poses.shape[1]:
        raise ValueError(f"poses must be (batch, n_in, 4, 4) and weights (n_in, n_out, 4, 4) with the same n_in, "
                         f"got {tuple(poses.shape)} and {tuple(weights.shape)}")
    votes = torch.matmul(poses.unsqueeze(2), weights.to(poses.dtype))  # (batch, n_in, n_out, 4, 4)
    return votes.flatten(-2)


def m_step(assignments: torch.Tensor, votes: torch.Tensor, activations: torch.Tensor, beta_u: torch.Tensor,
           beta_a: torch.Tensor, inverse_temp: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One M-step: fit each parent's Gaussian to the votes and decide its activation.

    Args:
        assignments: ``R (batch, n_in, n_out)``.
        votes: ``V (batch, n_in, n_out, h)``.
        activations: children's ``a (batch, n_in)``.
        beta_u, beta_a: ``(n_out,)``.
        inverse_temp: ``lambda``.

    Returns:
        parents' activations ``(batch, n_out)``, means ``mu (batch, n_out, h)`` and variances
        ``sigma^2 (batch, n_out, h)`` (with the ``1e-9`` floor).
    """
    r = assignments * activations.unsqueeze(-1)                        # R_ij <- R_ij a_i
    mass = r.sum(dim=1)                                                # sum_i R_ij, (batch, n_out)
    weights = r / (mass.unsqueeze(1) + _MASS_EPS)                      # (batch, n_in, n_out)
    mean = torch.einsum("bij,bijh->bjh", weights, votes)               # mu_j^h
    variance = torch.einsum("bij,bijh->bjh", weights, (votes - mean.unsqueeze(1)) ** 2) + _VARIANCE_EPS
    cost = (beta_u.unsqueeze(-1) + 0.5 * torch.log(variance)) * mass.unsqueeze(-1)  # cost^h, log sigma = log var / 2
    parent_activations = torch.sigmoid(inverse_temp * (beta_a - cost.sum(dim=-1)))
    return parent_activations, mean, variance


def e_step(votes: torch.Tensor, activations: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor
           ) -> torch.Tensor:
    """One E-step: each child's assignments, the posterior of the parents given its vote.

    Args:
        votes: ``V (batch, n_in, n_out, h)``.
        activations: parents' ``a (batch, n_out)``.
        mean, variance: parents' ``mu`` and ``sigma^2``, ``(batch, n_out, h)``.

    Returns:
        ``R (batch, n_in, n_out)``, summing to 1 over the parents.
    """
    # log p_ij = -sum_h (V - mu)^2 / (2 sigma^2) - sum_h log(2 pi sigma^2) / 2; the second sum is the same for every i
    distance = (((votes - mean.unsqueeze(1)) ** 2) / (2 * variance.unsqueeze(1))).sum(dim=-1)  # (batch, n_in, n_out)
    log_norm = 0.5 * torch.log(2 * math.pi * variance).sum(dim=-1)                             # (batch, n_out)
    log_a = torch.log(activations + _ACTIVATION_EPS)
    return torch.softmax((log_a - log_norm).unsqueeze(1) - distance, dim=2)


class EMResult(NamedTuple):
    """What :func:`em_routing` returns."""

    poses: torch.Tensor        # mu_j, (batch, n_out, h)
    activations: torch.Tensor  # a_j, (batch, n_out)
    assignments: torch.Tensor  # R_ij used by the last M-step, (batch, n_in, n_out)


def em_routing(votes: torch.Tensor, activations: torch.Tensor, beta_u: torch.Tensor, beta_a: torch.Tensor,
               iterations: int = 3, final_lambda: float = 0.01) -> EMResult:
    """Procedure 1 of Hinton et al. (2018): ``iterations`` M-steps with E-steps between them.

    The E-step after the last M-step would change no output, so it is skipped.

    Args:
        votes: ``V (batch, n_in, n_out, h)``, ``h = 16`` for 4x4 poses (any ``h`` works).
        activations: children's ``a (batch, n_in)`` in [0, 1].
        beta_u, beta_a: ``(n_out,)``.
        iterations: number of M-steps (>= 1).
        final_lambda: see :func:`inverse_temperature`.
    """
    batch, n_in, n_out, _ = votes.shape
    assignments = votes.new_full((batch, n_in, n_out), 1.0 / n_out)   # line 2
    for t in range(1, iterations + 1):                                 # line 3
        parent_activations, mean, variance = m_step(assignments, votes, activations, beta_u, beta_a,
                                                    inverse_temperature(t, final_lambda))  # line 4
        if t < iterations:
            assignments = e_step(votes, parent_activations, mean, variance)  # line 5
    return EMResult(mean, parent_activations, assignments)


def em_routing_fast(votes: torch.Tensor, activations: torch.Tensor, beta_u: torch.Tensor, beta_a: torch.Tensor,
                    iterations: int = 3, final_lambda: float = 0.01) -> EMResult:
    """:func:`em_routing` with the same arguments and results (equal up to rounding; the tests check values and
    gradients in float64), computed with the parents in front, ``(batch, n_out, n_in, h)``.

    Two things make it faster on a CPU: with that layout the M-step's weighted sums over the children
    (``mu_j``, ``sigma_j^2``) and the E-step's sum over ``h`` are batched matrix products that read the votes in
    place, and the squared deviations from the M-step's means are computed once and used by both the variance and
    the E-step that follows it (the readable version computes them twice and divides by ``2 sigma^2`` at every
    child).
    """
    batch, n_in, n_out, h = votes.shape
    v = votes.transpose(1, 2).contiguous()                                 # (batch, n_out, n_in, h)
    a_in = activations.unsqueeze(1)                                        # (batch, 1, n_in)
    assignments = None                                                     # line 2: R_ij = 1 / n_out
    for t in range(1, iterations + 1):
        r = a_in.expand(batch, n_out, n_in) / n_out if assignments is None else assignments * a_in
        mass = r.sum(dim=-1)                                               # sum_i R_ij a_i, (batch, n_out)
        weights = (r / (mass.unsqueeze(-1) + _MASS_EPS)).unsqueeze(2)      # (batch, n_out, 1, n_in)
        mean = torch.matmul(weights, v)                                    # mu_j, (batch, n_out, 1, h)
        squared = (v - mean).square()                                      # (V - mu)^2, (batch, n_out, n_in, h)
        variance = torch.matmul(weights, squared).squeeze(2) + _VARIANCE_EPS   # (batch, n_out, h)
        log_variance = torch.log(variance)
        cost = (beta_u.unsqueeze(-1) + 0.5 * log_variance) * mass.unsqueeze(-1)
        parent_activations = torch.sigmoid(inverse_temperature(t, final_lambda) * (beta_a - cost.sum(dim=-1)))
        if t < iterations:                                                 # E-step, as e_step
            distance = torch.matmul(squared, (0.5 / variance).unsqueeze(-1)).squeeze(-1)   # (batch, n_out, n_in)
            log_norm = 0.5 * (h * math.log(2 * math.pi) + log_variance.sum(dim=-1))       # (batch, n_out)
            log_a = torch.log(parent_activations + _ACTIVATION_EPS)
            assignments = torch.softmax((log_a - log_norm).unsqueeze(-1) - distance, dim=1)
    if assignments is None:
        assignments = votes.new_full((batch, n_out, n_in), 1.0 / n_out)
    return EMResult(mean.squeeze(2), parent_activations, assignments.transpose(1, 2))


class EMRouting(Routing):
    """EM routing as a routing module: the output capsule has the pose ``mu_j`` as its direction and the
    activation ``a_j`` as its length (:func:`~capsedu.routings.base.capsule_from_presence`).

    The children's activations come from the caller (:class:`~capsedu.layers.DigitCaps` passes the lengths
    of its input capsules); without them every child counts as present (``a_i = 1``).

    Args:
        n_in, n_out, dim: see :class:`~capsedu.routings.base.Routing` (``dim = 16`` for 4x4 poses).
        final_lambda: the limit of the inverse-temperature schedule, :func:`inverse_temperature` (0.01).
    """

    reads_activations = True

    def __init__(self, n_in: int, n_out: int, dim: int, final_lambda: float = 0.01):
        super().__init__(n_in, n_out, dim)
        if isinstance(final_lambda, bool) or not isinstance(final_lambda, (int, float)) \
                or not math.isfinite(final_lambda) or final_lambda <= 0:
            raise ValueError(f"final_lambda must be a positive number, got {final_lambda!r}")
        self.final_lambda = float(final_lambda)
        self.beta_u = nn.Parameter(torch.zeros(n_out))
        self.beta_a = nn.Parameter(torch.zeros(n_out))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, final_lambda={self.final_lambda}"

    def route(self, u_hat: torch.Tensor, iterations: int, activations: Optional[torch.Tensor],
              return_couplings: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if activations is None:
            activations = u_hat.new_ones(u_hat.shape[:2])
        result = em_routing_fast(u_hat, activations, self.beta_u.to(u_hat.dtype), self.beta_a.to(u_hat.dtype),
                                 iterations, self.final_lambda)
        return capsule_from_presence(result.poses, result.activations), result.assignments
