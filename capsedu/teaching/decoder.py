"""Chapter 6: what the decoder draws from one digit capsule, and from its perturbed dimensions (paper Fig. 4).

* :func:`decode_capsule`: reconstructions from capsule vectors placed in one digit's slot;
* :func:`perturbation_grid`: the paper's Fig. 4 for one capsule, every dimension by every offset;
* :func:`perturbation_effects`, :func:`rank_dimensions`: how much each dimension changes the picture,
  and the dimensions ordered by it (so a figure can show the strongest few large).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch

__all__ = ["PERTURBATION_DELTAS", "decode_capsule", "perturbation_grid", "perturbation_effects",
           "rank_dimensions"]

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


def perturbation_effects(grid: torch.Tensor, deltas: Sequence[float] = PERTURBATION_DELTAS) -> torch.Tensor:
    """How much each row of a :func:`perturbation_grid` changes the picture: ``(rows,)``.

    For row ``r``: the mean absolute pixel difference between each perturbed reconstruction and the
    unperturbed one (the column whose delta is 0), averaged over the other columns. Pixels are in
    ``[0, 1]``, so 0.01 means one percent of full ink per pixel on average.
    """
    grid = torch.as_tensor(grid, dtype=torch.float32)
    deltas = [float(d) for d in deltas]
    if grid.dim() != 4 or grid.shape[1] != len(deltas):
        raise ValueError(f"grid must be (rows, {len(deltas)} deltas, H, W), got {tuple(grid.shape)}")
    if 0.0 not in deltas or len(deltas) < 2:
        raise ValueError(f"deltas must contain 0 (the unperturbed capsule) and another offset, got {deltas}")
    centre = deltas.index(0.0)
    others = [k for k in range(len(deltas)) if k != centre]
    diff = (grid[:, others] - grid[:, centre:centre + 1]).abs()           # (rows, n_deltas - 1, H, W)
    return diff.mean(dim=(1, 2, 3))


def rank_dimensions(grid: torch.Tensor, deltas: Sequence[float] = PERTURBATION_DELTAS,
                    dims: Optional[Sequence[int]] = None) -> Tuple[List[int], torch.Tensor]:
    """The grid's dimensions ordered by :func:`perturbation_effects`, strongest first.

    ``dims`` names the grid's rows (as passed to :func:`perturbation_grid`; default ``0..rows-1``).
    Returns ``(dims in that order, their effects (rows,) in that order)``.
    """
    effects = perturbation_effects(grid, deltas)
    dims = list(range(len(effects))) if dims is None else list(dims)
    if len(dims) != len(effects):
        raise ValueError(f"{len(dims)} dimension names for {len(effects)} rows")
    order = torch.argsort(effects, descending=True, stable=True)
    return [dims[int(k)] for k in order], effects[order]

