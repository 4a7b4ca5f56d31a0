"""Routing procedures by name: the one of the paper and the ones that came after it.

Every procedure is a :class:`~capsedu.routings.base.Routing` module with the same call,
``routing(u_hat, iterations, activations=None, return_couplings=False)``, so that
:class:`~capsedu.layers.DigitCaps` (and any network built on it) trains with each of them and nothing
else changed:

=====================  ===========================================================================
``"dynamic"``          routing by agreement, Sabour, Frosst & Hinton (2017), Procedure 1 (the default)
``"uniform"``          no routing: ``c_ij = 1 / n_out``
``"self-attention"``   Mazzia, Salvetti & Chiaberge (2021), Efficient-CapsNet: one pass, no iterations
``"inverted-attention"``  Tsai, Srivastava, Goh & Salakhutdinov (ICLR 2020): inverted dot-product attention
``"em"``               Hinton, Sabour & Frosst (ICLR 2018): EM routing between matrix capsules
=====================  ===========================================================================
"""
from __future__ import annotations

from typing import Any, Dict, Type

from .base import Routing, capsule_from_presence
from .dynamic import DynamicRouting, UniformRouting
from .em import EMResult, EMRouting, e_step, em_routing, inverse_temperature, m_step, matrix_votes
from .inverted_attention import InvertedAttentionRouting, inverted_attention_routing
from .self_attention import SelfAttentionRouting, self_attention_routing, squash_efficient

__all__ = ["ROUTINGS", "build_routing", "check_routing", "Routing", "capsule_from_presence", "DynamicRouting",
           "UniformRouting", "SelfAttentionRouting", "self_attention_routing", "squash_efficient",
           "InvertedAttentionRouting", "inverted_attention_routing", "EMRouting", "EMResult", "em_routing", "m_step",
           "e_step", "inverse_temperature", "matrix_votes"]

#: The routing registry: the names configs, checkpoints and the command line use.
ROUTINGS: Dict[str, Type[Routing]] = {
    "dynamic": DynamicRouting,
    "uniform": UniformRouting,
    "self-attention": SelfAttentionRouting,
    "inverted-attention": InvertedAttentionRouting,
    "em": EMRouting,
}


def check_routing(name: str, none_of_the_above: bool = False, gradient: str = "all", prefix: str = "") -> str:
    """``name`` if it is a key of :data:`ROUTINGS` and the options only dynamic routing has are left at
    their defaults for the others; else a ``ValueError`` (its message starts with ``prefix``, e.g. ``"CapsNet "``)."""
    if not isinstance(name, str) or name not in ROUTINGS:
        raise ValueError(f"{prefix}routing must be one of {sorted(ROUTINGS)}, got {name!r}")
    if name != "dynamic" and (none_of_the_above or gradient != "all"):
        raise ValueError(f"{prefix}none_of_the_above and routing_gradient={gradient!r} apply to dynamic routing "
                         f"only, not to routing={name!r}")
    return name


def build_routing(name: str, n_in: int, n_out: int, dim: int, **options: Any) -> Routing:
    """A fresh routing module from its registry name.

    Args:
        name: a key of :data:`ROUTINGS`.
        n_in, n_out, dim: sizes of the predictions it will route, ``(batch, n_in, n_out, dim)``.
        options: keyword arguments of that procedure (``gradient`` for ``"dynamic"``, ``final_lambda``
            for ``"em"``).

    Raises:
        ValueError: unknown ``name`` (the message lists the choices) or bad sizes.
    """
    return ROUTINGS[check_routing(name)](n_in, n_out, dim, **options)
