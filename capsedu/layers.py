"""Capsule layers: PrimaryCaps (convolutional capsules), DigitCaps (routed capsules) and the decoder."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .functional import capsule_length, squash
from .routing import check_gradient_mode, check_iterations
from .routings import build_routing, check_routing

__all__ = ["PrimaryCaps", "DigitCaps", "Decoder"]


class PrimaryCaps(nn.Module):
    """Convolutional capsules: ``n_types`` capsule types of dimension ``dim`` at every grid position.

    One convolution with ``n_types * dim`` output channels; each group of ``dim`` channels at a
    position is one capsule, squashed (Eq. 1). In the paper: 32 types of 8-D capsules, 9x9 kernels,
    stride 2, turning the 20x20x256 conv1 output into a 6x6 grid, i.e. 6*6*32 = 1152 capsules.

    Args:
        in_channels: channels of the input feature map (256).
        n_types: number of capsule types (32).
        dim: dimension of each capsule vector (8).
        kernel_size: convolution kernel size (9).
        stride: convolution stride (2).

    Shape: ``(batch, in_channels, H, W) -> (batch, n_types * H' * W', dim)``.
    """

    def __init__(self, in_channels: int = 256, n_types: int = 32, dim: int = 8, kernel_size: int = 9, stride: int = 2):
        super().__init__()
        self.n_types, self.dim = n_types, dim
        self.conv = nn.Conv2d(in_channels, n_types * dim, kernel_size=kernel_size, stride=stride)

    def output_grid(self, height: int, width: int) -> Tuple[int, int]:
        """Spatial size of the capsule grid for an input feature map of ``height x width``."""
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        return (height - k) // s + 1, (width - k) // s + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)  # (batch, n_types * dim, H', W')
        batch, _, h, w = out.shape
        out = out.view(batch, self.n_types, self.dim, h * w)  # (batch, types, dim, H'W')
        out = out.transpose(2, 3).reshape(batch, self.n_types * h * w, self.dim)  # (batch, n_caps, dim)
        return squash(out, dim=-1)


class DigitCaps(nn.Module):
    """Fully connected capsule layer with dynamic routing (Eqs. 1-3, Procedure 1) or another procedure.

    Each (input capsule i, output capsule j) pair owns a ``out_dim x in_dim`` matrix ``W_ij``
    (Eq. 2, no bias): ``u_hat_{j|i} = W_ij u_i``. The predictions are then routed, by agreement unless
    ``routing`` names another procedure of :data:`capsedu.routings.ROUTINGS`.

    Args:
        n_in: number of input capsules (1152 in the paper).
        in_dim: dimension of the input capsules (8).
        n_out: number of output capsules, one per class (10).
        out_dim: dimension of the output capsules (16).
        iterations: routing iterations r (3); may be changed at any time, or per call.
        routing_gradient: ``"all"`` or ``"last"``, see :func:`capsedu.routing.dynamic_routing`.
        init_std: standard deviation of the normal initialisation of ``W``.
        none_of_the_above: route over one more parent than ``n_out``, a "none-of-the-above"
            category (section 7, CIFAR-10) that input capsules fitting no class can send their
            vote to. As in the authors' code (``_leaky_routing`` in ``research/capsules``), its
            routing logit stays 0: here it is a parent whose predictions ``u_hat`` are all zero,
            so its output ``v`` is 0 and its agreement (line 7 of Procedure 1) never grows. It has
            no weights, no output and no loss term; it only takes a share of each softmax (Eq. 3).
            Dynamic routing only.
        routing: a key of :data:`capsedu.routings.ROUTINGS` (``"dynamic"``, ``"uniform"``,
            ``"self-attention"``, ``"inverted-attention"``, ``"em"``); the module is ``layer.routing``. EM
            routing reads the lengths of the input capsules as their activations. ``routing_gradient``
            other than ``"all"`` applies to dynamic routing only.

    Shape: ``(batch, n_in, in_dim) -> (batch, n_out, out_dim)``; with ``none_of_the_above`` the
    couplings returned by ``return_couplings=True`` are those of the ``n_out`` classes, so a
    child's couplings sum to less than 1 (the rest went to the category).

    Dtypes: the predictions are computed in ``u``'s dtype (``W`` is cast to it, so a float32 layer
    accepts float64 or half inputs) and routed as :func:`capsedu.routing.dynamic_routing` does:
    float64 in, float64 out; float32 in, float32 out; float16/bfloat16 in, float32 out.
    """

    def __init__(
        self,
        n_in: int = 1152,
        in_dim: int = 8,
        n_out: int = 10,
        out_dim: int = 16,
        iterations: int = 3,
        routing_gradient: str = "all",
        init_std: float = 0.01,
        none_of_the_above: bool = False,
        routing: str = "dynamic",
    ):
        super().__init__()
        self.n_in, self.in_dim, self.n_out, self.out_dim = n_in, in_dim, n_out, out_dim
        self.none_of_the_above = bool(none_of_the_above)
        self.iterations = check_iterations(iterations)
        routing_gradient = check_gradient_mode(routing_gradient)
        check_routing(routing, self.none_of_the_above, routing_gradient)
        self.weight = nn.Parameter(torch.randn(n_in, n_out, out_dim, in_dim) * init_std)  # W_ij, (i, j, 16, 8)
        options = {"gradient": routing_gradient} if routing == "dynamic" else {}
        self.routing = build_routing(routing, n_in, n_out + self.none_of_the_above, out_dim, **options)

    @property
    def routing_gradient(self) -> str:
        """``"all"`` or ``"last"``: dynamic routing's gradient mode (``"all"`` for the other procedures)."""
        return getattr(self.routing, "gradient", "all")

    @routing_gradient.setter
    def routing_gradient(self, mode: str) -> None:
        # the routing module holds the mode, so a change reaches the next forward pass
        mode = check_gradient_mode(mode)
        if not hasattr(self.routing, "gradient"):
            if mode != "all":
                raise ValueError(f"routing_gradient={mode!r} applies to dynamic routing only, not to "
                                 f"{type(self.routing).__name__}")
            return
        self.routing.gradient = mode

    def extra_repr(self) -> str:
        return (f"n_in={self.n_in}, in_dim={self.in_dim}, n_out={self.n_out}, out_dim={self.out_dim}, "
                f"iterations={self.iterations}, routing_gradient={self.routing_gradient!r}"
                + (", none_of_the_above=True" if self.none_of_the_above else ""))

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        """Prediction vectors ``u_hat_{j|i} = W_ij u_i`` (Eq. 2), shape ``(batch, n_in, n_out, out_dim)``.

        Only the ``n_out`` class capsules' (a none-of-the-above category predicts nothing).
        """
        return self._predict(u, self.n_out)

    def _predict(self, u: torch.Tensor, n_parents: int) -> torch.Tensor:
        """Eq. 2 for ``n_parents >= n_out`` parents; the parents past ``n_out`` get zero predictions."""
        if not isinstance(u, torch.Tensor):
            raise ValueError(f"u must be a torch.Tensor, got {type(u).__name__}")
        if u.dim() != 3 or u.shape[1] != self.n_in or u.shape[2] != self.in_dim:
            raise ValueError(
                f"DigitCaps expects input capsules u of shape (batch, {self.n_in}, {self.in_dim}), got {tuple(u.shape)}"
            )
        if not u.is_floating_point():
            raise ValueError(f"u must be a floating-point tensor (capsule vectors), got dtype {u.dtype}")
        if u.shape[0] == 0:
            raise ValueError(f"u: empty batch (shape {tuple(u.shape)}); DigitCaps needs at least one example")
        batch = u.shape[0]
        # One (batch x in_dim) @ (in_dim x n_out*out_dim) product per input capsule i.
        w = self.weight.permute(0, 3, 1, 2).reshape(self.n_in, self.in_dim, self.n_out * self.out_dim)
        if n_parents > self.n_out:  # zero columns: the extra parents' predictions come out of the same product
            w = torch.cat([w, w.new_zeros(self.n_in, self.in_dim, (n_parents - self.n_out) * self.out_dim)], dim=2)
        u_hat = torch.bmm(u.transpose(0, 1), w.to(u.dtype))  # (n_in, batch, n_parents * out_dim)
        return u_hat.view(self.n_in, batch, n_parents, self.out_dim).transpose(0, 1)  # (batch, n_in, parents, dim)

    def forward(self, u: torch.Tensor, iterations: Optional[int] = None, return_couplings: bool = False):
        r = self.iterations if iterations is None else iterations
        u_hat = self._predict(u, self.n_out + self.none_of_the_above)  # a none-of-the-above parent's are all zeros
        activations = capsule_length(u) if self.routing.reads_activations else None
        routed = self.routing(u_hat, r, activations, return_couplings=return_couplings)
        if not self.none_of_the_above:
            return routed
        if return_couplings:
            v, c = routed
            return v[:, :self.n_out], c[:, :, :self.n_out]
        return routed[:, :self.n_out]


