"""Routing after 2017 (chapter 10): every routing procedure of :data:`capsedu.routings.ROUTINGS` trained in the same
CapsNet on the same data for the same number of steps, and Efficient-CapsNet beside them.

Question: does the routing procedure change what a CapsNet learns, how robust it is to affine warps, how far its
couplings move from uniform, and what it costs per step? Paik, Kwak & Kim (2019) found that routing polarises the
couplings without changing the classification; Gu & Tresp (2020) that routing adds nothing to affine robustness.

The design:

* Models: the ``small`` CapsNet preset with each routing, ``dynamic`` (r = 3, Procedure 1), ``uniform`` (no
  routing), ``self-attention`` (one pass), ``inverted-attention`` (r = 3) and ``em`` (r = 3); and Efficient-CapsNet
  (its ``mnist`` preset, self-attention routing). Efficient-CapsNet's convolutions are all "valid", so it takes
  any image of at least 11x11: on the 40x40 canvas its feature map is 15x15 instead of 9x9, and its depthwise
  primary-capsule convolution covers it whole (``image_size=40``, which the trainer sets from the data); it keeps
  its 16 primary capsules. Everything else is :class:`~capsedu.train.TrainConfig`'s defaults (the paper's Adam,
  1e-3 x 0.96 every 2,000 steps; margin loss with reconstruction x 0.0005). Seeds 0 and 1.
* One variant beside them (:data:`VARIANTS`), the one deviation from the shared protocol, stated in its key and
  name: ``capsnet-em-lr0.0001``, EM routing with Adam at 1e-4 (same schedule, data and step budget), because at
  1e-3 Adam's first step lifts every EM class activation towards 1 (:mod:`capsedu.routings.em`).
* Data, the same for every run: the first ``TRAIN_DIGITS`` MNIST training digits, each placed at a random
  position on a 40x40 canvas every epoch (``augment="place"``, as ``affine_robustness``); the same step budget
  for every run (``SCALES[scale]["epochs"]`` epochs of ``batch_size``), not a target accuracy.
* Tests: the clean MNIST test digits centred on the canvas (the record's ``test_error``), and the calibrated
  generated affNIST-like set, ``make_affine_test(test, n, seed=0, **AFFNIST_LIKE)`` (``extra["affine_test_error"]``;
  always the generated set, never affNIST's files, so that every machine records the same test).
* Also recorded (``extra``): trainable parameters (with and without the decoder), seconds per training step (the
  history's wall-clock training seconds over its optimizer steps: they depend on what else the machine ran; the
  table below gives each step's CPU cost), and chapter 7.6's coupling measures on the first
  ``COUPLING_EXAMPLES`` clean test digits, computed from the couplings each model's own procedure produces
  (:meth:`capsedu.models.CapsNet.couplings`): mean normalised entropy (1 uniform, 0 all to one parent) and
  polarisation (0 uniform, 1 all to one parent), each plain and weighted by the child's total vote length
  (:mod:`capsedu.teaching.couplings`).
* Scales: ``tiny`` (the shipped subset, 256 digits, one epoch of 4 steps; the tests) and ``cpu``: 2 epochs of the
  55,000 digits at batch 128 = 860 steps per run, 14 runs.

Step times, measured on the 2-core development VM (AMD EPYC with native bf16, so training runs under bf16
autocast), batch 128 on 40x40, one torch thread, median of 3 steps after one warm-up
(``nice -n 5 python -m experiments.routing_comparison --time-steps 3``). The machine was shared (load average
7 to 12 on its 2 cores), so the wall clock says little; the process's CPU seconds are what a step costs:

    run                          CPU s / step   wall s / step   860 steps, CPU hours
    capsnet, dynamic (r = 3)     1.131          57.2            0.27
    capsnet, uniform             0.659          37.9            0.16
    capsnet, self-attention      1.792          17.8            0.43
    capsnet, inverted-attention  4.241          52.1            1.01
    capsnet, em (r = 3)          8.723          129.8           2.08
    efficient-capsnet            0.316          4.3             0.08

So one seed of the ``cpu`` scale was about 4.0 CPU hours of training (EM routing half of it) and both seeds about
8.1. The EM row was measured with the step-by-step ``em_routing``; ``EMRouting`` has since run
``em_routing_fast`` (the same arithmetic, tested equal), and timed side by side in one process (the two alternated
twice, 2 steps each after a warm-up, the machine busy with two training runs) a step cost 11.74 and 11.16 CPU s with
the first against 5.49 and 4.45 with the second: about 1.1 CPU hours for an EM run instead of 2.1. Likewise the
inverted-attention row was measured with the einsum ``inverted_attention_routing``; its module now runs
``inverted_attention_routing_fast`` (tested equal), and timed the same way a step cost 5.78 and 5.88 CPU s with
the first against 4.37 and 3.88 with the second: about 1.0 CPU hours for a run instead of 1.4.
Self-attention at 40x40 compares every pair of the 2,304 primary capsules, which is why it costs more than dynamic
routing here.

The same models on MultiMNIST pairs, for the same number of steps: :mod:`experiments.routing_multimnist`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from capsedu.data import Batches, load_split, make_affine_test
from capsedu.data.affine import AFFNIST_LIKE
from capsedu.models import CapsNet, count_parameters
from capsedu.routings import ROUTINGS
from capsedu.teaching.couplings import entropy, polarisation, weighted_mean
from capsedu.train import HISTORY_NAME, TrainConfig, evaluate

from . import step_cost
from .runner import Run

NAME = "routing_comparison"
CANVAS = 40

#: (model, routing) of every run, in training order: the CapsNet with each procedure, then Efficient-CapsNet
MODELS = tuple(("capsnet", routing) for routing in ROUTINGS) + (("efficient-capsnet", "self-attention"),)
#: runs beside the shared protocol, one setting changed each, stated in their keys: (model, routing, changes to
#: :class:`~capsedu.train.TrainConfig`). EM routing again with Adam at 1e-4: at the shared 1e-3 Adam's first step
#: lifts every class activation towards 1 (:mod:`capsedu.routings.em`, ``python -m experiments.em_first_steps``),
#: and a CapsNet that does not leave chance says nothing about what routing does for it.
VARIANTS: Tuple[Tuple[str, str, Dict[str, Any]], ...] = (("capsnet", "em", {"lr": 1e-4}),)

TRAIN_DIGITS = {"tiny": 256, "cpu": 55000}
SCALES = {  # the step budget: epochs of train_limit digits at batch_size, the same for every run
    "tiny": dict(epochs=1, batch_size=64, subset=True, test_limit=200),
    "cpu": dict(epochs=2, batch_size=128, subset=False),
}
PRESET = {"capsnet": "small", "efficient-capsnet": "mnist"}
AFFINE_EXAMPLES = {"tiny": 100, "cpu": 10000}
COUPLING_EXAMPLES = {"tiny": 50, "cpu": 1000}


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"{NAME} has the scales {sorted(SCALES)}, not {scale!r}")


def run_name(model: str, routing: str, seed: int, changes: Optional[Dict[str, Any]] = None) -> str:
    """``capsnet-em-seed0``, ``efficient-capsnet-seed1``, ``capsnet-em-lr0.0001-seed0``: the model, its routing
    unless it is the model's own, each changed setting of a variant."""
    changed = "".join(f"-{k}{v:g}" if isinstance(v, float) else f"-{k}{v}" for k, v in (changes or {}).items())
    return f"{model}-{routing}{changed}-seed{seed}" if model == "capsnet" else f"{model}{changed}-seed{seed}"


