"""The fast path of routing by agreement: Procedure 1 with a hand-written backward pass.

:func:`capsedu.routing.dynamic_routing` dispatches here; :func:`capsedu.routing._route` is the
readable loop this module must agree with (``tests/test_fast.py`` checks values and gradients).

Each example's predictions are one ``n_in x (n_out * d)`` matrix ``U``, read in ``u_hat``'s own
``(batch, n_in, n_out, d)`` layout (any strides with ``(n_out, d)`` contiguous, e.g. the view
:meth:`capsedu.layers.DigitCaps.predictions` returns), never copied. Every contraction of the loop
becomes one GEMM per example against a small block-diagonal matrix: Eq. 2 (``s = c^T U``, keep
the diagonal blocks), the agreement of line 7 (``U diag(v)``) and, in the backward pass, the
gradient of ``U``. The zero blocks cost ``n_out`` times the minimal multiply-adds, but GEMMs run
near peak speed while the matrix-vector alternatives are limited by memory bandwidth, and no
``u_hat``-sized copy or temporary is made; ``benchmarks/bench_routing.py`` measures it.

Memory: without a backward pass (``torch.no_grad()``, inference, or ``u_hat`` not requiring
gradients) only the current iteration is alive, whatever the iteration count. With one, the
couplings and totals of every iteration are kept for ``gradient="all"``, of the last one only
for ``gradient="last"``.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from .functional import squash, squash_vjp

__all__ = ["RoutingFunction", "route_fast", "FAST_PATH_MAX_OUT", "block_diagonal", "diagonal_blocks"]

#: above this many output capsules the block-diagonal GEMMs waste too much work; routing then
#: uses the plain autograd loop
FAST_PATH_MAX_OUT = 32


def block_diagonal(x: torch.Tensor) -> torch.Tensor:
    """``(batch, n_out, k, m)`` -> block-diagonal ``(batch, n_out * k, n_out * m)``: block j is ``x[:, j]``."""
    batch, n_out, k, m = x.shape
    eye = torch.eye(n_out, dtype=x.dtype, device=x.device).view(1, n_out, 1, n_out, 1)
    return (x.unsqueeze(3) * eye).reshape(batch, n_out * k, n_out * m)


def diagonal_blocks(full: torch.Tensor, n_out: int) -> torch.Tensor:
    """``(batch, n_out, n_out * d)`` -> its diagonal blocks ``(batch, n_out, d)``."""
    batch = full.shape[0]
    return full.view(batch, n_out, n_out, -1).diagonal(dim1=1, dim2=2).transpose(1, 2)


_Kept = Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor], List[torch.Tensor]]


def _forward_loop(u: torch.Tensor, iterations: int, keep: str) -> _Kept:
    """Procedure 1 on ``u (batch, n_in, n_out, d)``; returns ``v``, the last ``c`` and the kept ``c``, ``s``.

    ``keep``: ``"all"`` keeps every iteration's couplings and totals (what the full backward pass
    needs), ``"last"`` only the final ones; earlier ones are freed as the loop goes on.
    """
    batch, n_in, n_out, d = u.shape
    mat = u.flatten(2)  # (batch, n_in, n_out * d), a view
    b: Optional[torch.Tensor] = None  # logits b_ij, kept as (batch, n_out, n_in); line 2: b = 0
    cs: List[torch.Tensor] = []
    ss: List[torch.Tensor] = []
    for r in range(iterations):
        if b is None:  # b = 0: uniform couplings, and s_j is a plain sum
            c = u.new_full((batch, n_out, n_in), 1.0 / n_out)
            s = mat.sum(dim=1).view(batch, n_out, d) / n_out  # Eq. 2 with c = 1 / n_out
        else:
            c = torch.softmax(b, dim=1)  # line 4, Eq. 3: softmax over the parents j
            s = diagonal_blocks(torch.matmul(c, mat), n_out)  # line 5, Eq. 2: (batch, n_out, d)
        v = squash(s, dim=-1)  # line 6, Eq. 1
        if keep == "all" or r == iterations - 1:
            cs.append(c)
            ss.append(s)
        if r < iterations - 1:
            # line 7 as blockdiag(v)^T U^T: (n_out x n_out*d) @ (n_out*d x n_in) per example
            agreement = torch.matmul(block_diagonal(v.unsqueeze(2)), mat.transpose(1, 2))  # (batch, n_out, n_in)
            b = agreement if b is None else b + agreement
    return v, c, cs, ss


class RoutingFunction(torch.autograd.Function):
    """Procedure 1 on ``u_hat (batch, n_in, n_out, d)`` with a hand-written backward pass.

    ``RoutingFunction.apply(u_hat, iterations, through_all) -> (v (batch, n_out, d), c (batch, n_out, n_in))``;
    ``c`` is not differentiable.

    Backward: the gradient of ``u_hat`` is a sum of ``2r - 1`` outer products, ``c_k (x) ds_k``
    (Eq. 2 of iteration k) and ``R_k (x) v_k`` (the agreements of line 7, where ``R_k`` accumulates
    the softmax-backward of the later iterations), evaluated together in one GEMM; ``v_k`` is
    recomputed from ``s_k``. ``through_all=False`` (``gradient="last"``) keeps only the first term
    of the last iteration. Checked against autograd with ``gradcheck`` (``tests/test_fast.py``).
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, iterations: int, through_all: bool):
        with torch.autocast(device_type=u.device.type, enabled=False):
            v, c, cs, ss = _forward_loop(u, iterations, "all" if through_all else "last")
        ctx.through_all = through_all
        ctx.save_for_backward(u, *cs, *ss)
        ctx.mark_non_differentiable(c)
        return v, c

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_v: torch.Tensor, _grad_c: Optional[torch.Tensor]):
        if grad_v is None:
            return None, None, None
        u, *kept = ctx.saved_tensors
        r = len(kept) // 2  # iterations whose c and s were kept
        cs, ss = kept[:r], kept[r:]
        with torch.autocast(device_type=u.device.type, enabled=False):
            batch, n_in, n_out, d = u.shape
            mat = u.flatten(2)
            grad_v = grad_v.to(u.dtype)
            left, right = [], []  # grad_u[b, i, j] = sum_k left_k[b, j, i] * right_k[b, j]
            running = None
            for k in range(r - 1, -1, -1):
                grad_s = squash_vjp(ss[k], grad_v)  # (batch, n_out, d), Eq. 1 backwards
                left.append(cs[k])
                right.append(grad_s)
                if k == 0 or not ctx.through_all:
                    break
                c = cs[k]
                grad_c = torch.matmul(block_diagonal(grad_s.unsqueeze(2)), mat.transpose(1, 2))  # (batch, n_out, n_in)
                grad_b = c * (grad_c - (c * grad_c).sum(dim=1, keepdim=True))  # Eq. 3 backwards, softmax over j
                running = grad_b if running is None else running + grad_b
                left.append(running)
                right.append(squash(ss[k - 1], dim=-1))  # v_{k-1}, recomputed
                grad_v = diagonal_blocks(torch.matmul(running, mat), n_out)  # (batch, n_out, d)
            # rows ordered (k, j): stacking along a leading dim is a plain copy, and the GEMM reads
            # the (batch, n_in, K * n_out) left factor as a transposed view instead of a scattered copy
            lhs = torch.cat(left, dim=1).transpose(1, 2)  # (batch, n_in, K * n_out)
            # (batch, K * n_out, n_out * d)
            rhs = torch.cat([block_diagonal(r_k.unsqueeze(2)) for r_k in right], dim=1)
            grad_u = torch.matmul(lhs, rhs).view(batch, n_in, n_out, d)
        return grad_u, None, None


