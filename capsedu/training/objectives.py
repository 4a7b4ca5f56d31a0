"""Training objectives: what a step minimises, how the model is called, and how a batch is scored.

An objective is called as ``objective(model, images, targets)`` and returns a :class:`StepResult`.
The training loop (:mod:`capsedu.training.loop`) knows nothing else about losses, so the same loop trains

* a CapsNet with the margin loss (Eq. 4), with or without the reconstruction term
  (:class:`MarginLoss`, section 4.1's weight 0.0005 by default);
* a CapsNet on several digits at once (multi-hot targets, as for overlapping digits: the margin
  loss is summed over every present class and a prediction counts as right when the ``k``
  longest capsules are exactly the ``k`` present classes);
* two overlapping digits, each reconstructed from its own capsule (:class:`PairMarginLoss`,
  MultiMNIST, section 6), and the same pairs for a logits model such as the baseline CNN
  (:class:`PairCrossEntropy`: sigmoid cross-entropy on every class);
* the baseline CNN, or a CapsNet whose scaled lengths are read as logits, with cross-entropy
  (:class:`CrossEntropy`).

Targets are class indices ``(batch,)`` (int64) or multi-hot ``(batch, n_classes)`` (float).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_number
from ..losses import RECONSTRUCTION_WEIGHT, capsule_loss_terms, check_margins, margin_loss, reconstruction_loss
from ..models import CapsNet, CapsNetOutput
from .distributed import unwrap

__all__ = ["StepResult", "Objective", "MarginLoss", "CrossEntropy", "PairMarginLoss", "PairCrossEntropy", "OBJECTIVES",
           "PAIR_OBJECTIVES", "make_objective", "default_objective", "scores", "count_correct"]


class StepResult(NamedTuple):
    """What an objective returns for one batch."""

    loss: torch.Tensor                 # 0-dim, what backward() is called on
    correct: torch.Tensor              # 0-dim int64: examples predicted right
    output: Any                        # the model's output (CapsNetOutput or logits)
    parts: Dict[str, torch.Tensor]     # named loss terms, detached (e.g. margin, reconstruction)


def scores(output: Any) -> torch.Tensor:
    """Class scores ``(batch, n_classes)``: capsule lengths for a CapsNet, the logits otherwise."""
    return output.lengths if isinstance(output, CapsNetOutput) else output


def count_correct(class_scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Examples whose prediction is right, as a 0-dim int64 tensor (no host sync).

    Class indices: the top score is the label. Multi-hot targets with ``k`` ones in a row: the
    ``k`` top scores are exactly those classes (the paper's MultiMNIST rule, section 6).
    """
    if targets.dim() == 1:
        return (class_scores.argmax(dim=1) == targets).sum()
    present = targets > 0.5                                           # (batch, n_classes)
    k = present.sum(dim=1, keepdim=True)                              # (batch, 1)
    rank = class_scores.argsort(dim=1, descending=True).argsort(dim=1)  # rank of every class
    return ((rank < k) == present).all(dim=1).sum()