def config_for(model: str, routing: str, scale: str, seed: int) -> TrainConfig:
    """The training configuration of one run: the same data and step budget for every model and routing."""
    _check_scale(scale)
    return TrainConfig(**SCALES[scale], model=model, preset=PRESET[model], routing=routing, seed=seed,
                       augment="place", canvas_size=CANVAS, train_limit=TRAIN_DIGITS[scale])


def coupling_summary(model: CapsNet, batches) -> Dict[str, float]:
    """Chapter 7.6's measures of the couplings ``model``'s own routing gives the images of ``batches``: mean
    entropy and polarisation over every child of every image, plain and weighted by the child's total vote
    length ``sum_j ||u_hat_{j|i}||``."""
    h, p, w = [], [], []
    model.eval()
    with torch.no_grad():
        for images, _ in batches:
            u_hat, c = model.couplings(images)             # (B, n_in, n_out, d), (B, n_in, n_out)
            h.append(entropy(c.float()))
            p.append(polarisation(c.float()))
            w.append(u_hat.float().norm(dim=-1).sum(dim=-1))
    h, p, w = torch.cat(h), torch.cat(p), torch.cat(w)  # each (examples, n_in)
    return {"coupling_entropy": float(h.mean()), "coupling_weighted_entropy": weighted_mean(h, w),
            "coupling_polarisation": float(p.mean()), "coupling_weighted_polarisation": weighted_mean(p, w)}


