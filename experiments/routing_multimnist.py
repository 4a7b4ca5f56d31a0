"""Routing after 2017 on overlapping digits (chapter 10): the models of :mod:`experiments.routing_comparison`
trained on chapter 7.3's MultiMNIST pairs instead of single digits, each for the same number of steps.

Question: the 2017 paper's case for routing rests on MultiMNIST (section 6: r = 3 reaches 5.2 % error, r = 1
7.5 %), where two digits share their pixels and each child must send its vote to one of two parents. Does any
routing procedure separate overlapping digits better than uniform couplings, at the same budget?

The design, the same for every run:

* Models: :data:`experiments.routing_comparison.MODELS`, the ``small`` CapsNet with each routing of
  :data:`capsedu.routings.ROUTINGS` and Efficient-CapsNet (its ``mnist`` preset, on the 36x36 canvas), each
  reconstructing both digits from their own capsules (:class:`capsedu.objectives.PairMarginLoss`), as chapter
  7.3's CapsNets do. Seeds 0 and 1.
* Data: fresh pairs of the first ``TRAIN_DIGITS`` MNIST training digits every epoch (each digit shifted by up to
  4 pixels on 36x36, two different classes), as :mod:`experiments.multimnist`; the same step budget for every run
  (``SCALES[scale]["epochs"]`` epochs of ``batch_size`` pairs), not a plateau: the question is which procedure
  learns pairs better for the same work, not how far each one can go.
* Test: the 10,000 fixed pairs of MNIST test digits of chapter 7.3 by the paper's rule (a pair is right when
  the two longest capsules are its two classes; the record's ``test_error``), and chapter 7.6's coupling
  measures on the first ``COUPLING_EXAMPLES`` test pairs, from the couplings each model's own procedure produces.
* Also recorded (``extra``): trainable parameters with and without the decoder and seconds per training step.
* Scales: ``tiny`` (the shipped subset, 128 digits, one epoch of 4 steps; the tests) and ``cpu``: 2 epochs of
  55,000 pairs at batch 128 = 860 steps, the single-digit runs' budget; 14 runs (with
  :data:`experiments.routing_comparison.VARIANTS`, EM routing with Adam at 1e-4).

What a step costs, measured on the 2-core development VM (AMD EPYC with native bf16, so training runs under bf16
autocast), batch 128 of 36x36 pairs, one torch thread, the median of 1 step after one warm-up, while two trainings
shared the machine (``python -m experiments.routing_multimnist --time-steps 1``):

    run                          CPU s / step   860 steps, CPU hours
    capsnet, dynamic (r = 3)     1.090          0.26
    capsnet, uniform             0.734          0.18
    capsnet, self-attention      1.525          0.36
    capsnet, inverted-attention  3.306          0.79
    capsnet, em (r = 3)          6.726          1.61
    efficient-capsnet            0.437          0.10

So one seed was about 3.3 CPU hours of training (EM routing half of it), both seeds about 6.6. The EM row was
measured with the step-by-step ``em_routing``; ``EMRouting`` now runs ``em_routing_fast`` (the same arithmetic,
tested equal). Timed side by side in one process (the two alternated twice, 2 steps each after a warm-up, while
three trainings shared the machine), an EM step on pairs cost 6.53 and 6.70 CPU s with the first against 3.70 and
3.54 with the second: about 0.9 CPU hours per EM run. The inverted-attention row was measured with the einsum
``inverted_attention_routing``; its module now runs ``inverted_attention_routing_fast`` (tested equal), and timed
the same way a step cost 3.29 and 3.15 CPU s with the first against 2.38 and 2.45 with the second: about 0.6 CPU
hours per run instead of 0.8. With both, one seed of the six shared-protocol runs is about 2.4 CPU hours, 3.3 with
the EM variant.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch

from capsedu.data import PAIR_DATASETS, load_split, pair_test_batches
from capsedu.models import count_parameters
from capsedu.train import HISTORY_NAME, TrainConfig

from . import multimnist
from .routing_comparison import MODELS, PRESET, VARIANTS, coupling_summary, plan, seconds_per_step
from .runner import Run

NAME = "routing_multimnist"
CANVAS = 36

TRAIN_DIGITS = {"tiny": 128, "cpu": 55000}
SCALES = {  # the step budget: epochs of train_limit fresh pairs at batch_size, the same for every run
    "tiny": dict(epochs=1, batch_size=32, subset=True, test_limit=100, eval_batch_size=100),
    "cpu": dict(epochs=2, batch_size=128, subset=False),
}
COUPLING_EXAMPLES = {"tiny": 50, "cpu": 1000}


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"{NAME} has the scales {sorted(SCALES)}, not {scale!r}")


def config_for(model: str, routing: str, scale: str, seed: int) -> TrainConfig:
    """One run's training configuration: the same pairs and step budget for every model and routing."""
    _check_scale(scale)
    return TrainConfig(**SCALES[scale], dataset="multimnist", model=model, preset=PRESET[model], routing=routing,
                       seed=seed, reconstruction=True, train_limit=TRAIN_DIGITS[scale])


