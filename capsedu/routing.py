"""Routing by agreement (Procedure 1 of the paper), vectorised over the batch.

Notation (paper, section 2): lower-level capsule ``i`` predicts the output of higher-level
capsule ``j`` with ``u_hat_{j|i} = W_ij u_i`` (Eq. 2). Routing decides how much of each
prediction goes to each parent (Procedure 1, one line each):

* line 2: ``b_ij <- 0``                         logits, one set per example
* line 4: ``c_i <- softmax(b_i)``               (Eq. 3, coupling coefficients over the parents j)
* line 5: ``s_j <- sum_i c_ij u_hat_{j|i}``     (Eq. 2, total input)
* line 6: ``v_j <- squash(s_j)``                (Eq. 1)
* line 7: ``b_ij <- b_ij + u_hat_{j|i} . v_j``  (agreement)

The logits ``b_ij`` start at zero for *each example*: routing is a per-example inference
procedure, not a learned parameter.

:func:`_route` is the readable loop; it records traces, gives the couplings gradients when asked
for them, and is the reference the fast path is tested against. Everything else goes through
:func:`capsedu.routing_autograd.route_fast`, the same procedure with a hand-written backward pass
that never copies ``u_hat`` and, without gradients, keeps only one iteration alive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch

from .checks import check_int
from .functional import squash
from .routing_autograd import FAST_PATH_MAX_OUT, route_fast

__all__ = ["dynamic_routing", "routing_trace", "RoutingTrace", "check_iterations", "check_gradient_mode",
           "GRADIENT_MODES", "MAX_ITERATIONS"]

GRADIENT_MODES = ("all", "last")

#: The most routing iterations accepted. The paper uses 1 to 3 and its couplings have settled long before
#: 100; the bound turns a mistyped huge count into an error instead of a run that never ends.
MAX_ITERATIONS = 100


def check_iterations(iterations: int, name: str = "routing iterations") -> int:
    """The one check of a routing-iteration count r (Procedure 1): an integer in ``[1, MAX_ITERATIONS]``."""
    return check_int(iterations, name, low=1, high=MAX_ITERATIONS)


def check_gradient_mode(gradient: str, name: str = "routing_gradient") -> str:
    """The one check of a routing gradient mode: ``"all"`` or ``"last"``."""
    if gradient not in GRADIENT_MODES:
        raise ValueError(f"{name} must be one of {GRADIENT_MODES}, got {gradient!r}")
    return gradient


def _check_u_hat(u_hat: torch.Tensor) -> None:
    if not isinstance(u_hat, torch.Tensor):
        raise ValueError(f"u_hat must be a torch.Tensor, got {type(u_hat).__name__}")
    if u_hat.dim() != 4:
        raise ValueError(
            "u_hat must have shape (batch, n_in, n_out, d_out) = 4 dimensions, "
            f"got {u_hat.dim()} dimensions with shape {tuple(u_hat.shape)}"
        )
    if u_hat.shape[0] == 0:
        raise ValueError(f"u_hat: empty batch (shape {tuple(u_hat.shape)}); routing needs at least one example")
    if min(u_hat.shape) == 0:
        raise ValueError(f"u_hat has an empty dimension: shape {tuple(u_hat.shape)}")
    if not u_hat.is_floating_point():
        raise ValueError(f"u_hat must be a floating-point tensor, got dtype {u_hat.dtype}")


@dataclass
class RoutingTrace:
    """Everything routing computed, iteration by iteration (for plots and teaching).

    All tensors are detached. With ``r`` iterations:

    * ``logits[k]``    ``(batch, n_in, n_out)``  b before iteration k's softmax; ``logits[r]`` is
      the value after the final agreement update (computed for the trace only; the output
      does not depend on it), so ``len(logits) == r + 1``.
    * ``couplings[k]`` ``(batch, n_in, n_out)``  c used in iteration k (Eq. 3).
    * ``outputs[k]``   ``(batch, n_out, d_out)`` v produced by iteration k (Eq. 1).
    """

    logits: List[torch.Tensor]
    couplings: List[torch.Tensor]
    outputs: List[torch.Tensor]

    @property
    def iterations(self) -> int:
        return len(self.couplings)

    def logit_changes(self) -> torch.Tensor:
        """Mean absolute change of b_ij made by each iteration, shape ``(r,)``."""
        return torch.stack([(b1 - b0).abs().mean() for b0, b1 in zip(self.logits[:-1], self.logits[1:])])


def _route(
    u_hat: torch.Tensor,
    iterations: int,
    gradient: str,
    trace: Optional[RoutingTrace] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Procedure 1 line by line, differentiated by plain autograd.

    Args:
        u_hat: predictions ``(batch, n_in, n_out, d)``, already validated.
        iterations: r >= 1.
        gradient: ``"all"`` or ``"last"`` (earlier iterations treated as constants).
        trace: if given, b, c and v of every iteration are appended to it.

    Returns:
        ``v (batch, n_out, d)`` and ``c (batch, n_out, n_in)`` (parents first).
    """
    # Softmax, agreement and squash run in float32 even under autocast: the couplings are a
    # softmax over small logit differences and bf16 would round most of them away.
    if u_hat.dtype in (torch.float16, torch.bfloat16):
        u_hat = u_hat.float()
    # parents first, so that lines 5 and 7 are batched matrix-vector products over the children i
    u = u_hat.permute(0, 2, 1, 3).contiguous()  # (batch, n_out, n_in, d)
    u_early = u.detach() if gradient == "last" else u
    batch, n_out, n_in, _ = u.shape
    b = u.new_zeros(batch, n_out, n_in)  # line 2: b_ij <- 0, (batch, n_out, n_in)
    for r in range(iterations):  # line 3
        last = r == iterations - 1
        u_r = u if last else u_early
        if trace is not None:
            trace.logits.append(b.detach().transpose(1, 2))
        c = torch.softmax(b, dim=1)  # line 4: c_i <- softmax(b_i) over the parents j (Eq. 3)
        s = torch.matmul(c.unsqueeze(2), u_r).squeeze(2)  # line 5: s_j <- sum_i c_ij u_hat_{j|i} (Eq. 2)
        v = squash(s, dim=-1)  # line 6: v_j <- squash(s_j) (Eq. 1)
        if trace is not None:
            trace.couplings.append(c.detach().transpose(1, 2))
            trace.outputs.append(v.detach())
        if not last or trace is not None:  # the last update cannot change v: only traces need it
            b = b + torch.matmul(u_r, v.unsqueeze(-1)).squeeze(-1)  # line 7: b_ij <- b_ij + u_hat_{j|i} . v_j
    if trace is not None:
        trace.logits.append(b.detach().transpose(1, 2))
    return v, c  # line 8: return v_j


