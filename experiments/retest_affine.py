"""``python -m experiments.retest_affine``: the shipped affine models (``capsedu/assets/affine_*_small.pt``)
re-tested, inference only, on the clean test digits, the first generated set, the calibrated set and, when its
files are there, affNIST; the accuracies go to ``experiments/inference/affine_shipped_models.json``.

It tells, without training, how much harder the calibrated set (digits moved anywhere on the canvas) is for the
shipped models than the first one. The first edition's models (trained for 3 epochs before the generator was
calibrated) were measured this way before the second design's replaced them: that output is kept in
``experiments/inference/affine_shipped_models_first_edition.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from capsedu._io import atomic_write
from capsedu.checkpoint import CheckpointError, load_model
from capsedu.data import Batches, CenterPad, DataError, load_split, make_affine_test
from capsedu.data.affine import AFFNIST_LIKE
from capsedu.data.affnist import has_affnist, load_affnist_test
from capsedu.train import evaluate

from .runner import REPO, _commit, _machine

ASSETS = REPO / "capsedu" / "assets"
MODELS = {"capsnet": ASSETS / "affine_capsnet_small.pt", "baseline": ASSETS / "affine_baseline_small.pt"}
OUT = REPO / "experiments" / "inference" / "affine_shipped_models.json"
FORMAT = "capsedu-inference-v1"


def test_sets(n: int, root: Optional[str], subset: Optional[bool]) -> Dict[str, Any]:
    """``{name: (batches factory, description)}``: the sets every shipped model is tested on."""
    test = load_split("mnist", "test", root=root, subset=subset).take(n)

    def batches(split, augment=None) -> Callable[[torch.device], Batches]:
        return lambda device: Batches(split, 500, augment=augment, device=device)

    sets = {
        "clean": (batches(test, CenterPad(40)), f"the first {len(test):,} MNIST test digits centred on 40x40"),
        "generated-v1": (batches(make_affine_test(test, seed=0)),
                         "the first generated set: warped about the centre, translation up to 6 px "
                         "(make_affine_test(seed=0)), the set the first edition's records report"),
        "calibrated": (batches(make_affine_test(test, seed=0, **AFFNIST_LIKE)),
                       "the calibrated set: the same warps, then each digit moved anywhere on the canvas "
                       "(make_affine_test(seed=0, **AFFNIST_LIKE))"),
    }
    if not subset and has_affnist(root):
        sets["affnist"] = (batches(load_affnist_test(root, n=n)), f"affNIST's test batches, first {n:,}")
    return sets


def retest(n: int = 10000, root: Optional[str] = None, subset: Optional[bool] = None,
           models: Dict[str, Path] = MODELS) -> Dict[str, Any]:
    """Every model in ``models`` on every set of :func:`test_sets`: the JSON-ready result."""
    sets = test_sets(n, root, subset)
    device = torch.device("cpu")
    results = {}
    for name, path in models.items():
        model, _ = load_model(path)
        model = model.float().eval()
        results[name] = {"weights": path.name, "accuracy": {}, "examples": {}}
        for set_name, (make, _description) in sets.items():
            metrics = evaluate(model, make(device))
            results[name]["accuracy"][set_name] = metrics["accuracy"]
            results[name]["examples"][set_name] = metrics["examples"]
    return {"format": FORMAT, "sets": {k: d for k, (_m, d) in sets.items()}, "models": results,
            "commit": _commit(), "machine": _machine("cpu"), "torch": torch.__version__}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.retest_affine", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="test digits per set (default: all 10,000)")
    parser.add_argument("--data", default=None, help="data root (default: $CAPSEDU_DATA)")
    parser.add_argument("--subset", action="store_true", help="the shipped MNIST subset (tests)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    try:
        result = retest(args.n, args.data, True if args.subset else False)
    except (CheckpointError, DataError, ValueError) as exc:
        print(f"experiments.retest_affine: error: {exc}", file=sys.stderr)
        return 2
    result["command"] = "python -m experiments.retest_affine" + (f" --n {args.n}" if args.n != 10000 else "")
    atomic_write(args.out, lambda f: f.write((json.dumps(result, indent=1) + "\n").encode()))
    for name, r in result["models"].items():
        print(f"{name}: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in r["accuracy"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
