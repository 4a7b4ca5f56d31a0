"""Slides 42-43 (paper Fig. 5): how a CapsNet trained on MultiMNIST takes two overlapping digits apart.

The figure's columns show an input (two digits of different classes, overlaid) above the two digits the
decoder draws from two digit capsules, one in red and one in green. Captions, as in the paper:

* ``L:(a, b)``: the labels, the two classes in the image.
* ``R:(a, b)``: the two classes whose capsules were decoded. For a pair the network got right (its two
  longest capsules are the two labels) these are the labels; each digit comes from its own capsule.
* ``R:P:(a, b)``: a pair the network got wrong, decoded from its prediction (the two longest capsules);
  the paper shows it beside the same pair decoded from its labels.
* ``*R:(a, b)``: decoded from one label and a class that is neither a label nor predicted. The paper's
  point (section 6): the decoder does *not* simply draw whatever it is asked for; the capsule of a
  class that is not there is short and its pose does not describe a digit in the image, so the forced
  reconstruction is faint or unlike the image ("in case of (5, 0) it cannot reconstruct a 7 because it
  knows that there is a 5 and 0 that fit best and account for all the pixels").

Computing (no drawing): :func:`read_pairs` runs the model on a batch of test pairs and decodes the labels'
capsules, the predicted capsules and the forced ones; :func:`figure_columns` picks the figure's columns.
Drawing: :func:`draw_pairs`, a matplotlib figure of those columns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch

from ..checks import check_int
from ..data.multimnist import MultiMNIST, Pairs

__all__ = ["PairReading", "PairColumn", "read_pairs", "figure_columns", "pair_colour_image", "draw_pairs",
           "PAIR_COLORS"]

PairBatch = Tuple[Pairs, torch.Tensor]

#: The colours of the two reconstructions (RGB channels): the first class red, the second green (Fig. 5).
PAIR_COLORS = ("red", "green")


@dataclass
class PairReading:
    """What a pair model makes of ``N`` MultiMNIST pairs (:func:`read_pairs`).

    Attributes:
        overlay: ``(N, H, W)`` the input the model saw.
        labels: ``int64 (N, 2)`` the two classes present, ``L:(a, b)``.
        predicted: ``int64 (N, 2)`` the two longest capsules, ordered to line up with ``labels`` (a
            predicted class that is a label sits in that label's place).
        correct: ``bool (N,)`` the paper's rule: ``predicted`` and ``labels`` are the same two classes.
        lengths: ``(N, n_classes)`` capsule lengths (class presence).
        from_labels: ``(N, 2, H, W)`` each label's digit decoded from its own capsule.
        from_prediction: ``(N, 2, H, W)`` each predicted class decoded from its own capsule (equal to
            ``from_labels`` where ``correct``).
        absent: ``int64 (N,)`` a class that is neither a label nor predicted, for the forced decoding.
        from_absent: ``(N, 2, H, W)`` the first label's digit and the ``absent`` class's, each decoded
            from its own capsule (the paper's ``*R`` columns).
    """

    overlay: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor
    correct: torch.Tensor
    lengths: torch.Tensor
    from_labels: torch.Tensor
    from_prediction: torch.Tensor
    absent: torch.Tensor
    from_absent: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def error(self) -> float:
        """Fraction of the pairs the model got wrong (the paper's MultiMNIST error)."""
        return 1.0 - float(self.correct.float().mean())


def _as_pair_batch(pairs: Union[MultiMNIST, PairBatch]) -> PairBatch:
    if isinstance(pairs, MultiMNIST):
        return pairs.as_batch()
    if not (isinstance(pairs, (tuple, list)) and len(pairs) == 2 and isinstance(pairs[0], Pairs)):
        raise ValueError("pairs must be a MultiMNIST or a pair batch (Pairs, targets (N, 2)), "
                         f"got {type(pairs).__name__}")
    images, targets = pairs
    if not isinstance(targets, torch.Tensor) or targets.shape != (images.size, 2) or targets.is_floating_point():
        raise ValueError(f"pair targets must be int64 (N, 2) class indices, got "
                         f"{tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__}")
    return images, targets.long()


def _line_up(predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``predicted`` (N, 2) reordered so that a class equal to a label sits in that label's column."""
    swap = (predicted[:, 0] == labels[:, 1]) | (predicted[:, 1] == labels[:, 0])
    return torch.where(swap[:, None], predicted.flip(1), predicted)


@torch.no_grad()
def read_pairs(model: torch.nn.Module, pairs: Union[MultiMNIST, PairBatch],
               absent: Optional[Union[int, torch.Tensor]] = None) -> PairReading:
    """Run a pair-trained CapsNet on ``pairs`` and decode what Fig. 5 shows (in eval mode, no gradients).

    Args:
        model: a :class:`capsedu.models.CapsNet` with a decoder, trained on MultiMNIST (36x36 inputs), e.g.
            with ``TrainConfig(dataset="multimnist")``.
        pairs: a :class:`~capsedu.data.MultiMNIST` or a pair batch ``(Pairs, targets (N, 2))`` as
            :class:`~capsedu.data.PairBatches` yields it; only the overlay reaches the model.
        absent: the class to force-decode beside the first label (one int for all pairs, or ``int64 (N,)``);
            it must be neither a label nor predicted. Default: the longest capsule among those classes, the
            absent class the network finds most plausible.

    The digit capsules come from routing (Eqs. 2-3) on the overlay; each reconstruction masks all capsules
    but one (section 4.1) and decodes it, so a pair's two digits come from two different capsules.
    """
    from ..models import CapsNet

    if not isinstance(model, CapsNet) or model.decoder is None:
        raise ValueError("read_pairs needs a CapsNet with a decoder (reconstruction=True), got "
                         f"{type(model).__name__}" + (" without a decoder" if isinstance(model, CapsNet) else ""))
    images, labels = _as_pair_batch(pairs)
    device = next(model.parameters()).device
    overlay, labels = images.overlay.to(device), labels.to(device)
    n_classes = model.config.n_classes
    if n_classes < 5:
        raise ValueError(f"the forced decoding needs a class beyond two labels and two predictions; the model has "
                         f"{n_classes} classes")
    was_training = model.training
    model.eval()
    try:
        out = model(overlay)
        lengths = out.lengths                                                # (N, K)
        predicted = _line_up(lengths.topk(2, dim=1).indices, labels)         # (N, 2)
        correct = (predicted.sort(dim=1).values == labels.sort(dim=1).values).all(dim=1)
        taken = torch.zeros_like(lengths, dtype=torch.bool)
        rows = torch.arange(labels.shape[0], device=device)
        for k in (0, 1):
            taken[rows, labels[:, k]] = True
            taken[rows, predicted[:, k]] = True
        if absent is None:
            absent_t = lengths.masked_fill(taken, -1.0).argmax(dim=1)        # the strongest class not in play
        else:
            absent_t = torch.as_tensor(absent, dtype=torch.long, device=device)
            if absent_t.dim() > 1 or (absent_t.dim() == 1 and absent_t.shape[0] != labels.shape[0]):
                raise ValueError(f"absent must be one class or one per pair ({labels.shape[0]},), got shape "
                                 f"{tuple(absent_t.shape)}")
            absent_t = absent_t.expand(labels.shape[0]).clone()
            if ((absent_t < 0) | (absent_t >= n_classes)).any():
                raise ValueError(f"absent classes must lie in 0..{n_classes - 1}, got {absent_t.tolist()}")
            clash = taken[rows, absent_t]
            if clash.any():
                first = int(clash.nonzero()[0])
                raise ValueError(f"absent class {int(absent_t[first])} is a label or a prediction of pair {first} "
                                 f"(labels {labels[first].tolist()}, predicted {predicted[first].tolist()})")

        def decode(classes: torch.Tensor) -> torch.Tensor:                  # classes (N, 2) -> (N, 2, H, W)
            return torch.stack([model.reconstruct(out.poses, classes[:, k])[:, 0] for k in (0, 1)], dim=1)

        forced = torch.stack([labels[:, 0], absent_t], dim=1)
        return PairReading(overlay=overlay[:, 0].cpu(), labels=labels.cpu(), predicted=predicted.cpu(),
                           correct=correct.cpu(), lengths=lengths.cpu(), from_labels=decode(labels).cpu(),
                           from_prediction=decode(predicted).cpu(), absent=absent_t.cpu(),
                           from_absent=decode(forced).cpu())
    finally:
        model.train(was_training)


@dataclass
class PairColumn:
    """One column of Fig. 5: an input above two reconstructions, with its captions.

    Attributes:
        index: which pair of the :class:`PairReading`.
        kind: ``"R"`` (decoded from the labels, a right prediction or, beside a ``"P"`` column, a wrong
            one), ``"P"`` (a wrong prediction decoded from the predicted classes) or ``"*"`` (decoded from
            a label and a class that is neither a label nor predicted).
        overlay: ``(H, W)`` the input.
        reconstructions: ``(2, H, W)`` the two decoded digits (drawn red and green).
        labels, classes: the two labels, and the two classes decoded.
    """

    index: int
    kind: str
    overlay: torch.Tensor
    reconstructions: torch.Tensor
    labels: Tuple[int, int]
    classes: Tuple[int, int]

    @property
    def caption(self) -> str:
        """``R:(a, b)``, ``R:P:(a, b)`` or ``*R:(a, b)``: the classes decoded, as the paper writes them."""
        prefix = {"R": "R:", "P": "R:P:", "*": "*R:"}[self.kind]
        return f"{prefix}({self.classes[0]}, {self.classes[1]})"

    @property
    def label_caption(self) -> str:
        """``L:(a, b)``: the labels."""
        return f"L:({self.labels[0]}, {self.labels[1]})"


def figure_columns(reading: PairReading, n_right: int = 4, n_forced: int = 2, n_wrong: int = 1) -> List[PairColumn]:
    """The columns of the paper's Fig. 5 (slides 42-43), in its order, from one :class:`PairReading`.

    ``n_right`` pairs the model got right, decoded from their labels (``R``); ``n_forced`` other right
    pairs decoded from their first label and an absent class (``*R``); and ``n_wrong`` pairs it got
    wrong, each twice: from its labels (``R``) and from its prediction (``R:P``). Fewer columns come back
    when the batch has fewer such pairs (a good model may make no mistake in a small batch).
    """
    for name, value in (("n_right", n_right), ("n_forced", n_forced), ("n_wrong", n_wrong)):
        check_int(value, name, low=0)
    right = reading.correct.nonzero().flatten().tolist()
    wrong = (~reading.correct).nonzero().flatten().tolist()

    def column(i: int, kind: str, images: torch.Tensor, classes: torch.Tensor) -> PairColumn:
        return PairColumn(i, kind, reading.overlay[i], images[i], tuple(reading.labels[i].tolist()),
                          tuple(int(c) for c in classes))

    columns = [column(i, "R", reading.from_labels, reading.labels[i]) for i in right[:n_right]]
    for i in right[n_right:n_right + n_forced]:
        columns.append(column(i, "*", reading.from_absent, torch.stack([reading.labels[i, 0], reading.absent[i]])))
    for i in wrong[:n_wrong]:
        columns.append(column(i, "R", reading.from_labels, reading.labels[i]))
        columns.append(column(i, "P", reading.from_prediction, reading.predicted[i]))
    return columns


# ----------------------------------------------------------------------------- drawing


def pair_colour_image(reconstructions: torch.Tensor) -> torch.Tensor:
    """``(H, W, 3)`` RGB in [0, 1]: the first reconstruction in red, the second in green (yellow where both)."""
    rec = torch.as_tensor(reconstructions, dtype=torch.float32).clamp(0, 1)
    if rec.dim() != 3 or rec.shape[0] != 2:
        raise ValueError(f"reconstructions must be (2, H, W), got {tuple(rec.shape)}")
    return torch.stack([rec[0], rec[1], torch.zeros_like(rec[0])], dim=-1)


def draw_pairs(columns: Sequence[PairColumn], size: float = 1.3):
    """Fig. 5 as a matplotlib ``Figure``: per column the input on top, captioned with its labels ``L:(a, b)``,
    and below it the two reconstructions in red and green (:data:`PAIR_COLORS`), captioned with the classes
    decoded (``R:(a, b)``, ``R:P:(a, b)``, ``*R:(a, b)``; the last two in dark red)."""
    import matplotlib.pyplot as plt

    if len(columns) == 0:
        raise ValueError("draw_pairs needs at least one column (see figure_columns)")
    fig, axes = plt.subplots(2, len(columns), figsize=(size * len(columns), size * 2.4), squeeze=False)
    for k, col in enumerate(columns):
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(torch.as_tensor(col.overlay).float().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        bottom.imshow(pair_colour_image(col.reconstructions).cpu().numpy())
        top.set_title(col.label_caption, fontsize=12)
        bottom.set_xlabel(col.caption, fontsize=12, color="darkred" if col.kind in ("P", "*") else "black")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=12)
    axes[1, 0].set_ylabel("reconstructions", fontsize=12)
    fig.tight_layout()
    return fig
