"""Dynamic routing (Sabour, Frosst & Hinton, 2017, Procedure 1) and its no-routing limit, as routing modules.

Both call :func:`capsedu.routing.dynamic_routing`, the book's Procedure 1 (Eqs. 1-3): routing by agreement
is unchanged, it only gains the interface the other procedures share.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..routing import check_gradient_mode, dynamic_routing
from .base import Routing

__all__ = ["DynamicRouting", "UniformRouting"]


class DynamicRouting(Routing):
    """Routing by agreement, Procedure 1 (Eqs. 1-3), for ``iterations`` r.

    Args:
        n_in, n_out, dim: see :class:`~capsedu.routings.base.Routing`.
        gradient: ``"all"`` or ``"last"``, see :func:`capsedu.routing.dynamic_routing`.
    """

    def __init__(self, n_in: int, n_out: int, dim: int, gradient: str = "all"):
        super().__init__(n_in, n_out, dim)
        self.gradient = check_gradient_mode(gradient, "gradient")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gradient={self.gradient!r}"

    def route(self, u_hat: torch.Tensor, iterations: int, activations: Optional[torch.Tensor],
              return_couplings: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if return_couplings:
            return dynamic_routing(u_hat, iterations, return_couplings=True, gradient=self.gradient)
        return dynamic_routing(u_hat, iterations, gradient=self.gradient), None


class UniformRouting(Routing):
    """No routing: every child sends ``1 / n_out`` of its prediction to every parent, ``v_j = squash(mean_i
    u_hat_{j|i})`` (Eqs. 1-2 with ``c_ij = 1 / n_out``). This is Procedure 1 stopped after its first
    iteration, so it is computed as ``r = 1``; the ``iterations`` asked for are checked and ignored.
    """

    iterative = False

    def route(self, u_hat: torch.Tensor, iterations: int, activations: Optional[torch.Tensor],
              return_couplings: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if return_couplings:
            return dynamic_routing(u_hat, 1, return_couplings=True)
        return dynamic_routing(u_hat, 1), None
