"""Reference ("straightforward PyTorch") formulations that the benchmarks compare capsedu against.

They compute the same equations as :mod:`capsedu` (Sabour et al., 2017, Eqs. 1-4 and Procedure 1)
with per-example routing logits, written the way most reimplementations write them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import _common  # noqa: F401  (puts the repository root on sys.path)
from capsedu.functional import capsule_length, squash


def broadcast_routing(u_hat: torch.Tensor, iterations: int) -> torch.Tensor:
    """Procedure 1 with broadcast multiplies: b is ``(batch, n_in, n_out)``, u_hat ``(batch, n_in, n_out, d)``."""
    b = torch.zeros(u_hat.shape[:3], dtype=u_hat.dtype, device=u_hat.device)
    for r in range(iterations):
        c = F.softmax(b, dim=2)                       # Eq. 3
        s = (c.unsqueeze(-1) * u_hat).sum(1)          # Eq. 2, (batch, n_out, d)
        v = squash(s)                                 # Eq. 1
        if r < iterations - 1:
            b = b + (u_hat * v.unsqueeze(1)).sum(-1)  # agreement
    return v


def einsum_routing(u_hat: torch.Tensor, iterations: int) -> torch.Tensor:
    """Procedure 1 with ``torch.einsum`` contractions (the formulation of the fastest public
    reimplementation we know of, 15 s/epoch on a V100): b is ``(batch, n_in, n_out)``."""
    b = torch.zeros(u_hat.shape[:3], dtype=u_hat.dtype, device=u_hat.device)
    for r in range(iterations):
        c = F.softmax(b, dim=2)                                  # Eq. 3
        v = squash(torch.einsum("bij,bijd->bjd", c, u_hat))     # Eqs. 2 and 1
        if r < iterations - 1:
            b = b + torch.einsum("bijd,bjd->bij", u_hat, v)      # agreement
    return v


def literal_routing(u_hat: torch.Tensor, iterations: int) -> torch.Tensor:
    """Procedure 1 as written: loops over examples, input capsules i and output capsules j.

    Differentiable (autograd records every small op), and very slow: use small shapes only.
    """
    batch, n_in, n_out, _ = u_hat.shape
    outputs = []
    for n in range(batch):
        b = [[u_hat.new_zeros(()) for _ in range(n_out)] for _ in range(n_in)]
        for r in range(iterations):
            c = [torch.softmax(torch.stack(b[i]), 0) for i in range(n_in)]       # Eq. 3
            v = []
            for j in range(n_out):
                s = sum(c[i][j] * u_hat[n, i, j] for i in range(n_in))           # Eq. 2
                v.append(squash(s, dim=0))                                      # Eq. 1
            if r < iterations - 1:
                for i in range(n_in):
                    for j in range(n_out):
                        b[i][j] = b[i][j] + torch.dot(u_hat[n, i, j], v[j])     # line 7
        outputs.append(torch.stack(v))
    return torch.stack(outputs)


class NaiveCapsNet(nn.Module):
    """The paper's CapsNet written the common way: ``W`` of shape ``(1, 1152, 10, 16, 8)`` applied to
    ``u`` by a broadcast matmul, broadcast-multiply routing, the same decoder and loss.

    Same parameters (8,215,568) and same function as ``capsedu.CapsNet("paper")``; use
    :meth:`load_from_capsedu` to copy weights and compare outputs.
    """

    def __init__(self, conv_channels: int = 256, primary_types: int = 32, iterations: int = 3,
                 reconstruction: bool = True):
        super().__init__()
        self.primary_types, self.iterations = primary_types, iterations
        self.conv1 = nn.Conv2d(1, conv_channels, 9)
        self.primary = nn.Conv2d(conv_channels, primary_types * 8, 9, stride=2)
        n_in = primary_types * 36
        self.W = nn.Parameter(0.01 * torch.randn(1, n_in, 10, 16, 8))
        self.decoder = (nn.Sequential(nn.Linear(160, 512), nn.ReLU(inplace=True), nn.Linear(512, 1024),
                                      nn.ReLU(inplace=True), nn.Linear(1024, 784), nn.Sigmoid())
                        if reconstruction else None)

    @torch.no_grad()
    def load_from_capsedu(self, model) -> "NaiveCapsNet":
        self.conv1.load_state_dict(model.conv1.state_dict())
        self.primary.load_state_dict(model.primary.conv.state_dict())
        self.W.copy_(model.digits.weight.unsqueeze(0))
        if self.decoder is not None:
            self.decoder.load_state_dict(model.decoder.net.state_dict())
        return self

    def forward(self, x: torch.Tensor, labels=None):
        h = F.relu(self.conv1(x))
        p = self.primary(h)                                              # (B, 256, 6, 6)
        batch = p.shape[0]
        p = p.view(batch, self.primary_types, 8, -1).transpose(2, 3).reshape(batch, -1, 8)
        u = squash(p)                                                    # (B, 1152, 8)
        u_hat = (self.W @ u[:, :, None, :, None]).squeeze(-1)            # Eq. 2, (B, 1152, 10, 16)
        v = broadcast_routing(u_hat, self.iterations)                    # (B, 10, 16)
        lengths = capsule_length(v)
        recon = None
        if self.decoder is not None:
            chosen = labels if labels is not None else lengths.argmax(1)
            mask = F.one_hot(chosen, 10).to(v.dtype)
            recon = self.decoder((v * mask.unsqueeze(-1)).flatten(1)).view(-1, 1, 28, 28)
        return lengths, v, recon


def naive_loss(lengths, recon, images, labels):
    """Margin loss (Eq. 4) + 0.0005 * sum-squared reconstruction error, as in capsedu."""
    t = F.one_hot(labels, 10).to(lengths.dtype)
    margin = (t * F.relu(0.9 - lengths) ** 2 + 0.5 * (1 - t) * F.relu(lengths - 0.1) ** 2).sum(1).mean()
    if recon is None:
        return margin
    return margin + 0.0005 * ((recon - images) ** 2).flatten(1).sum(1).mean()
