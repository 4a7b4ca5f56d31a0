"""Is bf16 autocast accuracy-neutral? The MNIST table's recorded float32 runs of one row, trained again with
bf16 autocast and nothing else changed, each seed against its float32 twin and against the float32 seed spread.

The float32 side is the committed record of ``python -m experiments.run mnist_table --scale cpu`` (the small
CapsNet, 3 epochs of the paper's schedule, full MNIST): those runs were trained before capsedu used bf16 on a
CPU, so their ``amp="auto"`` meant float32. This script takes each record's configuration, sets ``amp=True``
and trains it again: same seed, same data order, same augmentation, same initial weights.

    CAPSEDU_DATA=<dir holding MNIST/raw> python benchmarks/bench_bf16_accuracy.py [--seeds 0 1] [--row capsnet-r3-recon]

``--quick`` trains one seed on the shipped subset for one short epoch, to check the script itself.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import _common
from _common import finish, machine_info

import torch  # noqa: E402

from capsedu.fast import cpu_bf16  # noqa: E402
from capsedu.records import load_records  # noqa: E402
from capsedu.train import TrainConfig, fit  # noqa: E402


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--row", default="capsnet-r3-recon", help="the MNIST table row to repeat in bf16")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = p.parse_args(argv)
    _common.setup_threads(args)
    records = [r for r in load_records("mnist_table", "cpu") if r["key"].get("row") == args.row]
    if not records:
        raise SystemExit(f"no recorded mnist_table runs of row {args.row!r}")
    fp32 = {r["seed"]: r for r in records}
    missing = [s for s in args.seeds if s not in fp32]
    if missing:
        raise SystemExit(f"row {args.row!r} has no float32 record for seeds {missing} (recorded: {sorted(fp32)})")
    spread = statistics.stdev(100 * r["test_error"] for r in records) if len(records) > 1 else None
    known = {f.name for f in fields(TrainConfig)}
    support = cpu_bf16()
    print(f"{support.reason}\nfloat32 row {args.row}: " + ", ".join(
        f"seed {s} {100 * r['test_error']:.2f} %" for s, r in sorted(fp32.items()))
        + (f"; spread (std over {len(records)} seeds) {spread:.2f} points" if spread is not None else ""))
    results = []
    with tempfile.TemporaryDirectory(prefix="capsedu-bf16-") as tmp:
        for seed in args.seeds:
            config = TrainConfig(**{k: v for k, v in fp32[seed]["config"].items() if k in known})
            config = replace(config, amp=True, output=str(Path(tmp) / f"seed{seed}"), data=None, device="cpu")
            if args.quick:
                config = replace(config, subset=True, train_limit=256, test_limit=200, epochs=1)
            result = fit(config, progress=False, log=lambda line: print("  " + line, flush=True))
            bf16_error = 100 * (1 - result.test_accuracy)
            fp32_error = 100 * fp32[seed]["test_error"]
            row = {"seed": seed, "fp32_test_error_pct": fp32_error, "bf16_test_error_pct": bf16_error,
                   "difference_points": bf16_error - fp32_error,
                   "bf16_history": result.history, "fp32_record": fp32[seed]["run"],
                   "bf16_train_seconds": sum(h["seconds"] for h in result.history),
                   "fp32_train_seconds": fp32[seed]["train_seconds"]}
            results.append(row)
            print(f"seed {seed}: float32 {fp32_error:.2f} %, bf16 {bf16_error:.2f} % "
                  f"({row['difference_points']:+.2f} points)", flush=True)
    bf16_errors = [r["bf16_test_error_pct"] for r in results]
    largest = max(abs(r["difference_points"]) for r in results)
    verdict = None
    if spread is not None and not args.quick:
        verdict = largest <= spread
        print(f"largest bf16-float32 difference {largest:.2f} points, "
              f"{'within' if verdict else 'outside'} the float32 seed spread of {spread:.2f} points")
    machine = machine_info(torch.device("cpu"))
    payload = {"benchmark": "bf16_accuracy", "quick": args.quick, "machine": machine, "row": args.row,
               "fp32_seeds_recorded": sorted(fp32), "fp32_spread_points": spread,
               "bf16_mean_error_pct": statistics.mean(bf16_errors), "largest_difference_points": largest,
               "within_fp32_spread": verdict, "results": results,
               "note": "float32 times come from the records' machines, bf16 times from this one: not a speed "
                       "comparison (benchmarks/bench_train_step.py is)"}
    return finish(f"bf16_accuracy_cpu{'_quick' if args.quick else ''}", payload, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
