"""Training: everything between a model and a finished run, one module per job.

* :mod:`~capsedu.training.loop`: the one training loop (:func:`train_epoch`) and evaluator (:func:`evaluate`);
* :mod:`~capsedu.training.objectives`: what a step minimises (thin wrappers over :mod:`capsedu.losses`);
* :mod:`~capsedu.training.optim`: Adam and its learning-rate schedules;
* :mod:`~capsedu.training.config`: :class:`TrainConfig`, what defines a run, and its named recipes;
* :mod:`~capsedu.training.fit`: :func:`fit`, a whole run step by step, resumable bit for bit;
* :mod:`~capsedu.training.resume`: what a resumed run may change, and the data it must find;
* :mod:`~capsedu.training.checkpoint`: atomic, checksummed ``weights_only`` checkpoints;
* :mod:`~capsedu.training.run_directory`: the locked, pre-checked output directory;
* :mod:`~capsedu.training.interrupts`: Ctrl-C and SIGTERM deferred to a safe point;
* :mod:`~capsedu.training.speed`: the device, channels-last, bf16 autocast, ``torch.compile``;
* :mod:`~capsedu.training.distributed`: data-parallel training under torchrun;
* :mod:`~capsedu.training.evaluation`: the test set of a checkpoint's run;
* :mod:`~capsedu.training.export`: float16 exports with their measured, checksummed records.

Interruptions: Ctrl-C or SIGTERM is deferred to the end of the current step (or test batch), where a
checkpoint is written, so ``--resume`` continues exactly.
"""
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .config import RECIPES, RESUME_ADJUSTABLE, TrainConfig
from .fit import FitResult, fit
from .loop import EpochTotals, StepRecord, evaluate, train_epoch
from .objectives import CrossEntropy, MarginLoss, PairCrossEntropy, PairMarginLoss, make_objective
from .optim import SCHEDULES, make_optimizer
from .run_directory import RunDirectory, RunDirectoryError
from .speed import select_device

__all__ = [
    "train_epoch", "evaluate", "EpochTotals", "StepRecord", "TrainConfig", "RECIPES", "RESUME_ADJUSTABLE", "fit",
    "FitResult", "make_optimizer", "SCHEDULES", "MarginLoss", "CrossEntropy", "PairMarginLoss", "PairCrossEntropy",
    "make_objective", "CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "RunDirectory",
    "RunDirectoryError", "select_device",
]
