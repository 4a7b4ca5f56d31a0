"""Efficient-CapsNet (Mazzia, Salvetti & Chiaberge, 2021): a 161,824-parameter CapsNet with self-attention routing.

The MNIST network of the authors' code (github.com/EscVM/Efficient-CapsNet, ``models/efficient_capsnet_graph_
mnist.py``): four convolutions (32 5x5, 64 3x3, 64 3x3, 128 3x3 with stride 2, each "valid", ReLU, then batch
normalisation) turn a 28x28 image into a 9x9x128 map; one *depthwise* 9x9 convolution (each channel its own
kernel) reduces it to 128 numbers, read as 16 primary capsules of 8 dimensions and squashed with the paper's
:func:`~capsedu.routings.squash_efficient`; a :class:`~capsedu.layers.DigitCaps` layer routes them to 10 class
capsules of 16 dimensions with :mod:`self-attention routing <capsedu.routings.self_attention>`. Without the
decoder that is 161,824 trainable parameters, the count the paper reports; the decoder (FC 512, 1024, 784, as
in Sabour et al.) adds 1,411,344.

It is a :class:`~capsedu.models.CapsNet` (same forward, outputs, decoder masking, routing by name), so the
trainer, the objectives and the evaluator treat it as one; only the layers before ``DigitCaps`` differ.
Initialisation as in the authors' code: He-normal convolutions and transformation matrices, zero biases,
Glorot-uniform depthwise kernels (the decoder keeps PyTorch's defaults); Keras's batch-normalisation
constants (epsilon 1e-3, moving-average momentum 0.99).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple, Union

import torch
import torch.nn as nn

from .layers import Decoder, DigitCaps
from .models import CapsNet, _config_of, _from_preset, _known_keys, _positive_ints, _widths, check_images
from .routing import check_iterations
from .routings import check_routing, squash_efficient

__all__ = ["EfficientCapsNet", "EfficientCapsNetConfig", "EFFICIENT_PRESETS"]

#: the convolutions before the primary capsules: (kernel, stride) of each, as in the paper's MNIST network
_CONVS = ((5, 1), (3, 1), (3, 1), (3, 2))


@dataclass(frozen=True)
class EfficientCapsNetConfig:
    """Sizes of an Efficient-CapsNet, checked when the config is made; the defaults are the paper's MNIST network."""

    in_channels: int = 1
    image_size: int = 28
    conv_channels: Tuple[int, ...] = (32, 64, 64, 128)  # four convolutions, see _CONVS
    primary_dim: int = 8            # the last convolution's channels, 8 at a time: 16 primary capsules
    n_classes: int = 10
    digit_dim: int = 16
    routing: str = "self-attention"  # a key of capsedu.routings.ROUTINGS
    routing_iterations: int = 3     # read only by iterative routings
    reconstruction: bool = True
    decoder_hidden: Tuple[int, ...] = (512, 1024)

    def __post_init__(self) -> None:
        _positive_ints(self, ["in_channels", "image_size", "primary_dim", "n_classes", "digit_dim"], "EfficientCapsNet")
        check_iterations(self.routing_iterations, "EfficientCapsNet routing_iterations")
        check_routing(self.routing, prefix="EfficientCapsNet ")
        if not isinstance(self.reconstruction, bool):
            raise ValueError(f"EfficientCapsNet reconstruction must be True or False, got {self.reconstruction!r}")
        _widths(self, "conv_channels", "EfficientCapsNet", allow_empty=False)
        _widths(self, "decoder_hidden", "EfficientCapsNet", allow_empty=True)
        if len(self.conv_channels) != len(_CONVS):
            raise ValueError(f"EfficientCapsNet conv_channels must have {len(_CONVS)} widths, "
                             f"got {self.conv_channels!r}")
        if self.conv_channels[-1] % self.primary_dim:
            raise ValueError(f"EfficientCapsNet's last conv_channels ({self.conv_channels[-1]}) must be a multiple "
                             f"of primary_dim ({self.primary_dim})")
        if self.feature_grid < 1:
            raise ValueError(f"EfficientCapsNet image_size {self.image_size} is too small for its convolutions "
                             f"(at least 11)")

    @property
    def feature_grid(self) -> int:
        """Side of the feature map before the depthwise convolution (9 for 28x28 images)."""
        size = self.image_size
        for kernel, stride in _CONVS:
            size = (size - kernel) // stride + 1
        return size

    @property
    def n_primary(self) -> int:
        """Number of primary capsules (16)."""
        return self.conv_channels[-1] // self.primary_dim

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "EfficientCapsNetConfig":
        """The preset ``name`` of :data:`EFFICIENT_PRESETS` with some fields replaced."""
        return _from_preset(EFFICIENT_PRESETS, name, overrides, "EfficientCapsNet")

    @classmethod
    def from_dict(cls, config: Dict[str, Any]) -> "EfficientCapsNetConfig":
        """The config :meth:`to_dict` wrote (as checkpoints store it), or any subset of its keys."""
        return cls(**_known_keys(config, cls, "EfficientCapsNet"))

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["conv_channels"], d["decoder_hidden"] = list(self.conv_channels), list(self.decoder_hidden)
        return d


