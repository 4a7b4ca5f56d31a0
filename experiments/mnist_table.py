"""The paper's MNIST table (section 5, Table 1; slide 44): test error of the baseline CNN and of
CapsNet with 1 or 3 routing iterations, each with and without the reconstruction loss, over 3 seeds.

Paper (mean +- std over 3 trials): baseline 0.39 %; CapsNet r = 1 without reconstruction 0.34 +- 0.032,
with 0.29 +- 0.011; r = 3 without 0.35 +- 0.036, with 0.25 +- 0.005.

Scales: ``cpu`` trains the small CapsNet preset and a baseline CNN of comparable compute (the
``"small"`` baseline preset) for a few epochs on full MNIST; ``paper`` is the paper's networks for 50
epochs (a GPU); ``tiny`` is a seconds-long smoke run on the shipped subset (tests).
"""
from __future__ import annotations

from typing import List, Sequence

from capsedu.train import TrainConfig

from .runner import Run

NAME = "mnist_table"

#: the paper's rows: (run name stem, label, model, routing iterations, reconstruction, paper error %, paper std)
ROWS = (
    ("baseline", "Baseline", "baseline", None, None, 0.39, None),
    ("capsnet-r1-plain", "CapsNet, r = 1, no reconstruction", "capsnet", 1, False, 0.34, 0.032),
    ("capsnet-r1-recon", "CapsNet, r = 1, reconstruction", "capsnet", 1, True, 0.29, 0.011),
    ("capsnet-r3-plain", "CapsNet, r = 3, no reconstruction", "capsnet", 3, False, 0.35, 0.036),
    ("capsnet-r3-recon", "CapsNet, r = 3, reconstruction", "capsnet", 3, True, 0.25, 0.005),
)

SCALES = {
    "tiny": dict(preset="small", epochs=1, batch_size=64, subset=True, train_limit=256, test_limit=200),
    "cpu": dict(preset="small", epochs=3, batch_size=128, subset=False),
    "paper": dict(preset="paper", epochs=50, batch_size=128, subset=False),
}


def runs(scale: str, seeds: Sequence[int] = (0, 1, 2)) -> List[Run]:
    """One run per row and seed."""
    out = []
    for stem, label, model, iterations, reconstruction, paper, paper_std in ROWS:
        for seed in seeds:
            settings = dict(SCALES[scale], model=model, seed=seed)
            if model == "capsnet":
                settings.update(routing_iterations=iterations, reconstruction=reconstruction)
            out.append(Run(NAME, f"{stem}-seed{seed}", TrainConfig(**settings), scale, key={"row": stem, "seed": seed},
                           labels={"row": stem, "label": label, "paper_error": paper, "paper_std": paper_std}))
    return out
