"""``python -m experiments.analyse_multimnist``: the shipped MultiMNIST CapsNet
(``capsedu/assets/multimnist_capsnet_small.pt``) analysed on the fixed test pairs, inference only: its error by
overlap bin, the rate at which at least one of the two digits is right, and its error when it routes with
1, 2, 3 or 5 iterations at test time (it was trained with 3). Output:
``experiments/inference/multimnist_shipped_model.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

import torch

from capsedu._io import atomic_write
from capsedu.checkpoint import CheckpointError, load_model
from capsedu.data import DataError, load_split, pair_test_batches
from capsedu.teaching.pair_analysis import at_least_one_right, error_by_overlap, pair_results, routing_sweep

from .runner import REPO, _commit, _machine

MODEL = REPO / "capsedu" / "assets" / "multimnist_capsnet_small.pt"
OUT = REPO / "experiments" / "inference" / "multimnist_shipped_model.json"
ITERATIONS = (1, 2, 3, 5)


def analyse(n: int = 10000, root: Optional[str] = None, subset: bool = False) -> dict:
    """The JSON-ready analyses of the shipped model on the first ``n`` fixed test pairs."""
    model, _ = load_model(MODEL)
    model = model.float().eval()
    batches = pair_test_batches(load_split("mnist", "test", root=root, subset=subset), 500, limit=n)
    results = pair_results(model, batches)
    return {"format": "capsedu-inference-v1", "weights": MODEL.name, "pairs": int(results.found.numel()),
            "error": results.error, "at_least_one_right": at_least_one_right(results),
            "error_by_overlap": error_by_overlap(results),
            "routing_sweep": {str(r): e for r, e in routing_sweep(model, batches, ITERATIONS).items()},
            "trained_with_iterations": model.routing_iterations,
            "commit": _commit(), "machine": _machine("cpu"), "torch": torch.__version__}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.analyse_multimnist",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="test pairs (default: all 10,000)")
    parser.add_argument("--data", default=None, help="data root (default: $CAPSEDU_DATA)")
    parser.add_argument("--subset", action="store_true", help="the shipped MNIST subset (tests)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    try:
        result = analyse(args.n, args.data, args.subset)
    except (CheckpointError, DataError, ValueError) as exc:
        print(f"experiments.analyse_multimnist: error: {exc}", file=sys.stderr)
        return 2
    result["command"] = "python -m experiments.analyse_multimnist" + (f" --n {args.n}" if args.n != 10000 else "")
    atomic_write(args.out, lambda f: f.write((json.dumps(result, indent=1) + "\n").encode()))
    print(f"error {100 * result['error']:.2f}%, at least one digit right {100 * result['at_least_one_right']:.2f}%; "
          + ", ".join(f"r = {r}: {100 * e:.2f}%" for r, e in result["routing_sweep"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
