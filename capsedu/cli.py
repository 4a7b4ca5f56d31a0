"""Command line: ``capsedu train``, ``capsedu evaluate CHECKPOINT``, ``capsedu make-subset``,
``capsedu export-pretrained CHECKPOINT``.

The defaults run on a 2-core laptop without GPU or internet: ``capsedu train`` trains the small
CapsNet for one epoch (a few minutes) and ends with ``test accuracy: NN.NN%``.

Data-parallel training: ``torchrun --nproc_per_node=N -m capsedu.cli train ...`` (see
:mod:`capsedu.distributed`); ``--compile``/``--amp``/``--channels-last`` (see :mod:`capsedu.fast`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

__all__ = ["main", "build_parser"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig

    d = TrainConfig()
    parser = argparse.ArgumentParser(prog="capsedu", description="Train and evaluate Capsule Networks on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a CapsNet (or the baseline CNN) on MNIST",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--model", choices=["capsnet", "baseline"], default=d.model)
    t.add_argument("--preset", choices=["small", "paper"], default=d.preset,
                   help="CapsNet size: 'small' for CPUs, 'paper' for the 8.2M-parameter network of the paper")
    t.add_argument("--epochs", type=_positive, default=d.epochs)
    t.add_argument("--batch-size", type=_positive, default=d.batch_size)
    t.add_argument("--lr", type=float, default=d.lr, help="initial Adam learning rate")
    t.add_argument("--routing-iterations", type=_positive, default=d.routing_iterations)
    t.add_argument("--routing-gradient", choices=["all", "last"], default=d.routing_gradient,
                   help="back-propagate through every routing iteration or only the last")
    t.add_argument("--no-reconstruction", action="store_true", help="train without the decoder")
    t.add_argument("--augment-shift", type=int, default=d.augment_shift, help="max random shift in pixels (0: none)")
    t.add_argument("--data", default=None, help="MNIST root directory (default: $CAPSEDU_DATA, else ~/.cache/capsedu)")
    t.add_argument("--subset", action="store_true", help="use the small MNIST subset shipped with capsedu")
    t.add_argument("--train-limit", type=_positive, default=None, help="train on the first N digits only")
    t.add_argument("--test-limit", type=_positive, default=None, help="test on the first N digits only")
    t.add_argument("--device", default=d.device, help="'auto' (CUDA if present), 'cpu', 'cuda', 'cuda:1', ...")
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="also checkpoint every N steps (0: at epoch ends only)")
    t.add_argument("--output", default=d.output, help="directory for last.pt and history.json")
    t.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="continue an interrupted run (default checkpoint: OUTPUT/last.pt)")
    t.add_argument("--no-progress", action="store_true", help="hide progress bars")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default="auto",
                   help="torch.compile the model (default: on CUDA only; falls back to eager with a warning)")
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default="auto",
                   help="bf16 autocast on CUDA, routing kept in float32 (default: on CUDA with bf16; "
                        "a no-op with a message on the CPU)")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default="auto",
                   help="NHWC convolutions (default: on; measured faster on CPUs and GPUs)")

    e = sub.add_parser("evaluate", help="test accuracy of a checkpoint on the MNIST test set")
    e.add_argument("checkpoint")
    e.add_argument("--data", default=None)
    e.add_argument("--subset", action="store_true")
    e.add_argument("--test-limit", type=_positive, default=None)
    e.add_argument("--routing-iterations", type=_positive, default=None,
                   help="route with this many iterations instead of the trained value")
    e.add_argument("--batch-size", type=_positive, default=500)
    e.add_argument("--device", default="auto")

    s = sub.add_parser("make-subset", help="rebuild the MNIST subset shipped in capsedu/assets from the full data")
    s.add_argument("--data", default=None, help="directory holding the full MNIST (torchvision layout)")
    s.add_argument("--n-train", type=_positive, default=5000)
    s.add_argument("--n-test", type=_positive, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None, help="output .npz (default: the packaged subset file)")
    x = sub.add_parser("export-pretrained", help="strip a training checkpoint to float16 weights for the book")
    x.add_argument("checkpoint")
    x.add_argument("--out", default=None, help="output file (default: the packaged pretrained weights)")
    return parser


def _export(args: argparse.Namespace) -> int:
    from .pretrained import PRETRAINED_PATH, export_pretrained

    out = export_pretrained(args.checkpoint, args.out or PRETRAINED_PATH)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import CHECKPOINT_NAME, TrainConfig, fit

    config = TrainConfig(
        model=args.model, preset=args.preset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        routing_iterations=args.routing_iterations, routing_gradient=args.routing_gradient,
        reconstruction=not args.no_reconstruction, augment_shift=args.augment_shift, seed=args.seed,
        device=args.device, data=args.data, subset=True if args.subset else None,
        train_limit=args.train_limit, test_limit=args.test_limit,
        checkpoint_every=args.checkpoint_every, output=args.output,
        compile=args.compile, amp=args.amp, channels_last=args.channels_last,
    )
    resume = None
    if args.resume is not None:
        resume = Path(args.resume) if args.resume else Path(args.output) / CHECKPOINT_NAME
    start = time.perf_counter()
    result = fit(config, resume=resume, progress=not args.no_progress)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    print(f"trained in {time.perf_counter() - start:.0f}s on {result.data_source} MNIST; "
          f"checkpoint: {result.checkpoint}")
    print(f"test accuracy: {100 * result.test_accuracy:.2f}%")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .data import Batches, load_mnist
    from .models import CapsNet
    from .train import evaluate, select_device

    device = select_device(args.device)
    model, state = load_model(args.checkpoint, map_location=device)
    model.to(device)
    if args.routing_iterations is not None:
        if not isinstance(model, CapsNet):
            raise ValueError("--routing-iterations applies to CapsNet checkpoints only")
        model.routing_iterations = args.routing_iterations
    split = load_mnist("test", root=args.data, subset=True if args.subset else None)
    batches = Batches(split, args.batch_size, device=device, limit=args.test_limit)
    metrics = evaluate(model, batches, progress=True)
    n = len(split) if args.test_limit is None else min(len(split), args.test_limit)
    print(f"{args.checkpoint}: error {metrics['error'] * 100:.2f}%, loss {metrics['loss']:.4f} "
          f"on {n} {split.source} MNIST test digits, {model.routing_iterations if isinstance(model, CapsNet) else 0} "
          f"routing iterations")
    print(f"test accuracy: {100 * metrics['accuracy']:.2f}%")
    return 0


def _make_subset(args: argparse.Namespace) -> int:
    from .data import SUBSET_PATH, build_subset

    out = build_subset(out_path=args.out or SUBSET_PATH, root=args.data, n_train=args.n_train,
                       n_test=args.n_test, seed=args.seed)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from .checkpoint import CheckpointError
    from .data import DataError

    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "evaluate": _evaluate, "make-subset": _make_subset,
                "export-pretrained": _export}
    try:
        return handlers[args.command](args)
    except (CheckpointError, DataError, ValueError) as exc:
        print(f"capsedu {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
