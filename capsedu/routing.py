"""Routing by agreement (Procedure 1 of the paper), vectorised over the batch.

Notation (paper, section 2): lower-level capsule ``i`` predicts the output of higher-level
capsule ``j`` with ``u_hat_{j|i} = W_ij u_i`` (eq. 2). Routing decides how much of each
prediction goes to each parent:

* ``c_ij = softmax_j(b_ij)``                  (eq. 1, coupling coefficients)
* ``s_j  = sum_i c_ij u_hat_{j|i}``            (eq. 3, total input)
* ``v_j  = squash(s_j)``                      (eq. 4)
* ``b_ij <- b_ij + u_hat_{j|i} . v_j``          (agreement, line 7 of Procedure 1)

The logits ``b_ij`` start at zero for *each example*: routing is a per-example inference
procedure, not a learned parameter.

Implementation note: :func:`_route` is the readable loop (predictions laid out as
``(batch, n_out, n_in, d)`` so eq. 3 and the agreement are batched matrix-vector products); it
records traces and serves as the reference. Training goes through :class:`_RoutingNatural`, a
``torch.autograd.Function`` with a hand-written backward pass that works on ``u_hat`` in its own
layout without copying it, saves only the couplings and totals of each iteration, and builds the
gradient of ``u_hat`` with one batched matmul; ``benchmarks/bench_routing.py`` measures it against
the usual formulations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch

from .functional import squash, squash_vjp

__all__ = ["dynamic_routing", "routing_trace", "RoutingTrace", "check_iterations", "GRADIENT_MODES"]

GRADIENT_MODES = ("all", "last")


def check_iterations(iterations: int) -> int:
    """Validate a routing-iteration count: a plain integer >= 1."""
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise ValueError(f"routing iterations must be an integer >= 1, got {iterations!r}")
    if iterations < 1:
        raise ValueError(f"routing iterations must be >= 1, got {iterations}")
    return iterations


def _check_u_hat(u_hat: torch.Tensor) -> None:
    if not isinstance(u_hat, torch.Tensor):
        raise ValueError(f"u_hat must be a torch.Tensor, got {type(u_hat).__name__}")
    if u_hat.dim() != 4:
        raise ValueError(
            "u_hat must have shape (batch, n_in, n_out, d_out) = 4 dimensions, "
            f"got {u_hat.dim()} dimensions with shape {tuple(u_hat.shape)}"
        )
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
    * ``couplings[k]`` ``(batch, n_in, n_out)``  c used in iteration k (eq. 1).
    * ``outputs[k]``   ``(batch, n_out, d_out)`` v produced by iteration k (eq. 4).
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
    """Core loop with plain autograd (used for traces and when the couplings need gradients).

    Returns ``v (batch, n_out, d)`` and ``c (batch, n_out, n_in)`` (transposed layout).
    """
    batch, n_in, n_out, _ = u_hat.shape
    # Softmax, agreement and squash run in float32 even under autocast: the couplings are a
    # softmax over small logit differences and bf16 would round most of them away.
    if u_hat.dtype in (torch.float16, torch.bfloat16):
        u_hat = u_hat.float()
    u = u_hat.permute(0, 2, 1, 3).contiguous()  # (batch, n_out, n_in, d)
    u_early = u.detach() if gradient == "last" else u
    b = u.new_zeros(batch, n_out, n_in)  # (batch, n_out, n_in): b_ij, one set per example
    for r in range(iterations):
        last = r == iterations - 1
        u_r = u if last else u_early
        if trace is not None:
            trace.logits.append(b.detach().transpose(1, 2))
        c = torch.softmax(b, dim=1)  # eq. 1: softmax over the parents j of each child i
        # eq. 3: s_j = sum_i c_ij u_hat_{j|i}, as (1 x n_in) @ (n_in x d) per (example, j)
        s = torch.matmul(c.unsqueeze(2), u_r).squeeze(2)  # (batch, n_out, d)
        v = squash(s, dim=-1)  # eq. 4
        if trace is not None:
            trace.couplings.append(c.detach().transpose(1, 2))
            trace.outputs.append(v.detach())
        if not last or trace is not None:
            # line 7: b_ij += u_hat_{j|i} . v_j, as (n_in x d) @ (d x 1) per (example, j)
            agreement = torch.matmul(u_r, v.unsqueeze(-1)).squeeze(-1)  # (batch, n_out, n_in)
            b = b + agreement
        if last and trace is not None:
            trace.logits.append(b.detach().transpose(1, 2))
    return v, c


def _block_diag(x: torch.Tensor, n_out: int) -> torch.Tensor:
    """``(batch, n_out, k, m)`` -> block-diagonal ``(batch, n_out * k, n_out * m)``: block j is ``x[:, j]``."""
    eye = torch.eye(n_out, dtype=x.dtype, device=x.device).view(1, n_out, 1, n_out, 1)
    batch, _, k, m = x.shape
    return (x.unsqueeze(3) * eye).reshape(batch, n_out * k, n_out * m)


def _diag_blocks(full: torch.Tensor, n_out: int) -> torch.Tensor:
    """``(batch, n_out, n_out * d)`` -> its diagonal blocks ``(batch, n_out, d)``."""
    batch = full.shape[0]
    return full.view(batch, n_out, n_out, -1).diagonal(dim1=1, dim2=2).transpose(1, 2)


class _RoutingNatural(torch.autograd.Function):
    """Procedure 1 on ``u_hat`` in its own ``(batch, n_in, n_out, d)`` layout, never copied.

    Each example's predictions are one ``n_in x (n_out * d)`` matrix ``U`` (any strides with
    ``(n_out, d)`` contiguous, e.g. the view :meth:`DigitCaps.predictions` returns). Every
    contraction of the loop becomes one GEMM per example against a small block-diagonal
    matrix: eq. 3 is ``c^T U`` (keep the diagonal blocks), the agreement is ``U diag(v)``, and
    the gradient of ``U`` is ``[c_k, R_k] @ blockdiag([ds_k, v_k])``. The zero blocks cost
    ``n_out`` times the minimal multiply-adds, but GEMMs run near peak speed while the
    matrix-vector alternatives are limited by memory bandwidth, and no ``u_hat``-sized copy or
    temporary is made.

    Backward: the gradient of ``u_hat`` is a sum of ``2r - 1`` outer products, ``c_k (x) ds_k``
    (eq. 3 of iteration k) and ``R_k (x) v_k`` (the agreements, where ``R_k`` accumulates the
    softmax-backward of the later iterations), evaluated together in one GEMM; ``v_k`` is
    recomputed from ``s_k``. ``through_all=False`` (``gradient="last"``) keeps only the first term
    of the last iteration. Checked against autograd with ``gradcheck`` (``tests/test_fast.py``).
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, iterations: int, through_all: bool):
        with torch.autocast(device_type=u.device.type, enabled=False):
            batch, n_in, n_out, d = u.shape
            mat = u.flatten(2)  # (batch, n_in, n_out * d), a view
            b = None  # logits and couplings are kept as (batch, n_out, n_in)
            cs, ss = [], []
            for r in range(iterations):
                if b is None:
                    c = u.new_full((batch, n_out, n_in), 1.0 / n_out)
                    s = mat.sum(dim=1).view(batch, n_out, d) / n_out  # eq. 3 with c = 1 / n_out
                else:
                    c = torch.softmax(b, dim=1)  # eq. 1, softmax over the parents j
                    s = _diag_blocks(torch.matmul(c, mat), n_out)  # eq. 3, (batch, n_out, d)
                v = squash(s, dim=-1)  # eq. 4
                cs.append(c)
                ss.append(s)
                if r < iterations - 1:
                    # line 7, as blockdiag(v)^T U^T: (n_out x n_out*d) @ (n_out*d x n_in) per example
                    agreement = torch.matmul(_block_diag(v.unsqueeze(2), n_out), mat.transpose(1, 2))
                    b = agreement if b is None else b + agreement
        ctx.iterations, ctx.through_all = iterations, through_all
        ctx.save_for_backward(u, *cs, *ss)
        ctx.mark_non_differentiable(c)
        return v, c

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_v: torch.Tensor, _grad_c: Optional[torch.Tensor]):
        saved = ctx.saved_tensors
        r = ctx.iterations
        u, cs, ss = saved[0], saved[1:1 + r], saved[1 + r:]
        if grad_v is None:
            return None, None, None
        with torch.autocast(device_type=u.device.type, enabled=False):
            batch, n_in, n_out, d = u.shape
            mat = u.flatten(2)
            grad_v = grad_v.to(u.dtype)
            left, right = [], []  # grad_u[b, i, j] = sum_k left_k[b, j, i] * right_k[b, j]
            running = None
            for k in range(r - 1, -1, -1):
                grad_s = squash_vjp(ss[k], grad_v)  # (batch, n_out, d), eq. 4 backwards
                left.append(cs[k])
                right.append(grad_s)
                if k == 0 or not ctx.through_all:
                    break
                c = cs[k]
                grad_c = torch.matmul(_block_diag(grad_s.unsqueeze(2), n_out), mat.transpose(1, 2))  # (batch, n_out, n_in)
                grad_b = c * (grad_c - (c * grad_c).sum(dim=1, keepdim=True))  # softmax over j
                running = grad_b if running is None else running + grad_b
                left.append(running)
                right.append(squash(ss[k - 1], dim=-1))  # v_{k-1}, recomputed
                grad_v = _diag_blocks(torch.matmul(running, mat), n_out)  # (batch, n_out, d)
            # rows ordered (k, j): stacking along a leading dim is a plain copy, and the GEMM reads
            # the (batch, n_in, K * n_out) left factor as a transposed view instead of a scattered copy
            lhs = torch.cat(left, dim=1).transpose(1, 2)  # (batch, n_in, K * n_out)
            rhs = torch.cat([_block_diag(r_k.unsqueeze(2), n_out) for r_k in right], dim=1)  # (batch, K * n_out, n_out * d)
            grad_u = torch.matmul(lhs, rhs).view(batch, n_in, n_out, d)
        return grad_u, None, None


