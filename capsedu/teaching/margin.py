"""Chapter 5: the margin loss (Eq. 4 of the paper) of one digit capsule against its length."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

from ..losses import margin_loss

__all__ = ["margin_loss_curves"]


def margin_loss_curves(m_pos: float = 0.9, m_neg: float = 0.1, lam: float = 0.5,
                       lengths: Optional[Union[torch.Tensor, Sequence[float]]] = None) -> Dict[str, object]:
    """Loss of one digit capsule (Eq. 4) and its derivative against its length ``||v||``.

    Computed with :func:`capsedu.losses.margin_loss` itself (one class, batch of lengths), so the
    curves are exactly what training sees. ``lengths`` defaults to 201 points in [0, 1].
    Returns numpy arrays ``lengths, present, absent, d_present, d_absent`` (present: ``T_k = 1``,
    absent: ``T_k = 0``; ``d_``: slope ``dL_k / d||v_k||``) and the settings ``m_pos, m_neg, lam``.
    """
    if lengths is None:
        lengths = torch.linspace(0.0, 1.0, 201)
    lengths = torch.as_tensor(lengths, dtype=torch.float32)
    out: Dict[str, object] = {"lengths": lengths.numpy().copy(), "m_pos": m_pos, "m_neg": m_neg, "lam": lam}
    for name, target in (("present", 1.0), ("absent", 0.0)):
        t = torch.full((1, 1), target)                                   # multi-hot target of one class
        with torch.no_grad():                                            # value: one example at a time
            out[name] = np.array([float(margin_loss(l.reshape(1, 1), t, m_pos, m_neg, lam)) for l in lengths])
        # slope: treat the n lengths as n classes of one example; the loss sums over classes and each
        # term depends on its own length only, so the gradient holds every class's own derivative.
        x = lengths.clone().reshape(1, -1).requires_grad_(True)          # (1, n)
        grad, = torch.autograd.grad(margin_loss(x, t.expand_as(x), m_pos, m_neg, lam), x)
        out["d_" + name] = grad.reshape(-1).numpy()
    return out