class Objective:
    """Base class: ``objective(model, images, targets) -> StepResult``.

    :meth:`forward` calls the model the way the paper does: a CapsNet in training mode gets the
    class labels, so its decoder reconstructs the true class (section 4.1's masking); in eval mode
    (and for multi-hot targets) it gets only the images and reconstructs its longest capsule.
    """

    name = "objective"

    def forward(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> Any:
        # a DistributedDataParallel wrapper passes the labels on to the CapsNet inside
        if model.training and targets.dim() == 1 and isinstance(unwrap(model), CapsNet):
            return model(images, targets)
        return model(images)

    def loss(self, output: Any, images: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Named loss terms; their sum is minimised."""
        raise NotImplementedError

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> StepResult:
        output = self.forward(model, images, targets)
        terms = self.loss(output, images, targets)
        total = sum(terms.values())
        return StepResult(total, count_correct(scores(output).detach(), targets), output,
                          {k: v.detach() for k, v in terms.items()})

    def settings(self) -> Dict[str, Any]:
        """The objective's name and constants, for run records."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items() if k != "name")
        return f"{type(self).__name__}({args})"


class MarginLoss(Objective):
    """Margin loss (Eq. 4) plus ``reconstruction_weight`` x summed squared reconstruction error: the
    training objective over :func:`capsedu.losses.capsule_loss_terms`.

    Args:
        reconstruction_weight: scale of the decoder's error (0.0005 in section 4.1; 0 for none). The
            term is added only when the model has a decoder and the targets are class indices.
        m_pos, m_neg, lam: the margin loss's constants (0.9, 0.1, 0.5).
    """

    name = "margin"

    def __init__(self, reconstruction_weight: float = RECONSTRUCTION_WEIGHT, m_pos: float = 0.9,
                 m_neg: float = 0.1, lam: float = 0.5):
        self.reconstruction_weight = check_number(reconstruction_weight, "reconstruction_weight", low=0.0)
        check_margins(m_pos, m_neg, lam)
        self.m_pos, self.m_neg, self.lam = m_pos, m_neg, lam

    def loss(self, output: Any, images: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        if not isinstance(output, CapsNetOutput):
            raise ValueError("the margin loss needs capsule lengths, but the model returned "
                             f"{type(output).__name__}; train a logits model with cross-entropy")
        return capsule_loss_terms(output, images, targets, self.m_pos, self.m_neg, self.lam, self.reconstruction_weight)

    def settings(self) -> Dict[str, Any]:
        return {"name": self.name, "reconstruction_weight": self.reconstruction_weight,
                "m_pos": self.m_pos, "m_neg": self.m_neg, "lam": self.lam}


class CrossEntropy(Objective):
    """Softmax cross-entropy on ``scale`` x the class scores (class-index targets only).

    For the baseline CNN the scores are logits (``scale=1``). For a CapsNet they are the capsule
    lengths, which lie in [0, 1): a scale such as 10 lets the softmax become confident (chapter 5
    compares this with the margin loss).
    """

    name = "cross-entropy"

    def __init__(self, scale: float = 1.0):
        self.scale = check_number(scale, "scale", low=0.0, low_open=True)

    def loss(self, output: Any, images: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        if targets.dim() != 1:
            raise ValueError("cross-entropy needs class-index targets (batch,); use the margin loss for multi-hot "
                             f"targets, got shape {tuple(targets.shape)}")
        s = scores(output)
        return {"cross_entropy": F.cross_entropy(self.scale * s if self.scale != 1.0 else s, targets)}

    def settings(self) -> Dict[str, Any]:
        return {"name": self.name, "scale": self.scale}


class _PairObjective(Objective):
    """Base of the objectives for pair batches (MultiMNIST): checks them and shows the model the overlay only."""

    @staticmethod
    def _check(images: Any, targets: torch.Tensor) -> None:
        from ..data import Pairs  # data imports torchvision; keep `import capsedu.objectives` light

        if not isinstance(images, Pairs):
            raise ValueError("pair batches hold capsedu.data.Pairs: the overlay and each digit alone, got "
                             f"{type(images).__name__}")
        if targets.dim() != 2 or targets.shape[1] != 2 or targets.is_floating_point():
            raise ValueError(f"pair batches need targets (batch, 2) of class indices, got {tuple(targets.shape)} "
                             f"{targets.dtype}")

    def forward(self, model: nn.Module, images: Any, targets: torch.Tensor) -> Any:
        self._check(images, targets)
        return model(images.overlay)  # PairMarginLoss drives the decoder per digit itself

    @staticmethod
    def _both(targets: torch.Tensor, n_classes: int, dtype: torch.dtype) -> torch.Tensor:
        """Multi-hot ``(batch, n_classes)`` with ones at the two classes of each pair."""
        return F.one_hot(targets, n_classes).sum(dim=1).clamp(max=1).to(dtype)


class PairMarginLoss(_PairObjective):
    """Two overlapping digits (MultiMNIST, section 6): the margin loss on both classes, and each digit
    reconstructed from its own capsule.

    Batches are ``(Pairs, targets)``: the overlay and each digit alone (:class:`capsedu.data.Pairs`), and
    the two classes as ``targets (batch, 2)`` int64. The model sees only the overlay. The loss is the margin loss
    (Eq. 4) with both classes present plus ``reconstruction_weight`` x (the summed squared error of
    the first digit decoded from its capsule + the same for the second). A prediction is right when
    the two longest capsules are the two classes (the paper's evaluation).
    """

    name = "pair-margin"

    def __init__(self, reconstruction_weight: float = RECONSTRUCTION_WEIGHT, m_pos: float = 0.9,
                 m_neg: float = 0.1, lam: float = 0.5):
        self.margin = MarginLoss(reconstruction_weight, m_pos, m_neg, lam)

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> StepResult:
        output = self.forward(model, images, targets)
        if not isinstance(output, CapsNetOutput):
            raise ValueError("the pair margin loss needs capsule lengths, but the model returned "
                             f"{type(output).__name__}; train a logits model on pairs with pair-bce")
        both = self._both(targets, output.lengths.shape[1], output.lengths.dtype)  # (batch, n_classes)
        terms = {"margin": margin_loss(output.lengths, both, self.margin.m_pos, self.margin.m_neg, self.margin.lam)}
        inner = unwrap(model)
        weight = self.margin.reconstruction_weight
        if weight and getattr(inner, "decoder", None) is not None:
            error = sum(reconstruction_loss(inner.reconstruct(output.poses, targets[:, k]), digit)
                        for k, digit in enumerate((images.first, images.second)))
            terms["reconstruction"] = weight * error
        total = sum(terms.values())
        return StepResult(total, count_correct(output.lengths.detach(), both), output,
                          {k: v.detach() for k, v in terms.items()})

    def settings(self) -> Dict[str, Any]:
        return {**self.margin.settings(), "name": self.name}


class PairCrossEntropy(_PairObjective):
    """Two overlapping digits for a logits model, e.g. the baseline CNN on MultiMNIST (section 6).

    Same batches as :class:`PairMarginLoss` (the model sees only the overlay). Each class gets its own
    sigmoid readout: the loss is the binary cross-entropy of every class's logit against 1 for the two
    present classes and 0 for the others, summed over the classes (as Eq. 4 sums over the digit
    capsules) and averaged over the batch. A prediction is right when the two largest logits are the two
    classes, the rule the paper applies to the two longest capsules. The paper does not give its
    MultiMNIST baseline's loss; independent sigmoids are the usual multi-label choice (a softmax would
    make the two classes compete for one unit of probability).
    """

    name = "pair-bce"

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> StepResult:
        output = self.forward(model, images, targets)
        if isinstance(output, CapsNetOutput):
            raise ValueError("pair-bce reads logits, but the model returned capsules; train a CapsNet on pairs "
                             "with pair-margin")
        both = self._both(targets, output.shape[1], torch.float32)  # (batch, n_classes)
        loss = F.binary_cross_entropy_with_logits(output.float(), both, reduction="none").sum(dim=1).mean()
        return StepResult(loss, count_correct(output.detach(), both), output, {"bce": loss.detach()})


#: Objectives by name, as ``TrainConfig.loss`` and ``capsedu train --loss`` spell them.
OBJECTIVES: Dict[str, Callable[..., Objective]] = {"margin": MarginLoss, "cross-entropy": CrossEntropy,
                                                   "pair-margin": PairMarginLoss, "pair-bce": PairCrossEntropy}

#: The objectives that train on pair batches (MultiMNIST), by the model kind they need.
PAIR_OBJECTIVES: Dict[str, str] = {"pair-margin": "capsnet", "pair-bce": "baseline"}


def make_objective(name: str, **settings: Any) -> Objective:
    """Build a registered objective: ``make_objective("margin", reconstruction_weight=0)``."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](**settings)


def default_objective(model: nn.Module, reconstruction_weight: Optional[float] = None) -> Objective:
    """The paper's objective for ``model``: margin (+ reconstruction) for a CapsNet, cross-entropy otherwise."""
    if isinstance(unwrap(model), CapsNet):
        weight = RECONSTRUCTION_WEIGHT if reconstruction_weight is None else reconstruction_weight
        return MarginLoss(reconstruction_weight=weight)
    return CrossEntropy()