#: Named Efficient-CapsNet sizes: ``"mnist"`` is the paper's MNIST network.
EFFICIENT_PRESETS: Dict[str, EfficientCapsNetConfig] = {"mnist": EfficientCapsNetConfig()}


class EfficientCapsNet(CapsNet):
    """Efficient-CapsNet: four convolutions -> depthwise primary capsules -> DigitCaps (self-attention) [-> decoder].

    Args:
        config: an :class:`EfficientCapsNetConfig`, or a key of :data:`EFFICIENT_PRESETS` (``"mnist"``).
        **overrides: fields of :class:`EfficientCapsNetConfig` replacing the preset's, e.g.
            ``EfficientCapsNet(reconstruction=False)`` or ``EfficientCapsNet(routing="dynamic")``.

    Everything after the primary capsules is :class:`~capsedu.models.CapsNet`'s: ``model(images, labels)``
    returns a :class:`~capsedu.models.CapsNetOutput`.
    """

    def __init__(self, config: Union[EfficientCapsNetConfig, str] = "mnist", **overrides: Any):
        nn.Module.__init__(self)  # CapsNet's own layers are not built: only its forward pass is shared
        cfg = _config_of(config, overrides, EfficientCapsNetConfig, "EfficientCapsNet")
        self.preset = config if isinstance(config, str) else None
        self.config = cfg
        self.memory_format = torch.contiguous_format
        layers, channels = [], cfg.in_channels
        for width, (kernel, stride) in zip(cfg.conv_channels, _CONVS):
            conv = nn.Conv2d(channels, width, kernel, stride=stride)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True), nn.BatchNorm2d(width, eps=1e-3, momentum=0.01)]
            channels = width
        self.features = nn.Sequential(*layers)
        # one kernel per channel over the whole map: each output number sees the entire image
        self.depthwise = nn.Conv2d(channels, channels, cfg.feature_grid, groups=channels)
        nn.init.xavier_uniform_(self.depthwise.weight)
        nn.init.zeros_(self.depthwise.bias)
        # He-normal as Keras computes it for the (n_classes, n_primary, primary_dim, digit_dim) kernel
        init_std = math.sqrt(2.0 / (cfg.n_classes * cfg.n_primary * cfg.primary_dim))
        self.digits = DigitCaps(cfg.n_primary, cfg.primary_dim, cfg.n_classes, cfg.digit_dim, cfg.routing_iterations,
                                init_std=init_std, routing=cfg.routing)
        self.decoder = (Decoder(cfg.n_classes, cfg.digit_dim, cfg.decoder_hidden,
                                (cfg.in_channels, cfg.image_size, cfg.image_size))
                        if cfg.reconstruction else None)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "EfficientCapsNet":
        """The network of preset ``name`` (:data:`EFFICIENT_PRESETS`) with some fields replaced."""
        model = cls(EfficientCapsNetConfig.from_preset(name, **overrides))
        model.preset = name  # as CapsNet.from_preset: the trainer built it from this preset, resized or not
        return model

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "EfficientCapsNet":
        """Rebuild a network from ``EfficientCapsNetConfig.to_dict()`` (as stored in checkpoints)."""
        return cls(EfficientCapsNetConfig.from_dict(config))

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return check_images(images, (cfg.in_channels, cfg.image_size, cfg.image_size),
                            self.depthwise.weight.dtype, "EfficientCapsNet")

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        """Convolutions and depthwise primary capsules: ``(batch, n_primary, primary_dim)``, squashed."""
        out = self.depthwise(self.features(images))  # (batch, channels, 1, 1)
        return squash_efficient(out.view(out.shape[0], self.config.n_primary, self.config.primary_dim))
