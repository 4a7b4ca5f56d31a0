"""Robustness to affine transformations (paper section 5.2): train on MNIST digits placed at random on a
40x40 black canvas (translation only), then test on affinely warped digits the networks never saw.

Paper: on affNIST, CapsNet 79 % against 66 % for a CNN with a similar number of parameters, both at
about 99.2 % on the expanded MNIST test set. The affNIST data set cannot be downloaded here; the test set
is :func:`capsedu.data.make_affine_test`: the MNIST test digits centred on 40x40 and warped with random
rotations (up to 20 degrees), shears (up to 0.1), scales (0.8-1.2) and translations (up to 6 pixels). It
follows affNIST's recipe but is generated, not the real affNIST, so the numbers compare the two models
with each other, not with the paper's.

Clean accuracy: the MNIST test digits centred on the canvas (the runs' test transform).
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch

from capsedu.data import Batches, load_split, make_affine_test
from capsedu.train import TrainConfig, evaluate

from .runner import Run

NAME = "affine_robustness"
CANVAS = 40

SCALES = {
    "tiny": dict(preset="small", epochs=1, batch_size=64, subset=True, train_limit=128, test_limit=100),
    "cpu": dict(preset="small", epochs=3, batch_size=128, subset=False),
    "paper": dict(preset="paper", epochs=50, batch_size=128, subset=False),
}
AFFINE_EXAMPLES = {"tiny": 100, "cpu": 10000, "paper": 10000}


def measure_affine(scale: str):
    """``measure(model, config)`` for the runner: accuracy on the generated affNIST-like test set."""
    def measure(model: torch.nn.Module, config: TrainConfig) -> Dict[str, Any]:
        test = load_split(config.dataset, "test", root=config.data, subset=config.subset)
        warped = make_affine_test(test, n=AFFINE_EXAMPLES[scale], size=CANVAS, seed=0)
        metrics = evaluate(model, Batches(warped, config.eval_batch_size,
                                          device=next(model.parameters()).device))
        return {"affine_test_accuracy": metrics["accuracy"], "affine_test_examples": metrics["examples"],
                "affine_test": "generated affNIST-like set (capsedu.data.make_affine_test, seed 0), not affNIST"}
    return measure


def runs(scale: str, seeds: Sequence[int] = (0,)) -> List[Run]:
    out = []
    for model in ("capsnet", "baseline"):
        for seed in seeds:
            config = TrainConfig(**SCALES[scale], model=model, seed=seed, augment="place", canvas_size=CANVAS)
            out.append(Run(NAME, f"{model}-seed{seed}", config, scale, measure=measure_affine(scale),
                           labels={"model": model}))
    return out
