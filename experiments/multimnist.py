"""MultiMNIST (paper section 6 and Table 1's last column; the deck's slides 42-44): recognising two
highly overlapping digits of different classes, each shifted by up to 4 pixels on a 36x36 canvas.

Runs, one per row (seed 0 unless ``--seeds`` says otherwise):

* ``capsnet-r3-recon``: CapsNet, 3 routing iterations, each digit reconstructed from its own capsule
  (:class:`capsedu.objectives.PairMarginLoss`). Paper: 5.2 % error.
* ``capsnet-r1-recon``: the same with 1 routing iteration, the "does routing matter" row. Paper: 7.5 %.
* ``baseline``: the baseline CNN (section 5's architecture at 36x36) with one sigmoid readout per class,
  trained with binary cross-entropy on both classes (``pair-bce``,
  :class:`capsedu.objectives.PairCrossEntropy`). Paper: 8.1 % with its own, larger MultiMNIST CNN, whose
  loss it does not give.

Error, the paper's rule for all three: a test pair counts as right when the two longest capsules (the
two largest logits for the CNN) are exactly its two classes. Training pairs are fresh every epoch
(``TrainConfig(dataset="multimnist")``; the paper makes 1K pairs per training digit on the fly); the
test set is fixed: 10,000 pairs of MNIST test digits (:func:`capsedu.data.pair_test_batches`, seed 0;
the paper tests on 10M). The record's ``extra`` holds the error by that rule, the number of test pairs,
the mean bounding-box overlap of the test pairs (:func:`capsedu.teaching.overlap.measure_overlap`, intersection
over the smaller box: 0.725 for this test set; the paper says "80 %") and the paper's numbers.

Scales:

* ``tiny``: a seconds-long smoke run on the shipped subset (tests).
* ``cpu``: the small presets (CapsNet ``"small"``, baseline ``"small"``), 5 epochs of 60,000 fresh pairs
  (300,000 pairs, 2,345 steps of batch 128 per run), tested on the 10,000 pairs after every epoch.
  Budget: about an hour for all three runs on an idle 2-core CPU. Measured at 36x36, batch 128, 2
  threads, while another training job shared the 2 cores: 3.7 s per step (r = 3), 2.4 s (r = 1), 1.2 s
  (baseline); the small MNIST CapsNet step took 1.57 s in the same conditions against 0.29-0.32 s idle
  (benchmarks/README.md), so idle steps are about 0.75, 0.48 and 0.24 s: 29 + 19 + 9 minutes of
  training plus about 3 minutes of testing. On a busy machine expect several times that.
* ``paper``: the paper's networks, 100 epochs of 600,000 fresh pairs: 60M pairs, the paper's training
  set size (a GPU; many hours).
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch

from capsedu.data import PAIR_DATASETS, load_split, pair_test_batches
from capsedu.teaching.overlap import measure_overlap
from capsedu.train import TrainConfig, evaluate

from .runner import Run

NAME = "multimnist"

#: the paper's rows (Table 1, MultiMNIST column): (run name, label, model, routing iterations, paper error %)
ROWS = (
    ("capsnet-r3-recon", "CapsNet, r = 3, reconstruction", "capsnet", 3, 5.2),
    ("capsnet-r1-recon", "CapsNet, r = 1, reconstruction", "capsnet", 1, 7.5),
    ("baseline", "Baseline CNN, two sigmoid readouts (top 2)", "baseline", None, 8.1),
)
PAPER_ERROR_PERCENT = {stem: paper for stem, _label, _model, _r, paper in ROWS}

SCALES = {
    "tiny": dict(preset="small", epochs=1, batch_size=32, subset=True, train_limit=128, test_limit=100,
                 eval_batch_size=100),
    "cpu": dict(preset="small", epochs=5, batch_size=128, subset=False),   # 5 x 60,000 fresh pairs
    "paper": dict(preset="paper", epochs=100, batch_size=128, subset=False, train_repeat=10),  # 100 x 600,000
}

OVERLAP_DEFINITION = ("mean over the test pairs of the area of the intersection of the two digits' ink bounding "
                      "boxes over the area of the smaller box")
ERROR_RULE = "a pair is right when the two longest capsules (largest logits) are exactly its two classes"


def measure_multimnist(model: torch.nn.Module, config: TrainConfig) -> Dict[str, Any]:
    """``measure(model, config)`` for the runner: the test error by the paper's rule on the fixed test pairs,
    their number, their mean bounding-box overlap, and the paper's numbers."""
    test = load_split(PAIR_DATASETS[config.dataset], "test", root=config.data, subset=config.subset)
    batches = pair_test_batches(test, config.eval_batch_size, device=next(model.parameters()).device,
                                limit=config.test_limit)
    metrics = evaluate(model, batches, config.build_objective())
    return {"multimnist_test_error": metrics["error"], "multimnist_test_pairs": metrics["examples"],
            "error_rule": ERROR_RULE, "mean_overlap": measure_overlap(batches),
            "overlap_definition": OVERLAP_DEFINITION, "paper_error_percent": dict(PAPER_ERROR_PERCENT)}


def runs(scale: str, seeds: Sequence[int] = (0,)) -> List[Run]:
    """One run per row and seed."""
    out = []
    for stem, label, model, iterations, paper in ROWS:
        for seed in seeds:
            settings = dict(SCALES[scale], dataset="multimnist", model=model, seed=seed)
            if model == "capsnet":
                settings.update(routing_iterations=iterations, reconstruction=True)
            out.append(Run(NAME, f"{stem}-seed{seed}", TrainConfig(**settings), scale, key={"row": stem, "seed": seed},
                           measure=measure_multimnist,
                           labels={"row": stem, "label": label, "paper_error": paper,
                                   "loss": TrainConfig(**settings).build_objective().name}))
    return out
