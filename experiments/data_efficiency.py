"""Learning from less data (the deck's slide 46: capsules "require less training data"): CapsNet and a
baseline CNN of comparable compute trained on the first 100, 1,000, 10,000 and 60,000 MNIST digits.

Budget rule (the same for both models and every size): the same number of training examples,
``EXAMPLES[scale]`` (cpu: 180,000 = 3 epochs of 60,000 digits), in batches of 128 with the paper's shift
augmentation, i.e. the same number of optimizer steps (cpu: 1,407). The n digits are repeated
``EXAMPLES / n`` times (``train_repeat``) in one epoch, each repetition with fresh shifts. Test error is
measured on the full 10,000-digit test set at the end.
"""
from __future__ import annotations

import math
from typing import List, Sequence

from capsedu.train import TrainConfig

from .runner import Run

NAME = "data_efficiency"

SIZES = {"tiny": (64, 256), "cpu": (100, 1000, 10000, 60000), "paper": (100, 1000, 10000, 60000)}
EXAMPLES = {"tiny": 256, "cpu": 180_000, "paper": 600_000}   # cpu: 3 epochs of 60,000 digits; paper: 10 epochs
BATCH = {"tiny": 64, "cpu": 128, "paper": 128}
PRESET = {"tiny": "small", "cpu": "small", "paper": "paper"}


def steps(scale: str) -> int:
    """Optimizer steps of every run at ``scale`` (the last batch may be smaller)."""
    return math.ceil(EXAMPLES[scale] / BATCH[scale])


def runs(scale: str, seeds: Sequence[int] = (0,)) -> List[Run]:
    out = []
    for n in SIZES[scale]:
        if EXAMPLES[scale] % n:
            raise ValueError(f"{n} training digits do not divide the budget of {EXAMPLES[scale]} examples")
        repeat = EXAMPLES[scale] // n      # passes over the n digits, all in one epoch
        for model in ("capsnet", "baseline"):
            for seed in seeds:
                config = TrainConfig(model=model, preset=PRESET[scale], seed=seed, batch_size=BATCH[scale],
                                     train_limit=n, train_repeat=repeat, epochs=1,
                                     subset=True if scale == "tiny" else False,
                                     test_limit=200 if scale == "tiny" else None)
                out.append(Run(NAME, f"{model}-n{n}-seed{seed}", config, scale,
                               labels={"model": model, "train_size": n, "steps": steps(scale)}))
    return out
