"""``python -m experiments.run EXPERIMENT [--scale cpu] [--seeds 0 1 2] [--only RUN ...]``

Trains every run of an experiment that has no record yet, resuming interrupted ones, and writes one
JSON record per run to ``experiments/results/EXPERIMENT/SCALE/RUN.json``. Safe to stop at any moment
(Ctrl-C, ``kill``) and to start again.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from . import affine_robustness, data_efficiency, mnist_table, multimnist, routing_comparison, routing_multimnist
from .runner import REPO, execute, select

#: every experiment this command runs, each tabulated by ``experiments.summary`` (and in the README): chapter 7's,
#: and chapter 10's ``routing_comparison`` and ``routing_multimnist`` (which the chapter also reads through
#: ``capsedu.teaching.routing_after_2017``)
EXPERIMENTS = {m.NAME: m for m in (mnist_table, data_efficiency, affine_robustness, multimnist, routing_comparison,
                                   routing_multimnist)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--scale", choices=["tiny", "cpu", "paper"], default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the experiment's")
    parser.add_argument("--only", nargs="+", default=None, metavar="RUN",
                        help="run only these runs (shell wildcards allowed: 'capsnet-n100-*')")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--results", default=str(REPO / "experiments" / "results"))
    parser.add_argument("--runs", default=str(REPO / "runs" / "experiments"), help="checkpoints of unfinished runs")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    module = EXPERIMENTS[args.experiment]
    try:  # an experiment without the scale asked for, or an --only that matches nothing
        selected = module.runs(args.scale) if args.seeds is None else module.runs(args.scale, seeds=args.seeds)
        selected = select(selected, args.only)
    except ValueError as exc:
        parser.error(str(exc))
    from dataclasses import replace

    from capsedu.checkpoint import CheckpointError
    from capsedu.data import DataError

    try:
        for run in selected:
            run.config = replace(run.config, device=args.device)
            execute(run, Path(args.results), Path(args.runs), progress=args.progress)
    except (CheckpointError, DataError, ValueError, FloatingPointError) as exc:
        print(f"experiments.run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