#: above this many output capsules the block-diagonal GEMMs waste too much work; use the autograd loop
NATURAL_LAYOUT_MAX_OUT = 32


def _route_fast(u_hat: torch.Tensor, iterations: int, gradient: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Same result as :func:`_route` (no trace), through :class:`_RoutingNatural` when it pays."""
    if u_hat.dtype in (torch.float16, torch.bfloat16):
        u_hat = u_hat.float()
    if iterations == 1:
        # no routing: c_ij = 1 / n_out, so s_j is a plain sum (no copy, and its gradient is a broadcast)
        n_out = u_hat.shape[2]
        v = squash(u_hat.sum(dim=1) / n_out, dim=-1)
        c = u_hat.new_full((u_hat.shape[0], n_out, u_hat.shape[1]), 1.0 / n_out)
        return v, c
    if u_hat.shape[2] <= NATURAL_LAYOUT_MAX_OUT:
        if u_hat.stride(-1) != 1 or u_hat.stride(-2) != u_hat.shape[-1]:
            u_hat = u_hat.contiguous()
        return _RoutingNatural.apply(u_hat, iterations, gradient == "all")
    return _route(u_hat, iterations, gradient)


def dynamic_routing(
    u_hat: torch.Tensor,
    iterations: int = 3,
    *,
    return_couplings: bool = False,
    gradient: str = "all",
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Route predictions ``u_hat`` to output capsules by agreement (Procedure 1).

    Args:
        u_hat: prediction vectors ``u_hat_{j|i}`` of shape ``(batch, n_in, n_out, d_out)``.
        iterations: number of routing iterations r (>= 1). ``r = 1`` means uniform couplings
            (``c_ij = 1 / n_out``), i.e. no routing at all.
        return_couplings: also return the couplings ``c`` of the final iteration, shape
            ``(batch, n_in, n_out)``, the ones that produced ``v``.
        gradient: ``"all"`` (default, as in the authors' official code) back-propagates through
            every iteration, including the way ``b`` depends on ``u_hat``; ``"last"`` treats the
            couplings as constants and back-propagates only through the final eq. 3 (as many
            reimplementations do; cheaper, slightly different gradients).

    Returns:
        ``v`` of shape ``(batch, n_out, d_out)``, and ``c`` if ``return_couplings``. The result
        has ``u_hat``'s dtype, except that half-precision input is routed (and returned) in float32.
    """
    _check_u_hat(u_hat)
    check_iterations(iterations)
    if gradient not in GRADIENT_MODES:
        raise ValueError(f"gradient must be one of {GRADIENT_MODES}, got {gradient!r}")
    if return_couplings and torch.is_grad_enabled() and u_hat.requires_grad:
        v, c = _route(u_hat, iterations, gradient)  # the couplings get gradients too
    else:
        v, c = _route_fast(u_hat, iterations, gradient)
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
