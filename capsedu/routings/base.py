"""What every routing procedure shares: the call :class:`~capsedu.layers.DigitCaps` makes, and its checks.

A routing procedure turns predictions ``u_hat (batch, n_in, n_out, dim)`` (Eq. 2 of Sabour et al.) into
``n_out`` output capsules ``v (batch, n_out, dim)`` whose *length* is the probability that the parent is
present, so that the margin loss (Eq. 4), the decoder and the accuracy read every procedure's output the
same way. Procedures that keep presence apart from the pose (EM routing's activation, the class score of
Tsai et al.) hand it back through :func:`capsule_from_presence`.
"""
from __future__ import annotations

from typing import ClassVar, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..routing import _check_u_hat, check_iterations

__all__ = ["Routing", "capsule_from_presence"]

#: added to squared norms before a square root, so that a zero pose has a zero (not NaN) direction
_NORM_EPS = 1e-20


def capsule_from_presence(pose: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
    """A capsule vector with ``pose``'s direction and length ``presence``.

    Args:
        pose: ``(..., dim)`` poses.
        presence: ``(...)`` probabilities in [0, 1].

    Returns:
        ``presence * pose / ||pose||``, shape of ``pose``; a zero pose gives the zero vector.
    """
    norm = torch.sqrt((pose * pose).sum(dim=-1, keepdim=True) + _NORM_EPS)
    return presence.unsqueeze(-1) * pose / norm


class Routing(nn.Module):
    """Base class of the routing procedures: ``routing(u_hat, iterations) -> v`` (or ``(v, c)``).

    Subclasses implement :meth:`route`; :meth:`forward` checks the arguments, routes half precision in
    float32 (a softmax over small logit differences loses them in bf16) and returns what was asked for.

    Args:
        n_in: number of input (child) capsules i.
        n_out: number of output (parent) capsules j.
        dim: dimension of the predictions and of the output capsules.

    Attributes:
        iterative: whether ``iterations`` changes the result; the non-iterative procedures check the count
            and otherwise ignore it, so a network switches procedure without changing anything else.
        reads_activations: whether the procedure reads the children's ``activations`` (EM routing only).
    """

    iterative: ClassVar[bool] = True
    reads_activations: ClassVar[bool] = False

    def __init__(self, n_in: int, n_out: int, dim: int):
        super().__init__()
        for name, value in (("n_in", n_in), ("n_out", n_out), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__} {name} must be a positive integer, got {value!r}")
        self.n_in, self.n_out, self.dim = n_in, n_out, dim

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}, dim={self.dim}"

    def route(self, u_hat: torch.Tensor, iterations: int, activations: Optional[torch.Tensor],
              return_couplings: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The procedure itself on checked arguments: ``v (batch, n_out, dim)`` and, when
        ``return_couplings``, the couplings ``c (batch, n_in, n_out)`` that produced it (else ``None``)."""
        raise NotImplementedError

    def forward(self, u_hat: torch.Tensor, iterations: int = 3, activations: Optional[torch.Tensor] = None,
                return_couplings: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """Route ``u_hat``.

        Args:
            u_hat: predictions ``(batch, n_in, n_out, dim)``, floating point.
            iterations: routing iterations (>= 1); checked even by the non-iterative procedures.
            activations: presence of each input capsule, ``(batch, n_in)`` in [0, 1]. Only EM routing reads
                it; the other procedures take presence from the lengths of the predictions, as Eq. 2 does.
            return_couplings: also return the couplings ``(batch, n_in, n_out)``.

        Returns:
            ``v (batch, n_out, dim)``, and the couplings if asked; float64 in, float64 out; float32, float16
            and bfloat16 in, float32 out.

        Raises:
            ValueError: ``u_hat`` is not a 4-D floating-point tensor of the sizes this routing was built
                for, ``activations`` has the wrong shape, or ``iterations`` is not an integer >= 1.
        """
        _check_u_hat(u_hat)
        if tuple(u_hat.shape[1:]) != (self.n_in, self.n_out, self.dim):
            raise ValueError(f"u_hat must have shape (batch, {self.n_in}, {self.n_out}, {self.dim}) for this "
                             f"{type(self).__name__}, got {tuple(u_hat.shape)}")
        check_iterations(iterations)
        if activations is not None and (not isinstance(activations, torch.Tensor)
                                        or tuple(activations.shape) != (u_hat.shape[0], self.n_in)):
            shape = tuple(activations.shape) if isinstance(activations, torch.Tensor) else type(activations).__name__
            raise ValueError(f"activations must have shape ({u_hat.shape[0]}, {self.n_in}), got {shape}")
        if u_hat.dtype in (torch.float16, torch.bfloat16):
            u_hat = u_hat.float()
        if activations is not None:
            activations = activations.to(u_hat.dtype)
        v, c = self.route(u_hat, iterations, activations, return_couplings)
        return (v, c) if return_couplings else v
