"""Losses of the paper as pure functions: the margin loss (Eq. 4) and the reconstruction regulariser
(section 4.1). The training objectives (:mod:`capsedu.objectives`) are thin wrappers over these."""
from __future__ import annotations

from typing import Any, Dict

import torch
import torch.nn.functional as F

from .checks import check_number

__all__ = ["margin_loss", "reconstruction_loss", "capsule_loss", "capsule_loss_terms", "labels_to_targets",
           "check_class_indices", "check_multi_hot", "check_margins", "RECONSTRUCTION_WEIGHT"]

#: Scale of the summed squared reconstruction error in the total loss (section 4.1), chosen so
#: that the decoder does not dominate the margin loss during training.
RECONSTRUCTION_WEIGHT = 0.0005


def _compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling and is_compiling())


def _on_host_now(t: torch.Tensor) -> bool:
    """Whether a value check on ``t`` can be read back at once: on the CPU, outside ``torch.compile``."""
    return t.device.type == "cpu" and not _compiling()


def check_class_indices(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Check that integer ``labels`` lie in ``[0, n_classes)``; return them unchanged.

    On the CPU the check is immediate and the error names the offending range. On an
    accelerator, or inside a ``torch.compile`` graph, reading the range back would make the host
    wait for the device at every training step, so the check is queued on the device instead
    (``torch._assert_async``): a bad label still stops the run, a moment later.
    """
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"class-index labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.numel() == 0:
        return labels
    if _on_host_now(labels):
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"labels must lie in [0, {n_classes - 1}], got values in [{lo}, {hi}]")
    else:
        torch._assert_async(((labels >= 0) & (labels < n_classes)).all(),
                            f"labels must lie in [0, {n_classes - 1}]")
    return labels


def check_multi_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Check that multi-hot ``labels (batch, n_classes)`` hold only 0 and 1; return them unchanged.

    Any other value would make a term of Eq. 4 negative (``T_k = 2`` gives ``1 - T_k = -1``).
    Checked like :func:`check_class_indices`: at once on the CPU, queued on the device elsewhere.
    """
    if labels.shape[1] != n_classes:
        raise ValueError(f"multi-hot labels must have {n_classes} columns, got shape {tuple(labels.shape)}")
    if labels.is_complex():
        raise ValueError(f"multi-hot labels must be real 0/1 values, got dtype {labels.dtype}")
    if labels.numel() == 0 or labels.dtype == torch.bool:
        return labels
    binary = ((labels == 0) | (labels == 1)).all()
    if _on_host_now(labels):
        if not bool(binary):
            bad = labels[(labels != 0) & (labels != 1)]
            raise ValueError(f"multi-hot labels must contain only 0 and 1 (T_k of Eq. 4), got {bad[0].item()!r}")
    else:
        torch._assert_async(binary, "multi-hot labels must contain only 0 and 1")
    return labels


def labels_to_targets(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Turn class indices ``(batch,)`` or multi-hot 0/1 targets ``(batch, n_classes)`` into float targets T_k."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() == 1:
        return F.one_hot(check_class_indices(labels, n_classes).long(), n_classes).float()  # any integer dtype
    if labels.dim() == 2:
        return check_multi_hot(labels, n_classes).float()
    raise ValueError(f"labels must be (batch,) class indices or (batch, n_classes) multi-hot, got shape {tuple(labels.shape)}")


def check_margins(m_pos: float, m_neg: float, lam: float) -> None:
    """Check Eq. 4's constants: finite margins and a down-weighting ``lam >= 0`` (a negative one would
    reward long absent capsules)."""
    check_number(m_pos, "m_pos")
    check_number(m_neg, "m_neg")
    check_number(lam, "lam", low=0.0)


def margin_loss(
    lengths: torch.Tensor,
    labels: torch.Tensor,
    m_pos: float = 0.9,
    m_neg: float = 0.1,
    lam: float = 0.5,
) -> torch.Tensor:
    r"""Margin loss (Eq. 4), summed over classes and averaged over the batch.

    .. math:: L_k = T_k \max(0, m^+ - \|v_k\|)^2 + \lambda (1 - T_k) \max(0, \|v_k\| - m^-)^2

    Args:
        lengths: capsule lengths ``||v_k||``, floating point, shape ``(batch, n_classes)``, batch >= 1.
        labels: class indices ``(batch,)`` (integers in ``[0, n_classes)``) or multi-hot
            ``(batch, n_classes)`` holding only 0 and 1 (several digits present), any dtype.
        m_pos: a present class costs nothing once its length reaches ``m_pos`` (0.9).
        m_neg: an absent class costs nothing once its length is below ``m_neg`` (0.1).
        lam: down-weights absent classes (0.5) so early training does not shrink every capsule.

    Returns:
        A scalar in ``lengths``' dtype (float32 for float16/bfloat16 lengths).

    Raises:
        ValueError: naming ``lengths`` or ``labels`` when a shape, dtype or value is wrong, and for
            an empty batch (the mean over 0 examples is undefined); naming a constant that is not a
            finite number, or a negative ``lam``.
    """
    check_margins(m_pos, m_neg, lam)
    if not isinstance(lengths, torch.Tensor) or not lengths.is_floating_point():
        what = lengths.dtype if isinstance(lengths, torch.Tensor) else type(lengths).__name__
        raise ValueError(f"lengths must be a floating-point tensor of capsule lengths, got {what}")
    if lengths.dim() != 2:
        raise ValueError(f"lengths must have shape (batch, n_classes), got {tuple(lengths.shape)}")
    if lengths.shape[0] == 0:
        raise ValueError(f"lengths: empty batch (shape {tuple(lengths.shape)}); "
                         "the loss averages over at least one example")
    if not isinstance(labels, torch.Tensor) or labels.dim() == 0:
        raise ValueError(f"labels must be (batch,) class indices or (batch, n_classes) multi-hot, got {labels!r}")
    if labels.shape[0] != lengths.shape[0]:
        raise ValueError(f"labels have batch size {labels.shape[0]} but lengths have {lengths.shape[0]}")
    if lengths.dtype in (torch.float16, torch.bfloat16):
        lengths = lengths.float()  # (0.9 - ||v||)^2 in half precision loses the small margins
    targets = labels_to_targets(labels, lengths.shape[1]).to(lengths.dtype)
    present = targets * F.relu(m_pos - lengths) ** 2
    absent = lam * (1.0 - targets) * F.relu(lengths - m_neg) ** 2
    return (present + absent).sum(dim=1).mean()


def _check_images(images: Any) -> None:
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        what = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a floating-point tensor scaled to [0, 1] (e.g. images.float() / 255), "
                         f"got {what}")


def reconstruction_loss(reconstructions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Sum of squared pixel differences per image, averaged over the batch (unweighted; section 4.1).

    Raises:
        ValueError: ``images`` are not floating point (uint8 pixels in 0..255 would swamp the sigmoid
            outputs), the two do not match, or the batch is empty.
    """
    _check_images(images)
    _check_images(reconstructions)
    if reconstructions.dim() == 0 or images.dim() == 0 or reconstructions.shape[0] != images.shape[0] \
            or reconstructions[0:1].numel() != images[0:1].numel():
        raise ValueError(f"reconstructions {tuple(reconstructions.shape)} do not match images {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"images: empty batch (shape {tuple(images.shape)}); the loss averages over at least one "
                         f"image")
    diff = reconstructions.float().flatten(1) - images.float().flatten(1)
    return (diff * diff).sum(dim=1).mean()


def capsule_loss_terms(output: Any, images: torch.Tensor, labels: torch.Tensor, m_pos: float = 0.9,
                       m_neg: float = 0.1, lam: float = 0.5,
                       reconstruction_weight: float = RECONSTRUCTION_WEIGHT) -> Dict[str, torch.Tensor]:
    """The named terms of :func:`capsule_loss`: ``"margin"`` (Eq. 4) and, when the output has
    reconstructions, the weight is not 0 and ``labels`` are class indices, ``"reconstruction"``
    (``reconstruction_weight`` x the summed squared error). Multi-hot labels get no reconstruction
    term: the decoder then reads the longest capsule, not a known digit."""
    check_number(reconstruction_weight, "reconstruction_weight", low=0.0)
    terms = {"margin": margin_loss(output.lengths, labels, m_pos, m_neg, lam)}
    reconstructions = output.reconstructions
    if reconstruction_weight and reconstructions is not None and labels.dim() == 1:
        terms["reconstruction"] = reconstruction_weight * reconstruction_loss(reconstructions, images)
    return terms


def capsule_loss(
    output: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    m_pos: float = 0.9,
    m_neg: float = 0.1,
    lam: float = 0.5,
    reconstruction_weight: float = RECONSTRUCTION_WEIGHT,
) -> torch.Tensor:
    """Total training loss: margin loss (Eq. 4) + 0.0005 x summed squared reconstruction error.

    Args:
        output: a :class:`capsedu.models.CapsNetOutput`; when it has no reconstructions (model
            built without decoder) only the margin loss is returned.
        images: the input images, floating point scaled to [0, 1] like the sigmoid reconstructions.
        labels, m_pos, m_neg, lam: as in :func:`margin_loss`.
        reconstruction_weight: scale of the reconstruction error (0.0005, section 4.1), >= 0.

    Returns:
        A scalar, float64 if the lengths are float64, else float32 (the sum of
        :func:`capsule_loss_terms`).

    Raises:
        ValueError: ``images`` are not floating point (e.g. uint8 pixels in 0..255), a negative or
            non-finite ``reconstruction_weight``, or as :func:`margin_loss` does.
    """
    _check_images(images)
    return sum(capsule_loss_terms(output, images, labels, m_pos, m_neg, lam, reconstruction_weight).values())
