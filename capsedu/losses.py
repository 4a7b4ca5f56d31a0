"""Losses of the paper: the margin loss (eq. 5) and the reconstruction regulariser (section 4.1)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["margin_loss", "reconstruction_loss", "capsule_loss", "labels_to_targets", "check_class_indices",
           "RECONSTRUCTION_WEIGHT"]

#: Scale of the summed squared reconstruction error in the total loss (section 4.1), chosen so
#: that the decoder does not dominate the margin loss during training.
RECONSTRUCTION_WEIGHT = 0.0005


def _compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


def check_class_indices(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Check that integer ``labels`` lie in ``[0, n_classes)``; return them unchanged.

    On the CPU the check is immediate and the error names the offending range. On an
    accelerator, or inside a ``torch.compile`` graph, reading the range back would make the host
    wait for the device at every training step, so the check is queued on the device instead
    (``torch._assert_async``): a bad label still stops the run, a moment later.
    """
    if labels.is_floating_point():
        raise ValueError(f"class-index labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.numel() == 0:
        return labels
    if labels.device.type == "cpu" and not _compiling():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"labels must lie in [0, {n_classes - 1}], got values in [{lo}, {hi}]")
    else:
        torch._assert_async(((labels >= 0) & (labels < n_classes)).all(),
                            f"labels must lie in [0, {n_classes - 1}]")
    return labels


def labels_to_targets(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Turn class indices ``(batch,)`` or multi-hot targets ``(batch, n_classes)`` into float targets T_k."""
    if labels.dim() == 1:
        return F.one_hot(check_class_indices(labels, n_classes), n_classes).float()
    if labels.dim() == 2:
        if labels.shape[1] != n_classes:
            raise ValueError(f"multi-hot labels must have {n_classes} columns, got shape {tuple(labels.shape)}")
        return labels.float()
    raise ValueError(f"labels must be (batch,) class indices or (batch, n_classes) multi-hot, got shape {tuple(labels.shape)}")


def margin_loss(
    lengths: torch.Tensor,
    labels: torch.Tensor,
    m_pos: float = 0.9,
    m_neg: float = 0.1,
    lam: float = 0.5,
) -> torch.Tensor:
    r"""Margin loss (eq. 5), summed over classes and averaged over the batch.

    .. math:: L_k = T_k \max(0, m^+ - \|v_k\|)^2 + \lambda (1 - T_k) \max(0, \|v_k\| - m^-)^2

    Args:
        lengths: capsule lengths ``||v_k||``, shape ``(batch, n_classes)``.
        labels: class indices ``(batch,)`` or multi-hot ``(batch, n_classes)`` (several digits present).
        m_pos: a present class costs nothing once its length reaches ``m_pos`` (0.9).
        m_neg: an absent class costs nothing once its length is below ``m_neg`` (0.1).
        lam: down-weights absent classes (0.5) so early training does not shrink every capsule.
    """
    if lengths.dim() != 2:
        raise ValueError(f"lengths must have shape (batch, n_classes), got {tuple(lengths.shape)}")
    if labels.shape[0] != lengths.shape[0]:
        raise ValueError(f"labels have batch size {labels.shape[0]} but lengths have {lengths.shape[0]}")
    targets = labels_to_targets(labels, lengths.shape[1])
    present = targets * F.relu(m_pos - lengths) ** 2
    absent = lam * (1.0 - targets) * F.relu(lengths - m_neg) ** 2
    return (present + absent).sum(dim=1).mean()


def reconstruction_loss(reconstructions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Sum of squared pixel differences per image, averaged over the batch (unweighted)."""
    if reconstructions.shape[0] != images.shape[0] or reconstructions[0].numel() != images[0].numel():
        raise ValueError(
            f"reconstructions {tuple(reconstructions.shape)} do not match images {tuple(images.shape)}"
        )
    diff = reconstructions.float().flatten(1) - images.float().flatten(1)
    return (diff * diff).sum(dim=1).mean()


def capsule_loss(
    output,
    images: torch.Tensor,
    labels: torch.Tensor,
    m_pos: float = 0.9,
    m_neg: float = 0.1,
    lam: float = 0.5,
    reconstruction_weight: float = RECONSTRUCTION_WEIGHT,
) -> torch.Tensor:
    """Total training loss: margin loss + 0.0005 x summed squared reconstruction error.

    ``output`` is a :class:`capsedu.models.CapsNetOutput`; when it has no reconstructions
    (model built without decoder) only the margin loss is returned.
    """
    loss = margin_loss(output.lengths, labels, m_pos, m_neg, lam)
    reconstructions: Optional[torch.Tensor] = output.reconstructions
    if reconstructions is not None and reconstruction_weight:
        loss = loss + reconstruction_weight * reconstruction_loss(reconstructions, images)
    return loss