def dynamic_routing(
    u_hat: torch.Tensor,
    iterations: int = 3,
    *,
    return_couplings: bool = False,
    gradient: str = "all",
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Route predictions ``u_hat`` to output capsules by agreement (Procedure 1, Eqs. 1-3).

    Args:
        u_hat: prediction vectors ``u_hat_{j|i}`` (Eq. 2), floating point, of shape
            ``(batch, n_in, n_out, d_out)`` with no empty dimension.
        iterations: number of routing iterations r (1 to :data:`MAX_ITERATIONS`). ``r = 1`` means uniform couplings
            (``c_ij = 1 / n_out``), i.e. no routing at all.
        return_couplings: also return the couplings ``c`` of the final iteration, shape
            ``(batch, n_in, n_out)``, the ones that produced ``v``.
        gradient: ``"all"`` (default, as in the authors' official code) back-propagates through
            every iteration, including the way ``b`` depends on ``u_hat``; ``"last"`` treats the
            couplings as constants and back-propagates only through the final Eq. 2 (as many
            reimplementations do; cheaper, slightly different gradients).

    Returns:
        ``v`` of shape ``(batch, n_out, d_out)``, and ``c`` if ``return_couplings``. The result
        has ``u_hat``'s dtype (float32 or float64), except that float16/bfloat16 input is routed
        (and returned) in float32.

    Raises:
        ValueError: ``u_hat`` is not a 4-D floating-point tensor, or has an empty dimension (e.g.
            a batch of 0); ``iterations`` or ``gradient`` are invalid.
    """
    _check_u_hat(u_hat)
    check_iterations(iterations)
    check_gradient_mode(gradient, "gradient")
    if return_couplings and torch.is_grad_enabled() and u_hat.requires_grad:
        v, c = _route(u_hat, iterations, gradient)  # the couplings get gradients too
    elif iterations == 1 or u_hat.shape[2] <= FAST_PATH_MAX_OUT:
        v, c = route_fast(u_hat, iterations, gradient)
    else:
        v, c = _route(u_hat, iterations, gradient)  # many parents: the fast path's GEMMs would waste work
    if return_couplings:
        return v, c.transpose(1, 2)
    return v


@torch.no_grad()
def routing_trace(u_hat: torch.Tensor, iterations: int = 3) -> RoutingTrace:
    """Run Procedure 1 and record b, c and v of every iteration (see :class:`RoutingTrace`)."""
    _check_u_hat(u_hat)
    check_iterations(iterations)
    trace = RoutingTrace([], [], [])
    _route(u_hat, iterations, "all", trace)
    return trace
