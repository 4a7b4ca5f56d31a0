"""Learning from less data (the deck's slide 46: capsules "require less training data"): CapsNet and a
baseline CNN of comparable compute trained on the first 100, 1,000, 10,000 and 60,000 MNIST digits.

Budget rule (the same for both models and every size): a fixed number of optimizer steps of batch 128
with the paper's shift augmentation, ``STEPS[scale]``. A small training set is repeated
(``train_repeat``) so one epoch is the whole budget; each repetition draws fresh shifts. Test error is
measured on the full 10,000-digit test set at the end.
"""
from __future__ import annotations

import math
from typing import List, Sequence

from capsedu.train import TrainConfig

from .runner import Run

NAME = "data_efficiency"

SIZES = {"tiny": (64, 256), "cpu": (100, 1000, 10000, 60000), "paper": (100, 1000, 10000, 60000)}
STEPS = {"tiny": 4, "cpu": 1407, "paper": 4690}   # cpu: 3 epochs of 60,000 digits; paper: 10 epochs
BATCH = {"tiny": 64, "cpu": 128, "paper": 128}
PRESET = {"tiny": "small", "cpu": "small", "paper": "paper"}


def runs(scale: str, seeds: Sequence[int] = (0,)) -> List[Run]:
    out = []
    for n in SIZES[scale]:
        batch = BATCH[scale]
        repeat = max(1, math.ceil(STEPS[scale] * batch / n))  # passes over the n digits in one epoch
        epochs = 1 if repeat > 1 else math.ceil(STEPS[scale] / math.ceil(n / batch))
        for model in ("capsnet", "baseline"):
            for seed in seeds:
                config = TrainConfig(model=model, preset=PRESET[scale], seed=seed, batch_size=batch,
                                     train_limit=n, train_repeat=repeat, epochs=epochs,
                                     subset=True if scale == "tiny" else False,
                                     test_limit=200 if scale == "tiny" else None)
                out.append(Run(NAME, f"{model}-n{n}-seed{seed}", config, scale,
                               labels={"model": model, "train_size": n, "steps": STEPS[scale]}))
    return out