def seconds_per_step(history: List[Dict[str, Any]], batch_size: int) -> float:
    """Training seconds over optimizer steps (each epoch's last batch may be partial)."""
    steps = sum(math.ceil(h["train_examples"] / batch_size) for h in history)
    return sum(h["seconds"] for h in history) / steps


def measure(scale: str):
    """``measure(model, config)`` for the runner: the affNIST-like error, the coupling measures, the parameters
    and the seconds per step of the finished run."""
    def run(model: torch.nn.Module, config: TrainConfig) -> Dict[str, Any]:
        device = next(model.parameters()).device
        test = load_split(config.dataset, "test", root=config.data, subset=config.subset)
        hard = make_affine_test(test, n=AFFINE_EXAMPLES[scale], seed=0, **AFFNIST_LIKE)
        affine = evaluate(model, Batches(hard, config.eval_batch_size, device=device))
        clean = Batches(test, config.eval_batch_size, augment=config.transforms()[1], device=device,
                        limit=COUPLING_EXAMPLES[scale])
        history = json.loads((Path(config.output) / HISTORY_NAME).read_text())
        return {
            "affine_test_error": affine["error"], "affine_test_accuracy": affine["accuracy"],
            "affine_test_examples": affine["examples"],
            "affine_test": "generated affNIST-like set (capsedu.data.make_affine_test with AFFNIST_LIKE, seed 0)",
            "parameters": count_parameters(model),
            "parameters_without_decoder": count_parameters(model) - (count_parameters(model.decoder)
                                                                     if model.decoder is not None else 0),
            "seconds_per_step": seconds_per_step(history, config.batch_size),
            "coupling_examples": COUPLING_EXAMPLES[scale], **coupling_summary(model, clean),
        }
    return run


def runs(scale: str, seeds: Sequence[int] = (0, 1)) -> List[Run]:
    """Seed by seed, every routing of the CapsNet, then Efficient-CapsNet."""
    _check_scale(scale)
    return plan(NAME, config_for, measure(scale), scale, seeds, steps(scale), variants=VARIANTS)


def plan(experiment: str, configure: Callable[[str, str, str, int], TrainConfig], measure_run: Callable,
         scale: str, seeds: Sequence[int], step_budget: int,
         labels: Callable[[TrainConfig], Dict[str, Any]] = lambda config: {},
         variants: Sequence[Tuple[str, str, Dict[str, Any]]] = ()) -> List[Run]:
    """The runs of a routing experiment: seed by seed, each model and routing of :data:`MODELS`, configured by
    ``configure(model, routing, scale, seed)``, keyed by model, routing and seed, labelled with the routing
    iterations (``None`` for a one-pass procedure), the step budget and ``labels(config)``; then each of
    ``variants`` (see :data:`VARIANTS`), the same configuration with its changes, which its key also holds."""
    out = []
    for seed in seeds:
        for model, routing, changes in [(m, r, {}) for m, r in MODELS] + list(variants):
            config = dataclasses.replace(configure(model, routing, scale, seed), **changes)
            iterative = ROUTINGS[routing].iterative
            out.append(Run(experiment, run_name(model, routing, seed, changes), config, scale,
                           key={"model": model, "routing": routing, **changes, "seed": seed}, measure=measure_run,
                           labels={"routing_iterations": config.routing_iterations if iterative else None,
                                   "steps": step_budget, **labels(config)}))
    return out


def steps(scale: str) -> int:
    """Optimizer steps of every run at ``scale``."""
    settings = SCALES[scale]
    return math.ceil(TRAIN_DIGITS[scale] / settings["batch_size"]) * settings["epochs"]


def time_steps(model: str, routing: str, steps: int = 3, batch_size: int = 128) -> Tuple[float, float]:
    """``(wall, cpu)``: median seconds of one training step of a run's model on random 40x40 images, one torch
    thread (:func:`experiments.step_cost.time_steps`)."""
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(batch_size, 1, CANVAS, CANVAS, generator=g), torch.randint(0, 10, (batch_size,), generator=g))
    return step_cost.time_steps(config_for(model, routing, "cpu", 0), batch, (1, CANVAS, CANVAS), steps)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m experiments.routing_comparison",
                                     description="time training steps of every run's model (one torch thread)")
    parser.add_argument("--time-steps", type=int, default=3, metavar="N", help="steps timed after one warm-up")
    args = parser.parse_args(argv)
    for model, routing in MODELS:
        wall, cpu = time_steps(model, routing, args.time_steps)
        print(f"{model:18s} {routing:19s} {cpu:.3f} CPU s/step, {wall:.3f} s/step wall", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
