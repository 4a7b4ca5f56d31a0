"""Time to accuracy: wall-clock seconds of a whole ``capsedu train`` command until its test accuracy first
reaches each target (default 99.0 % and 99.5 % on the full MNIST test set).

What is timed is what a reader waits for: the command as a new process (Python start-up, imports, data
loading, every training step and every test pass), from launch to the log line that reports each epoch's
test accuracy. The script reads that line as the command prints it, so an epoch's time is when its result
appeared, not a sum of step times.

Each *variant* is a named set of ``capsedu train`` flags (the levers: recipe, schedule, learning rate, epochs,
batch size, bf16 autocast, channels-last, compile). ``--variants`` picks some; the default is the default
command against the old one-epoch paper recipe. Run the variants one after another on a quiet machine: they
share its cores, and the record keeps each run's load average beside it.

    CAPSEDU_DATA=<dir holding MNIST/raw> python benchmarks/bench_time_to_accuracy.py
    python benchmarks/bench_time_to_accuracy.py --variants quick quick-fp32 --out benchmarks/results/x.json

``--quick`` trains on the shipped subset for a few steps (a smoke run of the script, not a measurement).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import _common
from _common import finish, machine_info

import torch  # noqa: E402

#: name -> (flags after ``capsedu train``, what it tests)
VARIANTS: Dict[str, tuple] = {
    "quick": ([], "the default command: the quick recipe (2 epochs, one-cycle to lr 3e-3), bf16 where native"),
    "quick-fp32": (["--no-amp"], "the default command in float32"),
    "paper-1epoch": (["--recipe", "paper"], "the earlier default: 1 epoch of the paper's schedule (lr 1e-3 x 0.96 "
                                            "per 2,000 steps)"),
    "paper-1epoch-fp32": (["--recipe", "paper", "--no-amp"], "the earlier default as it ran before bf16"),
    "quick-3epochs": (["--epochs", "3"], "one-cycle over 3 epochs"),
    "onecycle-1epoch": (["--epochs", "1"], "one-cycle over 1 epoch (one test pass)"),
    "onecycle-1epoch-lr5e-3": (["--epochs", "1", "--lr", "5e-3"], "one-cycle over 1 epoch, peak lr 5e-3"),
    "onecycle-1epoch-lr5e-3-seed1": (["--epochs", "1", "--lr", "5e-3", "--seed", "1"],
                                    "one-cycle over 1 epoch, peak lr 5e-3, seed 1"),
    "onecycle-1epoch-lr5e-3-seed2": (["--epochs", "1", "--lr", "5e-3", "--seed", "2"],
                                    "one-cycle over 1 epoch, peak lr 5e-3, seed 2"),
    "onecycle-1epoch-lr7e-3": (["--epochs", "1", "--lr", "7e-3"], "one-cycle over 1 epoch, peak lr 7e-3"),
    "onecycle-1epoch-b64": (["--epochs", "1", "--batch-size", "64", "--lr", "3e-3"],
                            "one-cycle over 1 epoch, batch 64, peak lr 3e-3"),
    "onecycle-1epoch-b256": (["--epochs", "1", "--batch-size", "256", "--lr", "4e-3"],
                             "one-cycle over 1 epoch, batch 256, peak lr 4e-3"),
    "onecycle-lr2e-3": (["--lr", "2e-3"], "the quick recipe with a lower peak learning rate"),
    "onecycle-lr5e-3": (["--lr", "5e-3"], "the quick recipe with a higher peak learning rate"),
    "onecycle-b256": (["--batch-size", "256", "--lr", "4e-3"], "batch 256 (half the steps), peak lr 4e-3"),
    "onecycle-b64": (["--batch-size", "64", "--lr", "2e-3"], "batch 64 (twice the steps), peak lr 2e-3"),
    "long-7epochs": (["--epochs", "7"], "one-cycle over 7 epochs, for 99.5 %"),
    "long-8epochs": (["--epochs", "8"], "one-cycle over 8 epochs, for 99.5 %"),
    "long-10epochs": (["--epochs", "10"], "one-cycle over 10 epochs, for 99.5 %"),
    "quick-no-channels-last": (["--no-channels-last"], "the quick recipe with NCHW convolutions"),
    "quick-compile": (["--compile"], "the quick recipe under torch.compile (its build time counts)"),
}

EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): .*test acc ([0-9.]+)%")


def run_variant(name: str, flags: Sequence[str], targets: Sequence[float], extra: Sequence[str],
                env: Dict[str, str], workdir: Path) -> Dict[str, Any]:
    """Launch ``capsedu train`` once; the seconds from launch at which each epoch's test accuracy was printed."""
    cmd = [sys.executable, "-m", "capsedu.cli", "train", *flags, *extra, "--no-progress",
           "--output", str(workdir / name), "--overwrite"]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=_common.ROOT)
    epochs: List[Dict[str, Any]] = []
    lines: List[str] = []
    for line in proc.stdout:
        seconds = time.perf_counter() - start
        lines.append(line.rstrip())
        match = EPOCH_LINE.match(line)
        if match:
            epochs.append({"epoch": int(match.group(1)), "wall_s": round(seconds, 2),
                           "test_accuracy": float(match.group(3)) / 100})
            print(f"  {name}: epoch {match.group(1)}/{match.group(2)} test {match.group(3)}% at {seconds:.1f} s",
                  flush=True)
    returncode = proc.wait()
    total = time.perf_counter() - start
    if returncode != 0:
        raise SystemExit(f"{name}: capsedu train failed (exit {returncode}):\n" + "\n".join(lines[-10:]))
    reached = {}
    for target in targets:
        first = next((e for e in epochs if e["test_accuracy"] >= target - 1e-12), None)
        reached[f"{100 * target:.1f}"] = None if first is None else {"wall_s": first["wall_s"], "epoch": first["epoch"]}
    return {"variant": name, "flags": list(flags), "command": " ".join(["capsedu train", *flags, *extra]),
            "epochs": epochs, "total_wall_s": round(total, 2), "final_test_accuracy": epochs[-1]["test_accuracy"],
            "time_to": reached, "load_average_1m_before": round(load_before, 2),
            "log_first_lines": lines[:3]}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["quick", "paper-1epoch-fp32"])
    p.add_argument("--targets", nargs="+", type=float, default=[0.99, 0.995], help="test accuracies, e.g. 0.99")
    args = p.parse_args(argv)
    env = dict(os.environ)
    extra: List[str] = []
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if args.device != "auto":
        extra += ["--device", args.device]
    if args.quick:  # a smoke run of the script on the shipped subset
        extra += ["--subset", "--train-limit", "256", "--test-limit", "200", "--epochs", "1"]
    elif "CAPSEDU_DATA" not in env:
        print("note: CAPSEDU_DATA is not set; capsedu looks for MNIST in ~/.cache/capsedu (the log's first line "
              "says which data it used)")
    results = []
    with tempfile.TemporaryDirectory(prefix="capsedu-tta-") as tmp:
        for name in args.variants:
            flags, _ = VARIANTS[name]
            print(f"{name}: capsedu train {' '.join(flags)}", flush=True)
            row = run_variant(name, flags, args.targets, extra, env, Path(tmp))
            row["description"] = VARIANTS[name][1]
            results.append(row)
            hits = ", ".join(f"{t} %: " + (f"{v['wall_s']:.0f} s (epoch {v['epoch']})" if v else "not reached")
                             for t, v in row["time_to"].items())
            print(f"  {name}: {100 * row['final_test_accuracy']:.2f} % after {row['total_wall_s']:.0f} s; {hits}",
                  flush=True)
    machine = machine_info(torch.device("cpu"))
    if args.threads is not None:
        machine["torch_threads"] = args.threads
    payload = {"benchmark": "time_to_accuracy", "quick": args.quick, "machine": machine,
               "targets": args.targets, "data": os.environ.get("CAPSEDU_DATA") and "CAPSEDU_DATA",
               "results": results}
    return finish("time_to_accuracy_cpu" + ("_quick" if args.quick else ""), payload, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
