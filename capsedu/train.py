"""Training, as the chapters and the README import it: ``from capsedu.train import train_epoch, evaluate,
make_optimizer, TrainConfig, fit``. The code lives in :mod:`capsedu.training`, one module per job."""
from .training.config import RECIPES, RESUME_ADJUSTABLE, TrainConfig, model_input_shape
from .training.evaluation import CheckpointTest, checkpoint_test_batches, checkpoint_test_transform
from .training.fit import FitResult, fit
from .training.loop import EpochTotals, StepRecord, evaluate, train_epoch
from .training.optim import SCHEDULES, load_optimizer_state, make_optimizer, one_cycle
from .training.resume import data_fingerprint, read_resumable, resume_differences
from .training.run_directory import CHECKPOINT_NAME, HISTORY_NAME
from .training.speed import select_device

__all__ = [
    "RECIPES", "SCHEDULES", "one_cycle", "TrainConfig", "FitResult", "fit", "train_epoch", "evaluate", "select_device",
    "make_optimizer", "load_optimizer_state", "EpochTotals", "StepRecord", "CHECKPOINT_NAME", "HISTORY_NAME",
    "RESUME_ADJUSTABLE", "model_input_shape", "checkpoint_test_transform", "checkpoint_test_batches",
    "CheckpointTest", "read_resumable", "resume_differences", "data_fingerprint",
]
