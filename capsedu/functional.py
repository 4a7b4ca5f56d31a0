"""Pure functions on capsule tensors: the squash non-linearity (Eq. 1) and capsule lengths.

Every function here is stateless and works on any device and batch shape. Half-precision inputs
are computed in float32 (and returned in their own dtype); integer and bool tensors are rejected.
"""
from __future__ import annotations

from typing import Tuple, Union

import torch

from .checks import check_number

__all__ = ["squash", "squash_vjp", "capsule_length", "squash_scale"]

_HALF = (torch.float16, torch.bfloat16)


def squash_scale(sq_norm: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The factor that multiplies ``s`` in Eq. 1, given ``||s||^2``.

    ``||s||^2 / (1 + ||s||^2) / ||s||``. The square root is taken of ``||s||^2 + eps``
    so the division never sees zero; because the numerator carries ``||s||^2`` the
    whole factor goes to 0 at the origin, which makes ``squash(0) == 0`` *and* its
    Jacobian at 0 equal to the true limit (zero) rather than ``sqrt(eps)`` times identity.
    """
    return _scale(sq_norm, 1.0, check_number(eps, "eps", low=0.0))


def _scale(sq_norm: torch.Tensor, k2: Union[torch.Tensor, float], eps: float) -> torch.Tensor:
    """:func:`squash_scale` of ``t = k s`` given ``||t||^2``: with ``n2 = ||t||^2 / k^2``, ``t`` times this
    equals ``s * n2 / (1 + n2) / sqrt(n2 + eps)``, and for ``k == 1`` it is the same arithmetic."""
    return sq_norm / (k2 + sq_norm) / torch.sqrt(sq_norm + eps * k2)


def _check_real(s: torch.Tensor, name: str) -> None:
    if not isinstance(s, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(s).__name__}")
    if not s.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (capsule vectors), got dtype {s.dtype}")


#: ``||s||^2`` above ``2^a`` counts as huge, and such vectors are multiplied by ``2^-a`` before squaring:
#: the power of two scales exactly, ``||t||^2`` is then at least ``2^-a`` (a normal number) and no
#: square of a representable component overflows (float32: components up to 2^128 give t^2 <= 2^56)
_HUGE_EXPONENT = {torch.float32: 100, torch.float64: 800}


def _rescaled(s: torch.Tensor, dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(t, k)`` with ``t = k s``: ``k = 1`` for ordinary vectors, a tiny power of two for huge ones.

    ``||s||^2`` overflows once a component passes ``sqrt(finfo.max)`` (about 1.8e19 in float32), and
    squash would return ``inf / inf = NaN``. ``k`` is computed without gradient: every formula below
    is exact for any constant ``k``, so autograd differentiates the true function. Ordinary vectors
    get ``k = 1`` exactly, so their results are bit for bit those of the plain formula.
    """
    a = _HUGE_EXPONENT.get(s.dtype, 100)
    plain = s.detach()
    sq_norm = (plain * plain).sum(dim=dim, keepdim=True)  # inf (or NaN for inf input) when it overflows
    k = torch.where(sq_norm <= 2.0 ** a, torch.ones_like(sq_norm), torch.full_like(sq_norm, 2.0 ** -a))  # (..., 1)
    return s * k, k


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    r"""Squash a vector to a length in [0, 1) without changing its direction (Eq. 1).

    .. math:: v = \frac{\|s\|^2}{1 + \|s\|^2} \frac{s}{\|s\|}

    Short vectors shrink to almost zero (``|v| ~ |s|^2``), long vectors approach unit
    length. The zero vector maps to zero with a finite (zero) gradient, and vectors too long for
    ``||s||^2`` to be represented (beyond about 1e19 in float32) still give a unit-length ``v``.

    Args:
        s: floating-point tensor whose ``dim`` axis holds capsule vectors, e.g. ``(batch, n_caps, d)``.
        dim: the axis of the vector components.
        eps: added to ``||s||^2`` under the square root; see :func:`squash_scale`.

    Returns:
        ``v``, same shape and dtype as ``s``. float16/bfloat16 (e.g. under autocast) are computed in
        float32, because ``1 + ||s||^2`` loses the small norms that decide which capsules are active.

    Raises:
        ValueError: ``s`` is a scalar, or not a floating-point tensor; ``eps`` is negative or not finite
            (a negative one makes the square root of a short vector's norm NaN).
    """
    _check_real(s, "s")
    check_number(eps, "eps", low=0.0)
    if s.dim() == 0:
        raise ValueError("squash expects s with at least one dimension (the capsule vector), got a scalar")
    s32 = s.float() if s.dtype in _HALF else s
    t, k = _rescaled(s32, dim)
    sq_norm = (t * t).sum(dim=dim, keepdim=True)
    v = t * _scale(sq_norm, k * k, eps)
    return v.to(s.dtype)


def squash_vjp(s: torch.Tensor, grad_v: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    r"""Gradient of a loss with respect to ``s`` given its gradient ``grad_v`` at ``v = squash(s)``.

    With ``n2 = ||s||^2`` and ``v = f(n2) s`` (``f`` = :func:`squash_scale`), the Jacobian of
    Eq. 1 is ``f I + 2 f'(n2) s s^T``, so

    .. math:: \bar s = f\,\bar v + 2 f'(n_2)\,(s \cdot \bar v)\, s,
              \qquad f'(n_2) = \frac{1/(1 + n_2) - n_2 / (2 (n_2 + \epsilon))}{(1 + n_2)\sqrt{n_2 + \epsilon}}

    evaluated, like :func:`squash`, on ``t = k s`` so that huge vectors stay finite (with ``k = 1``
    for ordinary ones). Closed form, no autograd: the routing's hand-written backward pass uses it,
    which keeps that pass traceable by ``torch.compile``. Equal to
    ``torch.autograd.grad(squash(s), s, grad_v)``.
    """
    s32 = s.float() if s.dtype in _HALF else s
    g = grad_v.to(s32.dtype)
    t, k = _rescaled(s32, dim)
    k2 = k * k
    sq_norm = (t * t).sum(dim=dim, keepdim=True)  # ||t||^2 = k^2 n2
    root = torch.sqrt(sq_norm + eps * k2)
    one_plus = k2 + sq_norm
    scale = _scale(sq_norm, k2, eps)  # f, in t's units
    # 2 f' (t . g) t with u = t / root: f' alone would overflow for huge vectors, whose k^2 underflows to 0
    # (one_plus * root is then ~ ||t||^3, subnormal); u and root / one_plus stay representable.
    u = t / root
    radial = (u * g).sum(dim=dim, keepdim=True)  # u . grad_v
    bend = (k2 / one_plus - 0.5 * sq_norm / (sq_norm + eps * k2)) * (root / one_plus)
    return (k * (scale * g + (2.0 * bend * radial) * u)).to(s.dtype)  # chain rule through t = k s


def capsule_length(v: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean length of each capsule vector, the probability that its entity is present.

    ``eps`` keeps the gradient finite for an all-zero capsule (``d sqrt(x)/dx`` at 0). The result
    has ``v``'s dtype, except that float16/bfloat16 are measured (and returned) in float32.
    """
    _check_real(v, "v")
    check_number(eps, "eps", low=0.0)
    v32 = v.float() if v.dtype in _HALF else v
    return torch.sqrt((v32 * v32).sum(dim=dim) + eps)
