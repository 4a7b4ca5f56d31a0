"""One training epoch on MNIST, and time to a target test accuracy (99.6% by default) on a GPU.

    python benchmarks/bench_epoch.py                   # GPU: epochs until 99.6% (at most --max-epochs)
                                                       # CPU: --cpu-steps steps, per-epoch time extrapolated
    python benchmarks/bench_epoch.py --quick           # smoke run (a few small steps)

The whole data set lives on the device (``capsedu.data.Batches``) and the paper's augmentation
(random shifts of up to 2 pixels, ``capsedu.data.RandomShift``) runs there too, so no data loader
stands between the GPU and the next batch. The model is the paper's CapsNet (``--preset``), trained
with ``capsedu.train.train_epoch`` (Adam, exponential decay) and the fast options of
``capsedu.fast`` (``--compile``/``--amp``/``--channels-last``, ``auto`` as ``capsedu train`` resolves them:
compile on CUDA only, bf16 autocast on CUDA and on CPUs with native bf16, channels-last everywhere).

On the CPU a full epoch of the paper network takes far too long to measure here, so the script
times ``--cpu-steps`` steps and reports ``epoch_seconds_extrapolated = median step * steps per
epoch``, labelled as such; no time-to-accuracy is reported there.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from typing import Any, Dict, List, Optional

import _common
from _common import machine_info, pick_device, sync, finish

import torch  # noqa: E402

from capsedu import CapsNet  # noqa: E402
from capsedu.data import Batches, RandomShift, load_mnist  # noqa: E402
from capsedu.fast import optimize, resolve_amp  # noqa: E402
from capsedu.train import evaluate, make_optimizer, train_epoch  # noqa: E402


def _auto(text: str):
    return {"auto": "auto", "on": True, "off": False, "true": True, "false": False}[text.lower()]


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--preset", choices=["paper", "small"], default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--target", type=float, default=0.996, help="test accuracy to reach (GPU)")
    p.add_argument("--max-epochs", type=int, default=30)
    p.add_argument("--cpu-steps", type=int, default=None, help="steps timed on the CPU (default 5; quick 2)")
    p.add_argument("--compile", type=_auto, default="auto", help="on/off/auto")
    p.add_argument("--amp", type=_auto, default="auto", help="on/off/auto")
    p.add_argument("--channels-last", type=_auto, default="auto", help="on/off/auto")
    p.add_argument("--data", default=None, help="MNIST root (default $CAPSEDU_DATA; else the shipped subset)")
    p.add_argument("--measure", action="store_true",
                   help="run and time whole epochs on any device (the default on CUDA)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training digits")
    args = p.parse_args(argv)
    _common.setup_threads(args)
    device = pick_device(args.device)
    preset = args.preset or ("small" if args.quick else "paper")
    batch = 8 if args.quick else args.batch_size

    train_split = load_mnist("train", root=args.data, verbose=False)
    test_split = load_mnist("test", root=args.data, verbose=False)
    g = torch.Generator().manual_seed(0)
    train = Batches(train_split, batch, shuffle=True, augment=RandomShift(2), device=device, generator=g,
                    limit=args.train_limit)
    test = Batches(test_split, 500 if not args.quick else 50, device=device, limit=100 if args.quick else None)
    torch.manual_seed(0)
    model = optimize(CapsNet(preset).to(device), compile=args.compile, channels_last=args.channels_last)
    amp = resolve_amp(args.amp, device)
    optimizer, scheduler = make_optimizer(model)
    steps_per_epoch = len(train)
    print(f"CapsNet '{preset}', batch {batch}, {train.num_examples} {train_split.source} MNIST training digits "
          f"({steps_per_epoch} steps/epoch), device {device}, amp {amp}, threads {torch.get_num_threads()}")
    payload: Dict[str, Any] = {"benchmark": "epoch", "quick": args.quick, "machine": machine_info(device),
                               "preset": preset, "batch_size": batch, "data_source": train_split.source,
                               "train_examples": train.num_examples, "steps_per_epoch": steps_per_epoch,
                               "amp": amp, "compile": args.compile, "channels_last": args.channels_last}

    if args.measure or (device.type == "cuda" and not args.quick):
        # warm-up (compile, cuDNN autotune) on every batch shape the run will see, i.e. a full and
        # the trailing partial training batch and a test batch, from a throw-away copy of the state
        # and its own random stream; its time is recorded apart (warmup_s)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        sync(device)
        t_warm = time.perf_counter()
        warm = list(itertools.islice(iter(Batches(train_split, batch, shuffle=True, augment=RandomShift(2), device=device,
                                                  generator=torch.Generator().manual_seed(1))), 2))
        tail = train.num_examples % batch
        if tail:
            warm.append((warm[0][0][:tail], warm[0][1][:tail]))
        train_epoch(model, warm, optimizer, progress=False, amp=amp)
        evaluate(model, itertools.islice(iter(test), 1), amp=amp)
        sync(device)
        payload["warmup_s"] = time.perf_counter() - t_warm
        print(f"  warm-up (compile, autotune): {payload['warmup_s']:.1f}s", flush=True)
        model.load_state_dict(state)
        optimizer, scheduler = make_optimizer(model)
        history, start, reached = [], time.perf_counter(), None
        for epoch in range(1, args.max_epochs + 1):
            sync(device)
            t0 = time.perf_counter()
            stats = train_epoch(model, train, optimizer, scheduler, progress=False, amp=amp)
            sync(device)
            seconds = time.perf_counter() - t0
            acc = evaluate(model, test, amp=amp)["accuracy"]
            history.append({"epoch": epoch, "epoch_seconds": seconds, "train_accuracy": stats["accuracy"],
                            "test_accuracy": acc, "elapsed_s": time.perf_counter() - start})
            print(f"  epoch {epoch}: {seconds:.1f}s, test accuracy {100 * acc:.2f}%", flush=True)
            if acc >= args.target:
                reached = history[-1]["elapsed_s"]
                break
        payload.update({"mode": "measured", "history": history, "epoch_seconds": history[0]["epoch_seconds"],
                        "epoch_seconds_median": sorted(h["epoch_seconds"] for h in history)[len(history) // 2],
                        "target_accuracy": args.target, "time_to_target_s": reached,
                        "best_test_accuracy": max(h["test_accuracy"] for h in history)})
    else:
        steps = args.cpu_steps or (2 if args.quick else 5)
        times: List[float] = []
        it = iter(train)

        def timed(_record) -> None:
            sync(device)
            times.append(time.perf_counter())

        sync(device)
        t0 = time.perf_counter()
        train_epoch(model, itertools.islice(it, steps + 1), optimizer, scheduler, progress=False, amp=amp,
                    on_step=timed)
        step_times = [b - a for a, b in zip([t0] + times[:-1], times)][1:]  # the first step is warm-up
        median = sorted(step_times)[len(step_times) // 2]
        payload.update({"mode": "extrapolated", "timed_steps": len(step_times), "step_times_s": step_times,
                        "step_median_s": median, "images_per_s": batch / median,
                        "epoch_seconds_extrapolated": median * steps_per_epoch,
                        "note": "CPU: per-epoch time = median step time x steps per epoch (extrapolated, not a "
                                "measured epoch); time to 99.6% needs a GPU"})
        print(f"  median step {median * 1000:.0f} ms ({batch / median:.1f} img/s) -> one epoch ~ "
              f"{median * steps_per_epoch / 60:.1f} min (extrapolated from {len(step_times)} steps)")
    default = f"epoch_{preset}_{device.type}{'_quick' if args.quick else ''}"
    return finish(default, payload, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
