"""Pure functions on capsule tensors: the squash non-linearity (eq. 4) and capsule lengths.

Every function here is stateless and works on any device and batch shape.
"""
from __future__ import annotations

import torch

__all__ = ["squash", "squash_vjp", "capsule_length", "squash_scale"]


def squash_scale(sq_norm: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The factor that multiplies ``s`` in eq. 4, given ``||s||^2``.

    ``||s||^2 / (1 + ||s||^2) / ||s||``. The square root is taken of ``||s||^2 + eps``
    so the division never sees zero; because the numerator carries ``||s||^2`` the
    whole factor goes to 0 at the origin, which makes ``squash(0) == 0`` *and* its
    Jacobian at 0 equal to the true limit (zero) rather than ``sqrt(eps)`` times identity.
    """
    return sq_norm / (1.0 + sq_norm) / torch.sqrt(sq_norm + eps)


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    r"""Squash a vector to a length in [0, 1) without changing its direction (eq. 4).

    .. math:: v = \frac{\|s\|^2}{1 + \|s\|^2} \frac{s}{\|s\|}

    Short vectors shrink to almost zero (``|v| ~ |s|^2``), long vectors approach unit
    length. The zero vector maps to zero with a finite (zero) gradient.

    Args:
        s: tensor whose ``dim`` axis holds capsule vectors, e.g. ``(batch, n_caps, d)``.
        dim: the axis of the vector components.
        eps: added to ``||s||^2`` under the square root; see :func:`squash_scale`.

    Under autocast (bf16/fp16) the computation is done in float32, because ``1 + ||s||^2``
    loses the small norms that decide which capsules are active.
    """
    if s.dim() == 0:
        raise ValueError("squash expects a tensor with at least one dimension (the capsule vector), got a scalar")
    orig_dtype = s.dtype
    s32 = s.float() if s.dtype in (torch.float16, torch.bfloat16) else s
    sq_norm = (s32 * s32).sum(dim=dim, keepdim=True)
    v = s32 * squash_scale(sq_norm, eps)
    return v.to(orig_dtype)


def squash_vjp(s: torch.Tensor, grad_v: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    r"""Gradient of a loss with respect to ``s`` given its gradient ``grad_v`` at ``v = squash(s)``.

    With ``n2 = ||s||^2`` and ``v = f(n2) s`` (``f`` = :func:`squash_scale`), the Jacobian of
    eq. 4 is ``f I + 2 f'(n2) s s^T``, so

    .. math:: \bar s = f\,\bar v + 2 f'(n_2)\,(s \cdot \bar v)\, s,
              \qquad f'(n_2) = \frac{1/(1 + n_2) - n_2 / (2 (n_2 + \epsilon))}{(1 + n_2)\sqrt{n_2 + \epsilon}}

    Closed form, no autograd: the routing's hand-written backward pass uses it, which keeps that
    pass traceable by ``torch.compile``. Equal to ``torch.autograd.grad(squash(s), s, grad_v)``.
    """
    s32 = s.float() if s.dtype in (torch.float16, torch.bfloat16) else s
    g = grad_v.to(s32.dtype)
    sq_norm = (s32 * s32).sum(dim=dim, keepdim=True)
    root = torch.sqrt(sq_norm + eps)
    one_plus = 1.0 + sq_norm
    scale = squash_scale(sq_norm, eps)  # f(n2)
    d_scale = (1.0 / one_plus - 0.5 * sq_norm / (sq_norm + eps)) / (one_plus * root)  # f'(n2)
    radial = (s32 * g).sum(dim=dim, keepdim=True)  # s . grad_v
    return (scale * g + (2.0 * d_scale * radial) * s32).to(s.dtype)


def capsule_length(v: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean length of each capsule vector, the probability that its entity is present.

    ``eps`` keeps the gradient finite for an all-zero capsule (``d sqrt(x)/dx`` at 0).
    """
    return torch.sqrt((v.float() ** 2).sum(dim=dim) + eps)