def route_fast(u_hat: torch.Tensor, iterations: int, gradient: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Procedure 1 through :class:`RoutingFunction` (no trace, no gradient for the couplings).

    Args:
        u_hat: predictions ``(batch, n_in, n_out, d)`` with ``n_out <= FAST_PATH_MAX_OUT`` (or
            ``iterations == 1``), already validated by :func:`capsedu.routing.dynamic_routing`.
        iterations: routing iterations r >= 1.
        gradient: ``"all"`` or ``"last"``, see :func:`capsedu.routing.dynamic_routing`.

    Returns:
        ``v (batch, n_out, d)`` and ``c (batch, n_out, n_in)`` (parents first), in float32 for
        half-precision ``u_hat``, else in ``u_hat``'s dtype.
    """
    if u_hat.dtype in (torch.float16, torch.bfloat16):
        u_hat = u_hat.float()  # the couplings are a softmax over small logit differences
    if iterations == 1:
        # no routing: c_ij = 1 / n_out, so s_j is a plain sum (no copy, and its gradient is a broadcast)
        batch, n_in, n_out, _ = u_hat.shape
        v = squash(u_hat.sum(dim=1) / n_out, dim=-1)
        return v, u_hat.new_full((batch, n_out, n_in), 1.0 / n_out)
    if u_hat.stride(-1) != 1 or u_hat.stride(-2) != u_hat.shape[-1]:
        u_hat = u_hat.contiguous()
    if torch.is_grad_enabled() and u_hat.requires_grad:
        return RoutingFunction.apply(u_hat, iterations, gradient == "all")
    # no backward can happen: run the same loop outside autograd, keeping one iteration alive
    with torch.autocast(device_type=u_hat.device.type, enabled=False):
        v, c, _, _ = _forward_loop(u_hat, iterations, "last")
    return v, c
