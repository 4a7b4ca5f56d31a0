"""Learning from less data (the deck's slide 46: capsules "require less training data"): the CapsNet, the same
CapsNet without its decoder, and a baseline CNN of comparable compute, trained on n = 100, 1,000, 10,000 and
60,000 MNIST digits.

Subsets: for n < 60,000 each seed draws its own class-balanced random subset (``n / 10`` digits of each class,
:func:`capsedu.data.subsets.balanced_subset` with ``train_subset_seed = seed``); the seed also seeds the
initialisation and the batches. Three seeds per size give each size its own seed-to-seed spread, which
mixes the luck of the subset with the luck of training. n = 60,000 is the whole training set.

Why the CapsNet without decoder: the reconstruction loss is a regulariser the CNN lacks; with and without
it side by side, a lead of the CapsNet can be told apart from a lead of its decoder.

Budget rule (the same for every model and size): ``EXAMPLES[scale]`` training examples (cpu: 180,000 = 3
epochs of 60,000 digits) in batches of 128 with the paper's shift augmentation, i.e. the same number of
optimizer steps (cpu: 1,407). The n digits are repeated ``EXAMPLES / n`` times (``train_repeat``) in one
epoch, each repetition with fresh shifts. Test error is measured on the full 10,000-digit test set at the end.
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
FULL = {"tiny": 5000, "cpu": 60000, "paper": 60000}   # the whole training set: no subset to draw

#: (model name in the records, TrainConfig model, reconstruction)
MODELS = (("capsnet", "capsnet", True), ("capsnet-no-decoder", "capsnet", False), ("baseline", "baseline", None))


def steps(scale: str) -> int:
    """Optimizer steps of every run at ``scale`` (the last batch may be smaller)."""
    return math.ceil(EXAMPLES[scale] / BATCH[scale])


def runs(scale: str, seeds: Sequence[int] = (0, 1, 2)) -> List[Run]:
    """Every size, seed and model, smallest sizes first (the runner trains them in this order)."""
    out = []
    for n in SIZES[scale]:
        if EXAMPLES[scale] % n:
            raise ValueError(f"{n} training digits do not divide the budget of {EXAMPLES[scale]} examples")
        for seed in seeds:
            subset_seed = None if n >= FULL[scale] else seed
            for name, model, reconstruction in MODELS:
                config = TrainConfig(model=model, preset=PRESET[scale], seed=seed, batch_size=BATCH[scale],
                                     train_limit=n, train_subset_seed=subset_seed,
                                     train_repeat=EXAMPLES[scale] // n, epochs=1,   # all passes in one epoch
                                     subset=True if scale == "tiny" else False,
                                     test_limit=200 if scale == "tiny" else None,
                                     **({} if reconstruction is None else {"reconstruction": reconstruction}))
                key = {"model": name, "train_size": n, "subset_seed": subset_seed, "seed": seed}
                out.append(Run(NAME, f"{name}-n{n}-seed{seed}", config, scale, key=key,
                               labels={"model": name, "train_size": n, "subset_seed": subset_seed,
                                       "examples": EXAMPLES[scale], "steps": steps(scale)}))
    return out
