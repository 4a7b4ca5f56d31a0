"""Command line: ``capsedu train``, ``capsedu evaluate CHECKPOINT``, ``capsedu make-subset``,
``capsedu export-pretrained CHECKPOINT``.

The defaults run on a 2-core laptop without GPU or internet: ``capsedu train`` trains the small
CapsNet with the quick recipe (two epochs under a one-cycle schedule, a few minutes, about 99.2 % on the full
MNIST) and ends with ``test accuracy: NN.NN%``; ``--recipe paper`` starts from the paper's schedule instead.

Data-parallel training: ``torchrun --nproc_per_node=N -m capsedu.cli train ...`` (see
:mod:`capsedu.distributed`); ``--compile``/``--amp``/``--channels-last`` (see :mod:`capsedu.fast`).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

__all__ = ["main", "build_parser"]


def _integer(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


_positive = _integer(1)


def _iterations(text: str) -> int:
    from .routing import check_iterations

    try:
        return check_iterations(_positive(text), "routing iterations")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .data import AUGMENTATIONS, DATASETS, PAIR_DATASETS
    from .models import BASELINE_PRESETS, MODELS, PRESETS
    from .efficient_capsnet import EFFICIENT_PRESETS  # noqa: I001  (after models, which it subclasses)
    from .routings import ROUTINGS
    from .training.config import MODEL_ROUTING, RECIPES, TrainConfig
    from .training.objectives import OBJECTIVES
    from .training.optim import SCHEDULES

    d = TrainConfig(**RECIPES["quick"])  # the defaults a bare `capsedu train` uses
    parser = argparse.ArgumentParser(prog="capsedu", description="Train and evaluate Capsule Networks.")
    sub = parser.add_subparsers(dest="command", required=True)

    # Every train option defaults to None so that a resumed run knows which flags were given: those
    # override the checkpoint's settings (or are refused), the rest come from the checkpoint.
    t = sub.add_parser("train", help="train a CapsNet (or the baseline CNN)",
                       description="Train a model. Defaults are shown in brackets; with --resume, options not "
                                   "given are taken from the checkpoint.")
    t.add_argument("--model", choices=sorted(MODELS), default=None,
                   help=f"'capsnet' (Sabour et al.), 'baseline' (section 5's CNN) or 'efficient-capsnet' (Mazzia et "
                        f"al. 2021, 161,824 parameters without decoder) [{d.model}]")
    t.add_argument("--preset", choices=["auto", *sorted(set(PRESETS) | set(BASELINE_PRESETS) | set(EFFICIENT_PRESETS))],
                   default=None,
                   help="model size: 'small' for CPUs, 'paper' for the paper's networks (CapsNet 8.2M parameters, "
                        "baseline 35.4M), 'cifar10', 'smallnorb', 'svhn' for section 7's CapsNets, 'affine-small' "
                        "for a baseline matching the small CapsNet's parameters on a 40x40 canvas, 'mnist' for "
                        "Efficient-CapsNet's; 'auto': the data set's ('small' for MNIST, its paper network for the "
                        f"others; 'mnist' for efficient-capsnet) [{d.preset}]")
    t.add_argument("--dataset", choices=sorted([*DATASETS, *PAIR_DATASETS]), default=None,
                   help=f"mnist, cifar10, svhn or smallnorb (the README's Data section says where the files go), or "
                        f"multimnist: fresh pairs of overlapping MNIST digits every epoch, tested on 10,000 fixed "
                        f"pairs (section 6) [{d.dataset}]")
    t.add_argument("--epochs", type=_positive, default=None, help=f"[{d.epochs}]")
    t.add_argument("--batch-size", type=_positive, default=None, help=f"[{d.batch_size}]")
    t.add_argument("--lr", type=_number, default=None, help=f"initial Adam learning rate [{d.lr}]")
    t.add_argument("--lr-decay", type=_number, default=None,
                   help=f"the learning rate is multiplied by this every --decay-steps steps, smoothly [{d.lr_decay}]")
    t.add_argument("--decay-steps", type=_positive, default=None, help=f"[{d.decay_steps}]")
    t.add_argument("--schedule", choices=list(SCHEDULES), default=None,
                   help="learning-rate schedule: 'exponential' (the paper's: --lr x --lr-decay every --decay-steps) or "
                        "'one-cycle' (warm-up to --lr over the first tenth of the run, then cosine decay to ~0) "
                        "[the recipe's]")
    t.add_argument("--recipe", choices=sorted(RECIPES), default="quick",
                   help="starting settings that the flags above override: 'quick' " + _describe_recipe("quick")
                        + "; 'paper' " + _describe_recipe("paper") + " [quick]")
    t.add_argument("--routing-iterations", type=_iterations, default=None, help=f"[{d.routing_iterations}]")
    t.add_argument("--routing", choices=["auto", *sorted(ROUTINGS)], default=None,
                   help="the capsule layer's routing: " + "; ".join(f"'{name}' {what}" for name, what in _ROUTING_HELP.items())
                        + "; 'auto' the model's own (" + ", ".join(f"{r} for {m}" for m, r in MODEL_ROUTING.items())
                        + f") [{d.routing}]")
    t.add_argument("--routing-gradient", choices=["all", "last"], default=None,
                   help=f"back-propagate through every routing iteration or only the last [{d.routing_gradient}]")
    t.add_argument("--no-reconstruction", dest="reconstruction", action="store_const", const=False, default=None,
                   help="train a CapsNet without the decoder")
    t.add_argument("--loss", choices=["auto", *sorted(OBJECTIVES)], default=None,
                   help=f"'auto': margin (+ reconstruction) for a CapsNet, cross-entropy for the baseline; on multimnist "
                        f"pair-margin and pair-bce (a sigmoid per class) [{d.loss}]")
    t.add_argument("--reconstruction-weight", type=_number, default=None,
                   help=f"weight of the summed squared reconstruction error [{d.reconstruction_weight}]")
    t.add_argument("--augment-shift", type=_integer(0), default=None,
                   help=f"max random shift in pixels for shift augmentation, 0 for none [{d.augment_shift}]")
    t.add_argument("--augment", choices=list(AUGMENTATIONS), default=None,
                   help="'auto': the paper's recipe for the data set (MNIST: shifts; CIFAR-10: random 24x24 crops, "
                        "central crop for testing; smallNORB: the same with 32x32; SVHN: none); 'shift', 'crop', "
                        f"'place' (random position on --canvas-size, section 5.2) or 'none' [{d.augment}]")
    t.add_argument("--crop-size", type=_positive, default=None,
                   help="crop window for crop augmentation (training: random position, test: centre) "
                        "[the data set's: 24 for cifar10, 32 for smallnorb]")
    t.add_argument("--canvas-size", type=_positive, default=None,
                   help="canvas for --augment place: images at random positions on it for training, centred "
                        "for testing (section 5.2 uses 40)")
    t.add_argument("--data", default=None, help="data root directory [$CAPSEDU_DATA, else ~/.cache/capsedu]")
    t.add_argument("--subset", action="store_const", const=True, default=None,
                   help="use the small MNIST subset shipped with capsedu")
    t.add_argument("--train-limit", type=_positive, default=None, help="train on the first N examples only")
    t.add_argument("--train-repeat", type=_positive, default=None,
                   help=f"pass over the training examples N times per epoch (small --train-limit sets; multimnist: "
                        f"N fresh pairs per training digit) [{d.train_repeat}]")
    t.add_argument("--test-limit", type=_positive, default=None, help="test on the first N examples only")
    t.add_argument("--device", default=None, help="'auto' (CUDA if present), 'cpu', 'cuda', 'cuda:1' [auto]")
    t.add_argument("--seed", type=_integer(0), default=None, help=f"[{d.seed}]")
    t.add_argument("--checkpoint-every", type=_integer(0), default=None,
                   help="also checkpoint every N steps, 0 for epoch ends only "
                        f"(Ctrl-C and SIGTERM always checkpoint) [{d.checkpoint_every}]")
    t.add_argument("--output", default=None, help=f"directory for last.pt and history.json [{d.output}]")
    t.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="continue an interrupted run (default checkpoint: OUTPUT/last.pt)")
    t.add_argument("--overwrite", action="store_true", help="start over in an --output that already holds a run")
    t.add_argument("--no-progress", action="store_true", help="hide progress bars")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on CUDA only; falls back to eager with a warning)")
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast, routing and squash kept in float32 (default: on CUDA GPUs with bf16 and on "
                        "CPUs with native bf16 units, AVX-512 BF16 or AMX; the run's first lines say which)")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC convolutions (default: on; measured faster on CPUs and GPUs)")

    e = sub.add_parser("evaluate", help="test accuracy of a checkpoint on its data set's test split")
    e.add_argument("checkpoint")
    e.add_argument("--data", default=None)
    e.add_argument("--subset", action="store_true")
    e.add_argument("--test-limit", type=_positive, default=None)
    e.add_argument("--routing-iterations", type=_iterations, default=None,
                   help="route with this many iterations instead of the trained value")
    e.add_argument("--batch-size", type=_positive, default=500)
    e.add_argument("--device", default="auto")

    s = sub.add_parser("make-subset", help="rebuild the MNIST subset shipped in capsedu/assets from the full data")
    s.add_argument("--data", default=None, help="directory holding the full MNIST (torchvision layout)")
    s.add_argument("--n-train", type=_positive, default=5000)
    s.add_argument("--n-test", type=_positive, default=1000)
    s.add_argument("--seed", type=_integer(0), default=0)
    _package_target(s, "output .npz", "the shipped subset every offline run uses")
    x = sub.add_parser("export-pretrained", help="strip a training checkpoint to float16 weights for the book")
    x.add_argument("checkpoint")
    _package_target(x, "output .pt (its record is written beside it as .json)", "the shipped small CapsNet")
    x.add_argument("--command-line", default=None, help="the command that trained the checkpoint (for the record)")
    x.add_argument("--data", default=None, help="data root for measuring the exported weights")
    return parser


def _package_target(parser: argparse.ArgumentParser, what: str, packaged: str) -> None:
    """``--out FILE`` or ``--into-package``: the package's own files are replaced only when asked by name."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", default=None, help=what)
    where.add_argument("--into-package", action="store_true", help=f"replace {packaged} inside the package")


