"""Chapter 6: what the decoder draws from one digit capsule, and from its perturbed dimensions (paper Fig. 4)."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

__all__ = ["PERTURBATION_DELTAS", "decode_capsule", "perturbation_grid"]

#: The paper's offsets: steps of 0.05 in [-0.25, 0.25] (Fig. 4).
PERTURBATION_DELTAS = tuple(round(-0.25 + 0.05 * k, 2) for k in range(11))


@torch.no_grad()
def decode_capsule(model: torch.nn.Module, poses: Union[torch.Tensor, Sequence[Sequence[float]]], digit: int
                   ) -> torch.Tensor:
    """Reconstructions ``(n, H, W)`` from capsule vectors ``poses (n, digit_dim)`` placed in ``digit``'s slot.

    Every other digit capsule is zero, as the decoder's mask makes it in training and at test time.
    ``model`` is a :class:`capsedu.models.CapsNet` with a decoder.
    """
    poses = torch.as_tensor(poses, dtype=torch.float32)
    poses = poses.reshape(-1, poses.shape[-1])                                   # (n, digit_dim)
    caps = torch.zeros(poses.shape[0], model.config.n_classes, poses.shape[-1])   # (n, n_classes, digit_dim)
    caps[:, digit] = poses
    classes = torch.full((poses.shape[0],), int(digit), dtype=torch.long)
    images = model.reconstruct(caps, classes)                                    # (n, 1, H, W)
    return images.reshape(poses.shape[0], *images.shape[-2:])


@torch.no_grad()
def perturbation_grid(model: torch.nn.Module, pose: Union[torch.Tensor, Sequence[float]], digit: int,
                      deltas: Sequence[float] = PERTURBATION_DELTAS, dims: Optional[Sequence[int]] = None
                      ) -> torch.Tensor:
    """Reconstructions after adding each of ``deltas`` to one dimension of a digit capsule (paper Fig. 4).

    ``pose`` is the vector of digit capsule ``digit``; ``dims`` the dimensions to perturb (default all).
    Returns ``(len(dims), len(deltas), H, W)``: row ``r`` perturbs ``dims[r]``, column ``k`` by ``deltas[k]``.
    """
    pose = torch.as_tensor(pose, dtype=torch.float32).reshape(-1)
    dims = list(range(pose.numel())) if dims is None else list(dims)
    deltas = torch.as_tensor(deltas, dtype=torch.float32)
    tweaked = pose.repeat(len(dims), len(deltas), 1)                      # (dims, deltas, digit_dim)
    for r, d in enumerate(dims):
        tweaked[r, :, d] += deltas
    images = decode_capsule(model, tweaked.reshape(-1, pose.numel()), digit)
    return images.reshape(len(dims), len(deltas), *images.shape[-2:])
