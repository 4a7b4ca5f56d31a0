"""The paper's CapsNet (section 4, Fig. 1 and 2) and its baseline CNN (section 5)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_int, check_number
from .functional import capsule_length
from .layers import Decoder, DigitCaps, PrimaryCaps
from .losses import check_class_indices
from .routing import check_gradient_mode, check_iterations
from .routings import check_routing

__all__ = ["CapsNet", "CapsNetConfig", "CapsNetOutput", "BaselineCNN", "BaselineCNNConfig", "PRESETS", "BASELINE_PRESETS",
           "MODELS", "build_model", "model_record", "count_parameters"]

_HALF_AND_SINGLE = (torch.float32, torch.float16, torch.bfloat16)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def check_images(images: torch.Tensor, expected: Tuple[int, int, int], param_dtype: torch.dtype,
                 model: str) -> torch.Tensor:
    """Validate a batch of images for ``model`` (its name, for messages); every error names ``images``.

    Args:
        images: ``(batch, C, H, W)`` floating-point images, batch >= 1; ``(batch, H, W)`` when ``C == 1``.
        expected: ``(C, H, W)``.
        param_dtype: the model's parameter dtype. The images must have it, except under autocast,
            which casts float32/float16/bfloat16 inputs of a float32/half model itself.

    Returns:
        ``images``, with the channel axis added to ``(batch, H, W)`` input.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() == 3 and expected[0] == 1:
        images = images.unsqueeze(1)
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(expected):
        raise ValueError(f"images must have shape (batch, {expected[0]}, {expected[1]}, {expected[2]}), "
                         f"got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point (e.g. scaled to [0, 1]), got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"images: empty batch (shape {tuple(images.shape)}); {model} needs at least one image")
    if images.dtype != param_dtype:
        autocast = torch.is_autocast_enabled(images.device.type)
        if not (autocast and images.dtype in _HALF_AND_SINGLE and param_dtype in _HALF_AND_SINGLE):
            raise ValueError(f"images have dtype {images.dtype} but the {model}'s parameters are {param_dtype}: "
                             f"convert the images (images.to({param_dtype})) or the model (model.to({images.dtype}))")
    return images


def _known_keys(config: Dict[str, Any], config_class: type, model: str) -> Dict[str, Any]:
    """``config`` itself, after checking that every key is a field of ``config_class``."""
    if not isinstance(config, dict):
        raise ValueError(f"{model} config must be a dict of sizes, got {type(config).__name__}")
    unknown = set(config) - {f.name for f in fields(config_class)}
    if unknown:
        raise ValueError(f"unknown {model} config keys: {sorted(unknown)}")
    return config


def _positive_ints(config: Any, names: Sequence[str], model: str) -> None:
    for name in names:
        check_int(getattr(config, name), f"{model} {name}", low=1)


def _widths(config: Any, name: str, model: str, allow_empty: bool) -> None:
    """Store the sequence field ``name`` as a tuple of positive integers (lists come from JSON)."""
    widths = getattr(config, name)
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or (not widths and not allow_empty):
        raise ValueError(f"{model} {name} must be a {'' if allow_empty else 'non-empty '}sequence of positive "
                         f"integers, got {widths!r}")
    for w in widths:
        check_int(w, f"every {model} {name} width", low=1)
    object.__setattr__(config, name, tuple(widths))  # frozen dataclass: set once, here


def _from_preset(presets: Dict[str, Any], name: str, overrides: Dict[str, Any], model: str) -> Any:
    """``presets[name]`` with ``overrides`` replacing some fields (validated again by the config)."""
    if not isinstance(name, str) or name not in presets:
        raise ValueError(f"unknown {model} preset {name!r}; choose one of {sorted(presets)}")
    config = presets[name]
    return replace(config, **_known_keys(overrides, type(config), model))


def _config_of(config: Any, overrides: Dict[str, Any], config_class: type, model: str) -> Any:
    """The config a model is built from: ``config`` itself, or the preset it names with ``overrides``."""
    if isinstance(config, config_class):
        if overrides:
            raise ValueError(f"{model} takes a {config_class.__name__} or a preset name with overrides, not both; "
                             f"use dataclasses.replace(config, ...) to change a config")
        return config
    if isinstance(config, str):
        return config_class.from_preset(config, **overrides)
    raise ValueError(f"{model} takes a {config_class.__name__} or a preset name, got {type(config).__name__}")


@dataclass(frozen=True)
class CapsNetConfig:
    """Sizes of a CapsNet, checked when the config is made. The defaults are the paper's MNIST network
    (8.2M parameters); :data:`PRESETS` names others, ``CapsNetConfig.from_preset("small", image_size=36)``."""

    in_channels: int = 1            # image channels
    image_size: int = 28            # square images
    conv_channels: int = 256        # conv1: 256 kernels of 9x9, stride 1, ReLU
    conv_kernel: int = 9
    primary_types: int = 32         # PrimaryCaps: 32 capsule types ...
    primary_dim: int = 8            # ... of 8-D capsules
    primary_kernel: int = 9         # 9x9 kernels ...
    primary_stride: int = 2         # ... stride 2 -> 6x6 grid
    n_classes: int = 10             # DigitCaps: one 16-D capsule per class
    digit_dim: int = 16
    routing_iterations: int = 3
    routing_gradient: str = "all"   # "all" (official code) or "last"
    reconstruction: bool = True     # with the decoder (FC 512, 1024, 784)
    decoder_hidden: Tuple[int, ...] = (512, 1024)
    none_of_the_above: bool = False  # section 7 (CIFAR-10): an extra routing category, see DigitCaps
    routing: str = "dynamic"        # a key of capsedu.routings.ROUTINGS: Procedure 1 or a later procedure

    def __post_init__(self) -> None:
        _positive_ints(self, [f.name for f in fields(self) if f.type == "int" and f.name != "routing_iterations"],
                       "CapsNet")
        check_iterations(self.routing_iterations, "CapsNet routing_iterations")
        check_gradient_mode(self.routing_gradient, "CapsNet routing_gradient")
        for name in ("reconstruction", "none_of_the_above"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"CapsNet {name} must be True or False, got {getattr(self, name)!r}")
        _widths(self, "decoder_hidden", "CapsNet", allow_empty=True)
        check_routing(self.routing, self.none_of_the_above, self.routing_gradient, "CapsNet ")
        conv_out = self.image_size - self.conv_kernel + 1
        if conv_out < 1 or self.primary_grid < 1:
            raise ValueError(
                f"image_size {self.image_size} is too small for conv kernel {self.conv_kernel} followed by "
                f"primary kernel {self.primary_kernel} (stride {self.primary_stride})"
            )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "CapsNetConfig":
        """The preset ``name`` of :data:`PRESETS` with some fields replaced."""
        return _from_preset(PRESETS, name, overrides, "CapsNet")

    @classmethod
    def from_dict(cls, config: Dict[str, Any]) -> "CapsNetConfig":
        """The config :meth:`to_dict` wrote (as checkpoints store it), or any subset of its keys."""
        return cls(**_known_keys(config, cls, "CapsNet"))

    @property
    def primary_grid(self) -> int:
        conv_out = self.image_size - self.conv_kernel + 1
        return (conv_out - self.primary_kernel) // self.primary_stride + 1

    @property
    def n_primary(self) -> int:
        """Number of primary capsules (1152 = 6 * 6 * 32 in the paper)."""
        return self.primary_grid ** 2 * self.primary_types

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready fields, as checkpoints store them. ``none_of_the_above`` and ``routing`` appear only when
        not the default, so a network without them is recorded exactly as before the fields existed (shipped
        weights, old runs)."""
        d = asdict(self)
        d["decoder_hidden"] = list(self.decoder_hidden)
        if not self.none_of_the_above:
            del d["none_of_the_above"]
        if self.routing == "dynamic":
            del d["routing"]
        return d


#: Named presets. ``"paper"`` is section 4's MNIST network; ``"small"`` keeps every idea (9x9 conv,
#: convolutional 8-D primary capsules, routed 16-D digit capsules, the same decoder) with 64 conv1
#: channels and 16 primary capsule types, about 1/8 of the paper's multiply-adds, for CPUs.
#:
#: Section 7's networks for other data sets (``capsedu.data.recipes`` pairs each with its data):
#:
#: * ``"cifar10"``: "the same architecture as the simple model we used for MNIST except for the three
#:   color channels and using 64 different types of primary capsules", on 24x24 patches, 3 routing
#:   iterations, with a "none-of-the-above" category for the routing softmaxes. The decoder
#:   reconstructs the 3x24x24 patch (the paper does not describe it; the MNIST decoder's widths).
#: * ``"smallnorb"``: "the same CapsNet architecture as MNIST" on 2-channel (stereo) 32x32 crops,
#:   5 classes.
#: * ``"svhn"``: "the number of first convolutional layer channels [reduced] to 64, the primary capsule
#:   layer to 16 6D-capsules with 8D final capsule layer"; so the decoder reads 10 x 8 = 80 numbers
#:   and reconstructs 3x32x32 images.
PRESETS: Dict[str, CapsNetConfig] = {
    "paper": CapsNetConfig(),
    "small": CapsNetConfig(conv_channels=64, primary_types=16),
    "cifar10": CapsNetConfig(in_channels=3, image_size=24, primary_types=64, none_of_the_above=True),
    "smallnorb": CapsNetConfig(in_channels=2, image_size=32, n_classes=5),
    "svhn": CapsNetConfig(in_channels=3, image_size=32, conv_channels=64, primary_types=16, primary_dim=6,
                          digit_dim=8),
}


class CapsNetOutput(NamedTuple):
    """What :class:`CapsNet` returns."""

    lengths: torch.Tensor                     # (batch, n_classes) capsule lengths = class presence
    poses: torch.Tensor                       # (batch, n_classes, digit_dim) digit-capsule vectors
    reconstructions: Optional[torch.Tensor]   # (batch, C, H, W) decoder output, None without decoder


class CapsNet(nn.Module):
    """CapsNet: conv1 -> PrimaryCaps -> DigitCaps (routing) [-> decoder].

    Built from a :class:`CapsNetConfig`, ``CapsNet(config)``, or from a preset with some sizes
    replaced, ``CapsNet.from_preset("small", routing_iterations=1, reconstruction=False)``.
    ``CapsNet("small", ...)`` is short for the latter, and ``CapsNet()`` is the paper's network.
    ``"cifar10"``, ``"smallnorb"`` and ``"svhn"`` are section 7's networks (see :data:`PRESETS`).

    Args:
        config: a :class:`CapsNetConfig` (its fields document every size), or a key of :data:`PRESETS`.
        memory_format: ``torch.channels_last`` stores the convolutions in NHWC and converts the
            images on the way in (a speed option, see :func:`capsedu.fast.optimize`); results
            are the same.
        **overrides: fields of :class:`CapsNetConfig` replacing the preset's (with a preset name only).

    ``model.routing_iterations`` (r in Procedure 1) may be changed at any time, or passed to
    :meth:`forward`. With ``none_of_the_above`` (section 7, CIFAR-10; see
    :class:`~capsedu.layers.DigitCaps`) ``lengths`` and ``poses`` hold the ``n_classes`` class capsules
    only, the decoder reads only those, and the margin loss never sees the extra category.
    """

    def __init__(self, config: Union[CapsNetConfig, str] = "paper", *,
                 memory_format: torch.memory_format = torch.contiguous_format, **overrides: Any):
        super().__init__()
        cfg = _config_of(config, overrides, CapsNetConfig, "CapsNet")
        self.preset = config if isinstance(config, str) else None  # the preset's name, None for a config
        self.config = cfg
        self.conv1 = nn.Conv2d(cfg.in_channels, cfg.conv_channels, kernel_size=cfg.conv_kernel)
        self.primary = PrimaryCaps(cfg.conv_channels, cfg.primary_types, cfg.primary_dim,
                                   cfg.primary_kernel, cfg.primary_stride)
        self.digits = DigitCaps(cfg.n_primary, cfg.primary_dim, cfg.n_classes, cfg.digit_dim,
                                cfg.routing_iterations, cfg.routing_gradient,
                                none_of_the_above=cfg.none_of_the_above, routing=cfg.routing)
        self.decoder = (Decoder(cfg.n_classes, cfg.digit_dim, cfg.decoder_hidden,
                                (cfg.in_channels, cfg.image_size, cfg.image_size))
                        if cfg.reconstruction else None)
        # performance only (not part of the config): torch.channels_last runs the convolutions in NHWC
        self.memory_format = memory_format
        if memory_format == torch.channels_last:
            self.to(memory_format=memory_format)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "CapsNet":
        """The network of preset ``name`` (:data:`PRESETS`) with some :class:`CapsNetConfig` fields replaced."""
        model = cls(CapsNetConfig.from_preset(name, **overrides))
        model.preset = name
        return model

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "CapsNet":
        """Rebuild a network from ``CapsNetConfig.to_dict()`` (as stored in checkpoints)."""
        return cls(CapsNetConfig.from_dict(config))

    @property
    def routing_iterations(self) -> int:
        return self.digits.iterations

    @routing_iterations.setter
    def routing_iterations(self, value: int) -> None:
        self.digits.iterations = check_iterations(value)

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return check_images(images, (cfg.in_channels, cfg.image_size, cfg.image_size), self.conv1.weight.dtype,
                            "CapsNet")

    def _check_labels(self, labels: torch.Tensor, batch: int) -> torch.Tensor:
        n = self.config.n_classes
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != batch:
            shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels must be class indices of shape ({batch},), got {shape}")
        return check_class_indices(labels, n).long()  # one_hot takes int64 only

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        """conv1 + PrimaryCaps on already checked images."""
        if self.memory_format == torch.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.primary(F.relu(self.conv1(images), inplace=True))

    def primary_capsules(self, images: torch.Tensor) -> torch.Tensor:
        """conv1 + PrimaryCaps: ``(batch, n_primary, primary_dim)`` squashed vectors ``u_i``."""
        return self._encode(self._check_images(images))

    def predictions(self, images: torch.Tensor) -> torch.Tensor:
        """Prediction vectors ``u_hat_{j|i}`` (Eq. 2) for the routing chapter: ``(batch, n_primary, n_classes, digit_dim)``."""
        return self.digits.predictions(self.primary_capsules(images))

    def couplings(self, images: torch.Tensor, routing_iterations: Optional[int] = None
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The votes and the couplings the model's own routing procedure gives them on ``images``:
        ``(u_hat (batch, n_primary, n_classes, digit_dim), c (batch, n_primary, n_classes))``.

        Every procedure of :data:`capsedu.routings.ROUTINGS` hands back its couplings (EM routing its
        assignments, the attention routings their softmax weights), so chapter 7.6's entropy and polarisation
        measure any of them; with a none-of-the-above category (section 7) ``c`` holds the classes' share only.
        """
        u = self.primary_capsules(images)
        _, c = self.digits(u, iterations=routing_iterations, return_couplings=True)
        return self.digits.predictions(u), c

    def reconstruct(self, poses: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Decode the capsules of ``classes`` (indices ``(batch,)`` or a mask ``(batch, n_classes)``)."""
        if self.decoder is None:
            raise ValueError("this CapsNet was built with reconstruction=False and has no decoder")
        mask = classes if classes.dim() == 2 else F.one_hot(classes, self.config.n_classes)
        return self.decoder(poses, mask)

    def forward(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None, *,
                routing_iterations: Optional[int] = None) -> CapsNetOutput:
        """Classify ``images``; reconstruct from the true class if ``labels`` are given, else from the longest capsule.

        Args:
            images: ``(batch, C, H, W)`` floating-point images in [0, 1], batch >= 1, in the dtype of
                the model's parameters (cast them, or the model, yourself; under autocast float32
                and half precision mix as autocast allows).
            labels: optional class indices ``(batch,)``, any integer dtype.
            routing_iterations: overrides ``model.routing_iterations`` for this call.

        Returns:
            :class:`CapsNetOutput`. Poses and lengths are float64 for a float64 model, else float32
            (routing runs in float32 for a half-precision model); reconstructions have the
            decoder's dtype.

        Raises:
            ValueError: naming ``images`` for a wrong shape, an integer dtype, a dtype other than the
                model's, or an empty batch; naming ``labels`` for bad labels.
        """
        images = self._check_images(images)
        if labels is not None:
            labels = self._check_labels(labels, images.shape[0])
        u = self._encode(images)                                     # (batch, n_primary, primary_dim)
        poses = self.digits(u, iterations=routing_iterations)        # (batch, n_classes, digit_dim)
        lengths = capsule_length(poses)                              # (batch, n_classes)
        reconstructions = None
        if self.decoder is not None:
            chosen = labels if labels is not None else lengths.argmax(dim=1)
            reconstructions = self.decoder(poses, F.one_hot(chosen, self.config.n_classes))
        return CapsNetOutput(lengths, poses, reconstructions)


@dataclass(frozen=True)
class BaselineCNNConfig:
    """Sizes of a :class:`BaselineCNN`, checked when the config is made; the defaults are the paper's
    MNIST baseline (35.4M parameters), :data:`BASELINE_PRESETS` names others."""

    in_channels: int = 1
    image_size: int = 28
    n_classes: int = 10
    channels: Tuple[int, ...] = (256, 256, 128)  # three 5x5 conv layers, stride 1
    kernel_size: int = 5
    hidden: Tuple[int, ...] = (328, 192)         # two fully connected layers
    dropout: float = 0.5                         # before the final 10-way layer only
    pool: bool = False                           # 2x2 max-pooling after each convolution (MultiMNIST baseline)

    def __post_init__(self) -> None:
        _positive_ints(self, ("in_channels", "image_size", "n_classes", "kernel_size"), "BaselineCNN")
        if not isinstance(self.pool, bool):
            raise ValueError(f"BaselineCNN pool must be True or False, got {self.pool!r}")
        for name in ("channels", "hidden"):
            _widths(self, name, "BaselineCNN", allow_empty=False)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"BaselineCNN kernel_size must be odd ('same' padding keeps the image size), "
                             f"got {self.kernel_size}")
        if check_number(self.dropout, "BaselineCNN dropout", low=0.0) >= 1.0:
            raise ValueError(f"BaselineCNN dropout must lie in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "BaselineCNNConfig":
        """The preset ``name`` of :data:`BASELINE_PRESETS` with some fields replaced."""
        return _from_preset(BASELINE_PRESETS, name, overrides, "BaselineCNN")

    @classmethod
    def from_dict(cls, config: Dict[str, Any]) -> "BaselineCNNConfig":
        """The config :meth:`to_dict` wrote, or any subset of its keys."""
        return cls(**_known_keys(config, cls, "BaselineCNN"))

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["channels"], d["hidden"] = list(self.channels), list(self.hidden)
        return d


class BaselineCNN(nn.Module):
    """The paper's baseline (section 5): "three convolutional layers of 256, 256, 128 channels. Each
    has 5x5 kernels and stride of 1. The last convolutional layers are followed by two fully
    connected layers of size 328, 192. The last fully connected layer is connected with dropout to
    a 10 class softmax layer with cross entropy loss." 35.4M parameters (35,445,522).

    conv 256 -> conv 256 -> conv 128 (5x5, stride 1, 'same' padding, ReLU) -> FC 328 -> FC 192
    (ReLU) -> dropout -> FC 10. Dropout sits only between FC 192 and the 10-way layer, as quoted.
    Returns logits; train with cross-entropy. With ``pool`` each convolution is followed by 2x2
    max-pooling (rounding up, as TensorFlow's 'SAME' pooling does): the MultiMNIST baseline's shape.

    Built like :class:`CapsNet`: ``BaselineCNN(config)``, ``BaselineCNN.from_preset("small", image_size=36)``
    or its shorthand ``BaselineCNN("small", image_size=36)``; ``BaselineCNN()`` is the paper's.

    Args:
        config: a :class:`BaselineCNNConfig` (its fields document every size), or a key of
            :data:`BASELINE_PRESETS`.
        **overrides: fields of :class:`BaselineCNNConfig` replacing the preset's (with a preset name only).
    """

    def __init__(self, config: Union[BaselineCNNConfig, str] = "paper", **overrides: Any):
        super().__init__()
        cfg = _config_of(config, overrides, BaselineCNNConfig, "BaselineCNN")
        self.config = cfg
        convs, size = [], cfg.image_size
        for c_in, c_out in zip([cfg.in_channels, *cfg.channels[:-1]], cfg.channels):
            convs += [nn.Conv2d(c_in, c_out, cfg.kernel_size, padding=cfg.kernel_size // 2), nn.ReLU(inplace=True)]
            if cfg.pool:
                convs.append(nn.MaxPool2d(2, ceil_mode=True))
                size = -(-size // 2)
        self.features = nn.Sequential(*convs)
        widths = [cfg.channels[-1] * size * size, *cfg.hidden]
        fcs = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            fcs += [nn.Linear(w_in, w_out), nn.ReLU(inplace=True)]
        # "The last fully connected layer is connected with dropout to a 10 class softmax layer"
        fcs += [nn.Dropout(cfg.dropout), nn.Linear(widths[-1], cfg.n_classes)]
        self.classifier = nn.Sequential(*fcs)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "BaselineCNN":
        """The network of preset ``name`` (:data:`BASELINE_PRESETS`) with some fields replaced."""
        model = cls(BaselineCNNConfig.from_preset(name, **overrides))
        model.preset = name
        return model

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "BaselineCNN":
        """Rebuild a network from ``BaselineCNNConfig.to_dict()`` (or any subset of its keys)."""
        return cls(BaselineCNNConfig.from_dict(config))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` of ``images (batch, C, H, W)``.

        The images are checked as :meth:`CapsNet.forward` checks them (errors name ``images``).
        """
        cfg = self.config
        images = check_images(images, (cfg.in_channels, cfg.image_size, cfg.image_size),
                              self.classifier[-1].weight.dtype, "BaselineCNN")
        return self.classifier(self.features(images).flatten(1))


#: Named baseline sizes. ``"paper"`` is section 5's network (35.4M parameters, 1965M multiply-adds per
#: MNIST image); ``"small"`` keeps its shape (three 5x5 convolutions, FC 328 and 192, dropout before the
#: last layer) with 32, 32 and 16 channels: 4.2M parameters and 35M multiply-adds, about the compute of
#: the small CapsNet preset (29M), for comparisons on a CPU.
BASELINE_PRESETS: Dict[str, BaselineCNNConfig] = {
    "paper": BaselineCNNConfig(),
    "small": BaselineCNNConfig(channels=(32, 32, 16)),
    # Section 5.2 compares CapsNet with "a traditional convolutional model with a similar number of parameters".
    # On the affine experiment's 40x40 canvas an 11-channel last convolution gives 5,873,501 parameters, the
    # small CapsNet's 5,865,792 (most of a baseline's parameters are its first fully connected layer).
    "affine-small": BaselineCNNConfig(channels=(32, 32, 11)),
    # Section 6's MultiMNIST baseline, as the authors' code builds it (research/capsules/models/conv_model.py):
    # two 5x5 convolutions of 512 and 256 channels, each followed by 2x2 max-pooling, FC 1024, then the classes,
    # no dropout. On 36x36 with 'same' padding: 24,535,306 parameters (the paper states 24.56M).
    "multimnist-paper": BaselineCNNConfig(channels=(512, 256), hidden=(1024,), dropout=0.0, pool=True),
    # The same shape at the small CapsNet's compute on 36x36: 73.8M multiply-adds per image against its 73.7M
    # (conv1, primary capsules, u_hat and routing); 5.5M parameters against its 4.7M (without decoder: 2.7M).
    "multimnist-small": BaselineCNNConfig(channels=(64, 128), hidden=(512,), dropout=0.0, pool=True),
}

from .efficient_capsnet import EfficientCapsNet  # noqa: E402  (a CapsNet subclass: it needs the classes above)

#: The model registry: the names that configs, checkpoints and the command line use.
MODELS: Dict[str, Type[nn.Module]] = {"capsnet": CapsNet, "baseline": BaselineCNN,
                                      "efficient-capsnet": EfficientCapsNet}

#: class names stored by older checkpoints
_LEGACY_NAMES = {"CapsNet": "capsnet", "BaselineCNN": "baseline"}


def build_model(name: str, config: Optional[Dict[str, Any]] = None) -> nn.Module:
    """Construct a fresh model from its registry name and config.

    Args:
        name: a key of :data:`MODELS` (``"capsnet"``, ``"baseline"``, ``"efficient-capsnet"``), or the class names
            ``"CapsNet"`` / ``"BaselineCNN"`` that older checkpoints store.
        config: the dict :func:`model_record` returns (``model.config.to_dict()``), or any subset
            of its keys; ``None`` or ``{}`` gives the paper's network.

    Raises:
        ValueError: unknown ``name`` (the message lists the choices) or unknown config keys.
    """
    key = _LEGACY_NAMES.get(name, name) if isinstance(name, str) else None
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)} "
                         f"(older checkpoints' {sorted(_LEGACY_NAMES)} are accepted too)")
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"model config must be a dict, got {type(config).__name__}")
    return MODELS[key].from_config(dict(config or {}))


def model_record(model: nn.Module) -> Tuple[str, Dict[str, Any]]:
    """``(registry name, JSON-serialisable config)`` of ``model``: ``build_model(*model_record(m))``
    rebuilds the same architecture (fresh weights). Wrappers (``torch.compile``, DataParallel,
    DistributedDataParallel) are looked through.

    Raises:
        ValueError: ``model`` is not a registered model class.
    """
    inner = getattr(model, "_orig_mod", model)  # torch.compile's wrapper
    if isinstance(inner, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        inner = inner.module
    for name, cls in MODELS.items():
        if type(inner) is cls:  # not isinstance: an EfficientCapsNet is a CapsNet with other layers
            return name, inner.config.to_dict()
    raise ValueError(f"{type(inner).__name__} is not a registered model; "
                     f"known: {', '.join(f'{n!r} ({c.__name__})' for n, c in MODELS.items())}")
