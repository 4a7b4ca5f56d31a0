"""capsedu: Capsule Networks ("Dynamic Routing Between Capsules", Sabour, Frosst & Hinton, 2017),
small, fast and tested, with a runnable textbook in ``book/``.

The names below are the public API the book relies on::

    from capsedu import squash, dynamic_routing, margin_loss, CapsNet

The package's folders show its architecture: the core (``functional``, ``routing``, ``layers``,
``models``, ``losses``), data (:mod:`capsedu.data`), training (:mod:`capsedu.training`; ``capsedu.train``
is its short import path) and the chapters' helpers (:mod:`capsedu.teaching`).

The names load on first use, so ``capsedu`` on the command line answers Ctrl-C with one line even
while torch is still loading.
"""
from importlib import import_module
from typing import Any, List

__version__ = "0.1.0"

#: public name -> the module that defines it
_SOURCES = {
    "squash": "functional", "capsule_length": "functional",
    "dynamic_routing": "routing", "routing_trace": "routing", "RoutingTrace": "routing",
    "margin_loss": "losses", "reconstruction_loss": "losses", "capsule_loss": "losses",
    "PrimaryCaps": "layers", "DigitCaps": "layers", "Decoder": "layers",
    "CapsNet": "models", "CapsNetConfig": "models", "CapsNetOutput": "models", "BaselineCNN": "models",
    "PRESETS": "models", "MODELS": "models", "build_model": "models", "count_parameters": "models",
    "MarginLoss": "training.objectives", "CrossEntropy": "training.objectives",
}

__all__ = [*_SOURCES, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'capsedu' has no attribute {name!r}")
    value = getattr(import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> List[str]:
    return sorted([*globals(), *_SOURCES])
