"""capsedu: Capsule Networks ("Dynamic Routing Between Capsules", Sabour, Frosst & Hinton, 2017),
small, fast and tested, with a runnable textbook in ``book/``.

The names below are the public API the book relies on::

    from capsedu import squash, dynamic_routing, margin_loss, CapsNet

Training: :mod:`capsedu.train` (the loop, the evaluator, ``fit``), data: :mod:`capsedu.data`,
the chapters' helpers: :mod:`capsedu.teaching`.
"""
from .functional import capsule_length, squash
from .layers import Decoder, DigitCaps, PrimaryCaps
from .losses import capsule_loss, margin_loss, reconstruction_loss
from .models import MODELS, PRESETS, BaselineCNN, CapsNet, CapsNetConfig, CapsNetOutput, build_model, count_parameters
from .objectives import CrossEntropy, MarginLoss
from .routing import RoutingTrace, dynamic_routing, routing_trace

__version__ = "0.1.0"

__all__ = [
    "squash", "capsule_length", "dynamic_routing", "routing_trace", "RoutingTrace",
    "margin_loss", "reconstruction_loss", "capsule_loss",
    "PrimaryCaps", "DigitCaps", "Decoder", "CapsNet", "CapsNetConfig", "CapsNetOutput", "BaselineCNN",
    "PRESETS", "MODELS", "build_model", "count_parameters", "MarginLoss", "CrossEntropy", "__version__",
]
