"""``python -m experiments.em_first_steps [--lr 1e-3 1e-4] [--steps 4] [--routing em]``: the small CapsNet with EM
routing, its first Adam steps on one fixed batch, and what EM routing's activation is made of at each step.

EM routing's class score is the parent's activation ``a_j = logistic(lambda (beta_a - sum_h cost^h))`` with
``cost^h = (beta_u + log sigma_j^h) sum_i R_ij a_i`` (:mod:`capsedu.routings.em`); the CapsNet reads it as the
capsule's length, which the margin loss scores. Per step the command prints the loss, the mean activation of the
true class and of the nine others, the mean length of the primary capsules (the children's ``a_i``), each parent's
mass ``sum_i R_ij a_i``, ``sum_h log sigma_j^h`` and the logistic's argument, all averaged over the batch and the
parents, after the last routing iteration; and how far the primary capsules turned (the mean cosine between each
capsule before and after the step). Seed 0, one torch thread, the first ``--examples`` digits of the shipped subset.
``--routing dynamic`` (or any other procedure) prints the same but EM's internals, for comparison.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from capsedu.teaching.routing_after_2017 import em_first_steps


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.em_first_steps", description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 1e-4])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--routing", default="em", help="the CapsNet's routing procedure [em]")
    args = parser.parse_args(argv)
    for lr in args.lr:
        print(f"{args.routing} routing, Adam, lr {lr:g}:")
        for row in em_first_steps(lr, args.steps, args.examples, routing=args.routing):
            em = (f"  mass {row['mass']:.2f}  sum log sigma {row['sum_log_sigma']:.1f}  argument {row['argument']:.2f}"
                  if "mass" in row else "")
            turn = f"  turn {row['turn']:+.2f}" if "turn" in row else ""
            print(f"  step {row['step']}: loss {row['loss']:.3f}  accuracy {row['accuracy']:.2f}  a_true "
                  f"{row['a_true']:.3f}  a_others {row['a_others']:.3f}  |u_i| {row['child_length']:.3f}{em}{turn}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