def steps(scale: str) -> int:
    """Optimizer steps of every run at ``scale``."""
    settings = SCALES[scale]
    return math.ceil(TRAIN_DIGITS[scale] / settings["batch_size"]) * settings["epochs"]


def measure(scale: str):
    """``measure(model, config)`` for the runner: the error by the paper's rule on the fixed test pairs (with
    their overlap), the coupling measures on the first test pairs, the parameters and the seconds per step."""
    def run(model: torch.nn.Module, config: TrainConfig) -> Dict[str, Any]:
        device = next(model.parameters()).device
        test = load_split(PAIR_DATASETS[config.dataset], "test", root=config.data, subset=config.subset)
        overlays = ((pairs.overlay, labels) for pairs, labels in
                    pair_test_batches(test, config.eval_batch_size, device=device, limit=COUPLING_EXAMPLES[scale]))
        history = json.loads((Path(config.output) / HISTORY_NAME).read_text())
        decoder = count_parameters(model.decoder) if model.decoder is not None else 0
        return {**multimnist.measure_multimnist(model, config),
                "parameters": count_parameters(model), "parameters_without_decoder": count_parameters(model) - decoder,
                "seconds_per_step": seconds_per_step(history, config.batch_size),
                "coupling_examples": COUPLING_EXAMPLES[scale], "coupling_input": "test pairs (the overlay)",
                **coupling_summary(model, overlays)}
    return run


def runs(scale: str, seeds: Sequence[int] = (0, 1)) -> List[Run]:
    """Seed by seed, every routing of the CapsNet, then Efficient-CapsNet (the order of routing_comparison)."""
    _check_scale(scale)
    return plan(NAME, config_for, measure(scale), scale, seeds, steps(scale),
                labels=lambda config: {"loss": config.build_objective().name}, variants=VARIANTS)


def time_steps(model: str, routing: str, steps: int = 3) -> Tuple[float, float]:
    """``(wall, cpu)``: median seconds of one training step of a cpu-scale run's model on fixed test pairs, one
    torch thread (:func:`experiments.multimnist.time_steps`)."""
    return multimnist.time_steps(config_for(model, routing, "cpu", 0), steps)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m experiments.{NAME}",
                                     description="time a training step of each cpu-scale run (one torch thread)")
    parser.add_argument("--time-steps", type=int, default=3, metavar="N", help="steps timed after one warm-up")
    args = parser.parse_args(argv)
    for model, routing in MODELS:
        wall, cpu = time_steps(model, routing, args.time_steps)
        print(f"{model:18s} {routing:19s} {cpu:.3f} CPU s/step, {wall:.3f} s/step wall; "
              f"{cpu * steps('cpu') / 3600:.2f} CPU h for {steps('cpu')} steps", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
