"""capsedu.teaching.margin: the margin loss (Eq. 4) of one capsule against its length."""
import numpy as np
import pytest
import torch

from capsedu import margin_loss
from capsedu.teaching.margin import margin_loss_curves


def test_margin_loss_curves_match_eq4_and_its_derivative():
    c = margin_loss_curves(0.9, 0.1, 0.5, lengths=torch.tensor([0.0, 0.05, 0.5, 0.95]))
    np.testing.assert_allclose(c["present"], [0.81, 0.85 ** 2, 0.16, 0.0], atol=1e-6)
    np.testing.assert_allclose(c["absent"], [0.0, 0.0, 0.5 * 0.16, 0.5 * 0.85 ** 2], atol=1e-6)
    np.testing.assert_allclose(c["d_present"], [-1.8, -1.7, -0.8, 0.0], atol=1e-5)
    np.testing.assert_allclose(c["d_absent"], [0.0, 0.0, 0.4, 0.85], atol=1e-5)


def test_curves_are_the_library_loss_for_other_settings():
    lengths = torch.rand(7, generator=torch.Generator().manual_seed(0))
    c = margin_loss_curves(0.7, 0.2, 1.0, lengths=lengths)
    assert (c["m_pos"], c["m_neg"], c["lam"]) == (0.7, 0.2, 1.0)
    for k, l in enumerate(lengths):
        x = l.reshape(1, 1)
        assert c["present"][k] == pytest.approx(float(margin_loss(x, torch.ones(1, 1), 0.7, 0.2, 1.0)), abs=1e-6)
        assert c["absent"][k] == pytest.approx(float(margin_loss(x, torch.zeros(1, 1), 0.7, 0.2, 1.0)), abs=1e-6)


def test_default_curves_cover_zero_to_one_and_vanish_beyond_the_margins():
    c = margin_loss_curves()
    assert len(c["lengths"]) == 201 and c["lengths"][0] == 0.0 and c["lengths"][-1] == 1.0
    assert c["present"][c["lengths"] >= 0.9].max() == 0.0
    assert c["absent"][c["lengths"] <= 0.1].max() == 0.0