class Decoder(nn.Module):
    """Reconstruction network (section 4.1): masked digit capsules -> FC 512 -> FC 1024 -> FC 784 sigmoid.

    Only the capsule selected by ``mask`` (the true class in training, the longest capsule at test
    time) is passed on; the others are zeroed.

    Args:
        n_classes: number of digit capsules (10).
        capsule_dim: their dimension (16).
        hidden: widths of the hidden ReLU layers ((512, 1024)).
        out_shape: shape of one reconstructed image ((1, 28, 28)).
    """

    def __init__(self, n_classes: int = 10, capsule_dim: int = 16, hidden: Sequence[int] = (512, 1024),
                 out_shape: Tuple[int, int, int] = (1, 28, 28)):
        super().__init__()
        self.out_shape = tuple(out_shape)
        widths = [n_classes * capsule_dim, *hidden]
        layers = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), nn.ReLU(inplace=True)]
        n_pixels = 1
        for d in self.out_shape:
            n_pixels *= d
        layers += [nn.Linear(widths[-1], n_pixels), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, poses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``poses (batch, n_classes, dim)``, ``mask (batch, n_classes)`` -> images ``(batch, *out_shape)``."""
        masked = (poses * mask.unsqueeze(-1).to(poses.dtype)).flatten(1)  # (batch, n_classes * dim)
        # routing returns float32 poses for a half-precision model: feed the layers their own dtype
        masked = masked.to(self.net[0].weight.dtype)
        return self.net(masked).view(-1, *self.out_shape)