#: One line per routing of :data:`capsedu.routings.ROUTINGS`, for ``capsedu train --help``.
_ROUTING_HELP = {
    "dynamic": "routing by agreement, Sabour et al. 2017, Procedure 1 (--routing-iterations r)",
    "uniform": "no routing, every coupling 1/n_out",
    "self-attention": "Efficient-CapsNet's one-pass self-attention routing, Mazzia et al. 2021",
    "inverted-attention": "inverted dot-product attention, Tsai et al. 2020 (--routing-iterations r)",
    "em": "EM routing, Hinton, Sabour & Frosst 2018 (--routing-iterations r)",
}

#: ``capsedu train`` options that are not training settings
_NOT_SETTINGS = ("command", "resume", "overwrite", "no_progress", "recipe")


def _describe_recipe(name: str) -> str:
    from .training.config import RECIPES

    settings = RECIPES[name]
    if not settings:
        return "(the paper's schedule, 1 epoch)"
    return "(" + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in settings.items()) + ")"


def _export(args: argparse.Namespace) -> int:
    from .training.export import PACKAGED_MODEL, export_model, export_record, record_path

    out = export_model(args.checkpoint, PACKAGED_MODEL if args.into_package else args.out,
                       command=args.command_line or "", root=args.data)
    record = export_record(out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {record_path(out).name}")
    dataset = record["train_config"].get("dataset", "mnist")
    for name, measured in record["test_accuracy_shipped"].items():
        if measured:
            print(f"exported weights on the {name} {dataset} test set: {100 * measured['accuracy']:.2f}% "
                  f"of {measured['examples']} test examples")
    return 0


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .training.config import RECIPES, TrainConfig
    from .training.fit import fit
    from .training.resume import read_resumable
    from .training.run_directory import CHECKPOINT_NAME

    given = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS and v is not None}
    resume = None
    if args.resume is not None:
        output = given.get("output", TrainConfig().output)
        resume = Path(args.resume) if args.resume else Path(output) / CHECKPOINT_NAME
        _, saved = read_resumable(resume)
        # the checkpoint's settings, then the flags given here; fit() refuses the ones that may not change
        config = replace(saved, **given)
        if "output" not in given and args.resume:
            config = replace(config, output=str(Path(args.resume).parent))
    else:
        config = TrainConfig(**{**RECIPES[args.recipe], **given})
    start = time.perf_counter()
    result = fit(config, resume=resume, overwrite=args.overwrite, progress=not args.no_progress)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    print(f"trained in {time.perf_counter() - start:.0f}s on {result.data_source} {config.dataset}; "
          f"checkpoint: {result.checkpoint}")
    print(f"test accuracy: {100 * result.test_accuracy:.2f}%")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .models import CapsNet
    from .training.checkpoint import load_model
    from .training.evaluation import checkpoint_test_batches
    from .training.loop import evaluate
    from .training.speed import select_device

    device = select_device(args.device)
    model, state = load_model(args.checkpoint, map_location=device)
    model.to(device)
    if args.routing_iterations is not None:
        if not isinstance(model, CapsNet):
            raise ValueError("--routing-iterations applies to CapsNet checkpoints only")
        model.routing_iterations = args.routing_iterations
    train_config = state.get("train_config", {})
    dataset = train_config.get("dataset", "mnist")
    batches, objective, split, shape = checkpoint_test_batches(
        train_config, root=args.data, subset=True if args.subset else None, batch_size=args.batch_size,
        device=device, limit=args.test_limit)
    expected = (model.config.in_channels, model.config.image_size, model.config.image_size)
    if tuple(shape) != expected:
        raise ValueError(f"{args.checkpoint} takes {'x'.join(map(str, expected))} images, but the {dataset} test "
                         f"images are {'x'.join(map(str, shape))} after the run's test transform")
    metrics = evaluate(model, batches, objective, progress=True)
    iterations = model.routing_iterations if isinstance(model, CapsNet) else 0
    print(f"{args.checkpoint}: error {metrics['error'] * 100:.2f}%, loss {metrics['loss']:.4f} "
          f"on {metrics['examples']} {split.source} {dataset} test examples, {iterations} routing iterations")
    print(f"test accuracy: {100 * metrics['accuracy']:.2f}%")
    return 0


def _make_subset(args: argparse.Namespace) -> int:
    from .data import SUBSET_PATH, build_subset

    out = build_subset(out_path=SUBSET_PATH if args.into_package else args.out, root=args.data, n_train=args.n_train,
                       n_test=args.n_test, seed=args.seed)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; a user's mistake ends in one line on stderr and exit status 2, never a traceback.

    Ctrl-C ends with status 130 and one line, wherever it lands (while torch is still loading, too).
    """
    command = "capsedu"
    interrupted = []

    def on_sigint(signum, frame):  # Python's own behaviour, remembered: a library may swallow the exception
        interrupted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        from .data import DataError
        from .training.checkpoint import CheckpointError

        if interrupted:  # Ctrl-C landed inside an import whose library caught the KeyboardInterrupt
            raise KeyboardInterrupt
        args = build_parser().parse_args(argv)
        command = f"capsedu {args.command}"
        handlers = {"train": _train, "evaluate": _evaluate, "make-subset": _make_subset,
                    "export-pretrained": _export}
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except (CheckpointError, DataError, ValueError, FloatingPointError) as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permission denied, ... while reading or writing files
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"{command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
