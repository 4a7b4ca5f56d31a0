"""What defines a training run: :class:`TrainConfig` (stored in every checkpoint), its named recipes, and the
settings a resumed run may change."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

import torch.nn as nn

from ..checks import check_int, check_number
from ..models import BASELINE_PRESETS, MODELS, PRESETS
from ..efficient_capsnet import EFFICIENT_PRESETS  # noqa: I001  (after models, which it subclasses)
from ..routing import GRADIENT_MODES, check_iterations
from ..routings import check_routing
from .objectives import OBJECTIVES, PAIR_OBJECTIVES, Objective, make_objective
from .optim import SCHEDULES

__all__ = ["TrainConfig", "RECIPES", "RESUME_ADJUSTABLE", "CAPSULE_MODELS", "MODEL_ROUTING", "model_input_shape"]

#: The models of :data:`capsedu.models.MODELS` that return capsules (a ``CapsNetOutput``): they train with the margin
#: loss and route with ``TrainConfig.routing``; the others return logits.
CAPSULE_MODELS = ("capsnet", "efficient-capsnet")

#: What ``TrainConfig(routing="auto")`` stands for: each capsule model's own paper's routing. A model without
#: capsules ignores the setting; it resolves to ``"dynamic"``, the field's value before ``"auto"`` existed, so its
#: records and checkpoints are stored as they always were.
MODEL_ROUTING = {"capsnet": "dynamic", "efficient-capsnet": "self-attention"}


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints)."""

    model: str = "capsnet"               # a name in capsedu.models.MODELS: "capsnet", "baseline", "efficient-capsnet"
    preset: str = "auto"                 # model size: "small" (CPU) or "paper" (CapsNet and baseline alike), a data
                                         # set's CapsNet ("cifar10", "smallnorb", "svhn"), Efficient-CapsNet's
                                         # "mnist", or "auto": the data set's (capsedu.data.recipes: "small" for
                                         # MNIST; "small" for the baseline; "mnist" for Efficient-CapsNet)
    dataset: str = "mnist"               # a name in capsedu.data.DATASETS, or "multimnist" (capsedu.data.PAIR_DATASETS:
                                         # fresh pairs of MNIST training digits every epoch, section 6)
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 0.96               # paper: lr * 0.96 ** (step / 2000)
    decay_steps: int = 2000
    schedule: str = "exponential"        # "exponential" (the paper's, above) or "one-cycle" (warm-up, cosine to ~0
                                         # over the run; lr is its peak); capsedu train's quick recipe uses one-cycle
    routing_iterations: int = 3
    routing_gradient: str = "all"
    routing: str = "auto"                # the capsule layer's procedure, a key of capsedu.routings.ROUTINGS (capsule
                                         # models only), or "auto": the model's own (MODEL_ROUTING: dynamic for the
                                         # capsnet, self-attention for the efficient-capsnet; resolved_routing()).
                                         # to_dict() stores the resolved name, left out when "dynamic", so such a
                                         # run is stored as before the field existed (from_dict reads it back)
    reconstruction: bool = True          # CapsNet with the decoder
    loss: str = "auto"                   # "auto" (margin for a CapsNet, cross-entropy for the baseline; on pairs
                                         # pair-margin and pair-bce) or a name in training.objectives.OBJECTIVES
    reconstruction_weight: float = 0.0005  # section 4.1; used by the margin loss when there is a decoder
    augment_shift: int = 2               # paper: random shifts of up to 2 pixels (for "shift" augmentation)
    augment: str = "auto"                # "auto" (the data set's recipe), "shift", "crop" or "none"
    crop_size: Optional[int] = None      # "crop": training crops and central test crop (None: the recipe's)
    canvas_size: Optional[int] = None    # "place": random position on this canvas, centred for testing
    seed: int = 0
    device: str = "auto"
    data: Optional[str] = None           # data root; None -> $CAPSEDU_DATA -> ~/.cache/capsedu
    subset: Optional[bool] = None        # True: shipped subset; None: full data, subset if unavailable
    train_limit: Optional[int] = None    # use only the first N training / test examples
    train_subset_seed: Optional[int] = None  # with train_limit: N class-balanced training examples drawn with
                                         # this seed instead of the first N (capsedu.data.subsets)
    train_repeat: int = 1                # one epoch passes over the training examples this many times (pairs:
                                         # an epoch is this many fresh pairs per training digit)
    test_limit: Optional[int] = None
    eval_batch_size: int = 500
    checkpoint_every: int = 0            # also checkpoint every N steps (0: at epoch ends only)
    output: str = "runs/capsnet"
    # speed options (capsedu.training.speed): True, False or "auto"
    compile: Any = "auto"                # torch.compile, eager fallback with a warning (auto: CUDA only)
    amp: Any = "auto"                    # bf16 autocast (auto: CUDA with bf16; routing stays float32)
    channels_last: Any = "auto"          # NHWC convolutions (auto: on)

    def validate(self) -> "TrainConfig":
        """Check every setting; one ``ValueError`` naming the first bad one."""
        from ..data import AUGMENTATIONS, DATASETS, PAIR_DATASETS

        def choice(name: str, options) -> None:
            if getattr(self, name) not in options:
                raise ValueError(f"{_flag(name)} must be one of {sorted(options)}, got {getattr(self, name)!r}")

        choice("model", MODELS)
        choice("preset", ["auto", *PRESETS, *BASELINE_PRESETS, *EFFICIENT_PRESETS])
        if self.model == "capsnet" and self.preset not in ("auto", *PRESETS):
            raise ValueError(f"--preset must be one of {sorted(PRESETS)} for a CapsNet, got {self.preset!r}")
        if self.model == "efficient-capsnet" and self.preset not in ("auto", *EFFICIENT_PRESETS):
            raise ValueError(f"--preset must be one of {sorted(EFFICIENT_PRESETS)} for the efficient-capsnet, "
                             f"got {self.preset!r}")
        choice("dataset", [*DATASETS, *PAIR_DATASETS])
        choice("augment", AUGMENTATIONS)
        choice("routing_gradient", GRADIENT_MODES)
        choice("loss", ["auto", *OBJECTIVES])
        choice("schedule", SCHEDULES)
        if self.routing != "auto":
            check_routing(self.routing, prefix="--")
        if self.model == "baseline" and self.preset not in ("auto", *BASELINE_PRESETS):
            raise ValueError(f"--preset must be one of {sorted(BASELINE_PRESETS)} for the baseline, got {self.preset!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "decay_steps", "train_repeat"):
            check_int(getattr(self, name), _flag(name), low=1)
        check_iterations(self.routing_iterations, _flag("routing_iterations"))
        for name in ("augment_shift", "checkpoint_every"):
            check_int(getattr(self, name), _flag(name), low=0)
        for name in ("train_limit", "test_limit", "crop_size", "canvas_size"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), _flag(name), low=1)
        check_int(self.seed, _flag("seed"), low=0, high=2 ** 63 - 1)
        if self.train_subset_seed is not None:
            check_int(self.train_subset_seed, _flag("train_subset_seed"), low=0, high=2 ** 63 - 1)
            if self.train_limit is None:
                raise ValueError(f"{_flag('train_subset_seed')} draws --train-limit examples: give --train-limit")
        check_number(self.lr, "--lr", low=0.0, low_open=True)
        check_number(self.lr_decay, _flag("lr_decay"), low=0.0, high=1.0, low_open=True)
        check_number(self.reconstruction_weight, _flag("reconstruction_weight"), low=0.0)
        if not isinstance(self.output, str) or not self.output.strip():
            raise ValueError(f"--output must name a directory, got {self.output!r}")
        if self.model not in CAPSULE_MODELS and self.loss == "margin":
            raise ValueError("the baseline CNN returns logits: train it with --loss cross-entropy (or auto)")
        self._validate_routing()
        self._validate_pairs(PAIR_DATASETS)
        for name in ("compile", "amp", "channels_last"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ValueError(f"{name} must be True, False or 'auto', got {getattr(self, name)!r}")
        for name in ("reconstruction",):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.subset not in (None, True, False):
            raise ValueError(f"subset must be None, True or False, got {self.subset!r}")
        self.transforms()  # e.g. --crop-size without cropping
        return self

    def _validate_routing(self) -> None:
        """``routing`` and ``routing_gradient`` only where they mean something: capsule models route, and only the
        CapsNet's dynamic routing has a gradient mode (or a none-of-the-above category, section 7's CIFAR-10)."""
        routing = self.resolved_routing()
        if routing != "dynamic" and self.model not in CAPSULE_MODELS:
            raise ValueError(f"--routing {self.routing} routes capsules, and the {self.model} has none: use --model "
                             f"{' or '.join(CAPSULE_MODELS)}, or drop --routing")
        if self.routing_gradient != "all" and self.model == "efficient-capsnet":
            raise ValueError(f"--routing-gradient {self.routing_gradient} applies to the capsnet's dynamic routing "
                             f"only, not to the efficient-capsnet; drop --routing-gradient")
        if self.routing_gradient != "all" and routing != "dynamic":
            raise ValueError(f"--routing-gradient {self.routing_gradient} applies to dynamic routing only, not to "
                             f"--routing {routing}; drop one of them")
        preset = PRESETS.get(self.resolved_preset()) if self.model == "capsnet" else None
        if routing != "dynamic" and preset is not None and preset.none_of_the_above:
            raise ValueError(f"--routing {routing}: the {self.resolved_preset()} preset routes with a "
                             f"none-of-the-above category, which only dynamic routing has; use --routing dynamic "
                             f"or another --preset")

    def _validate_pairs(self, pair_datasets) -> None:
        """Pair data sets (MultiMNIST) make their own 36x36 canvases and train with a pair objective only."""
        pair_loss = {model: loss for loss, model in PAIR_OBJECTIVES.items()}
        kind = self._kind()
        if self.dataset in pair_datasets:
            if self.augment not in ("auto", "none"):
                raise ValueError(f"--augment {self.augment} does not apply to {self.dataset}: its digits are shifted "
                                 f"by up to 4 pixels as the pairs are made; drop --augment")
            for name in ("crop_size", "canvas_size"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{_flag(name)} does not apply to {self.dataset}: its pairs come on their own "
                                     f"canvases; drop {_flag(name)}")
            if self.loss != "auto" and self.loss not in PAIR_OBJECTIVES:
                raise ValueError(f"{self.dataset} trains on pairs of digits: use --loss "
                                 f"{pair_loss[kind]} (or auto), not {self.loss}")
        elif self.loss in PAIR_OBJECTIVES:
            raise ValueError(f"--loss {self.loss} trains on pairs of digits: add --dataset "
                             f"{' or '.join(sorted(pair_datasets))}")
        if self.loss in PAIR_OBJECTIVES and PAIR_OBJECTIVES[self.loss] != kind:
            raise ValueError(f"--loss {self.loss} is for the {PAIR_OBJECTIVES[self.loss]}; the {self.model} trains on "
                             f"pairs with --loss {pair_loss[kind]} (or auto)")

    def _kind(self) -> str:
        """``"capsnet"`` for a model that returns capsules, ``"baseline"`` for one that returns logits (the model
        kinds of :data:`~capsedu.training.objectives.PAIR_OBJECTIVES`)."""
        return "capsnet" if self.model in CAPSULE_MODELS else "baseline"

    def to_dict(self) -> Dict[str, Any]:
        """The settings as checkpoints and records store them. ``routing`` is the resolved procedure (never
        ``"auto"``: a record says what ran) and appears only when not ``"dynamic"``, so a run with the paper's
        routing is stored exactly as before the field existed; :meth:`from_dict` reads it back."""
        d = asdict(self)
        d["routing"] = self.resolved_routing()
        if d["routing"] == "dynamic":
            del d["routing"]
        return d

    @classmethod
    def from_dict(cls, settings: Dict[str, Any]) -> "TrainConfig":
        """The configuration :meth:`to_dict` stored (a checkpoint's or a record's). A missing ``routing`` is
        ``"dynamic"``, not ``"auto"``: that is what such a run trained with (before the field existed, or
        left out as the paper's), whatever its model."""
        return cls(**{"routing": "dynamic", **settings})

    def resolved_routing(self) -> str:
        """The routing procedure the model is built with: ``routing``, or for ``"auto"`` the model's own
        (:data:`MODEL_ROUTING`; ``"dynamic"`` for a model without capsules, which ignores it)."""
        return MODEL_ROUTING.get(self.model, "dynamic") if self.routing == "auto" else self.routing

    def resolved_preset(self) -> str:
        """The model preset that ``preset="auto"`` stands for: the data set's CapsNet (its recipe in
        :mod:`capsedu.data.recipes`), ``"small"`` for the baseline, ``"mnist"`` for Efficient-CapsNet; any other
        preset as given."""
        from ..data import recipe_for

        if self.preset != "auto":
            return self.preset
        if self.model == "efficient-capsnet":
            return "mnist"  # its one preset, resized to the data set's images by build_model
        return recipe_for(self.dataset).preset if self.model == "capsnet" else "small"

    def transforms(self):
        """``(training augmentation, test transform)``, each a ``RandomTransform`` or ``None``, from
        ``augment``, ``augment_shift`` and ``crop_size`` (:func:`capsedu.data.recipes.data_transforms`);
        e.g. ``(RandomCrop(32), CenterCrop(32))`` for smallNORB's recipe."""
        from ..data import data_transforms

        return data_transforms(self.dataset, self.augment, self.augment_shift, self.crop_size, self.canvas_size)

    def build_model(self, image_shape: Tuple[int, int, int] = (1, 28, 28), n_classes: int = 10) -> nn.Module:
        """The configured model (the registry ``capsedu.models.MODELS``, its preset) for images of ``image_shape``."""
        c, h, w = image_shape
        if h != w:
            raise ValueError(f"{self.model} needs square images, the data has {h}x{w}")
        sizes = dict(in_channels=c, image_size=h, n_classes=n_classes)
        if self.model in CAPSULE_MODELS:
            sizes.update(routing_iterations=self.routing_iterations, reconstruction=self.reconstruction,
                         routing=self.resolved_routing())
        if self.model == "capsnet":  # Efficient-CapsNet has no gradient mode (validate refuses one)
            sizes.update(routing_gradient=self.routing_gradient)
        return MODELS[self.model].from_preset(self.resolved_preset(), **sizes)

    def build_objective(self) -> Objective:
        """The configured loss (``"auto"``: the paper's for the model and data: margin / cross-entropy, and on
        pairs (MultiMNIST) pair-margin for a CapsNet / pair-bce for a logits model)."""
        from ..data import PAIR_DATASETS

        loss = self.loss
        if loss == "auto":
            pairs = self.dataset in PAIR_DATASETS
            if self.model in CAPSULE_MODELS:
                loss = "pair-margin" if pairs else "margin"
            else:
                loss = "pair-bce" if pairs else "cross-entropy"
        if loss in ("margin", "pair-margin"):
            return make_objective(loss, reconstruction_weight=self.reconstruction_weight)
        return make_objective(loss)


#: Named starting points for ``capsedu train`` (flags given on the command line override them). ``"quick"``, the
#: default: two epochs under a one-cycle schedule, which reaches 99 % on MNIST in about two minutes on a 2-core CPU
#: (``benchmarks/bench_time_to_accuracy.py``); ``"paper"``: :class:`TrainConfig`'s own defaults, the paper's
#: Adam at 1e-3 decayed by 0.96 every 2,000 steps.
RECIPES: Dict[str, Dict[str, Any]] = {
    "quick": dict(epochs=2, schedule="one-cycle", lr=3e-3),
    "paper": {},
}

#: Settings a resumed run may change: how long, where, on what hardware, how often to save, how to
#: test. Everything else defines the training and must match the checkpoint.
RESUME_ADJUSTABLE = ("epochs", "output", "device", "data", "subset", "checkpoint_every", "eval_batch_size",
                     "test_limit", "compile", "amp", "channels_last")

_FLAG_NAMES = {"reconstruction": "--no-reconstruction", "subset": "--subset"}


def _flag(name: str) -> str:
    return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))



def model_input_shape(train_shape: Tuple[int, int, int], test_shape: Tuple[int, int, int],
                      augment: Optional[Any] = None, test_transform: Optional[Any] = None) -> Tuple[int, int, int]:
    """``(C, H, W)`` the model sees: the training images after ``augment`` (e.g. 3x24x24 CIFAR-10 crops).

    Raises:
        ValueError: the test images, after ``test_transform``, would have another size.
    """
    train_out = augment.output_shape(*train_shape) if augment is not None else tuple(train_shape)
    test_out = test_transform.output_shape(*test_shape) if test_transform is not None else tuple(test_shape)
    if tuple(train_out) != tuple(test_out):
        raise ValueError(f"training images are {'x'.join(map(str, train_out))} after {augment!r} but test images "
                         f"are {'x'.join(map(str, test_out))} after {test_transform!r}; the model takes one size")
    return tuple(train_out)

