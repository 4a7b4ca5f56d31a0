"""capsedu.teaching.squashing: squash (Eq. 1) as a 1-D curve, on random vectors, and its slope."""
import math

import numpy as np
import pytest

from capsedu.teaching.squashing import squash_curve_1d, squash_length_slope, squashed_lengths


def test_1d_curve_is_sign_times_s_squared_over_one_plus_s_squared():
    s, v = squash_curve_1d(limit=4.0, n=81)
    assert s[0] == -4.0 and s[-1] == 4.0 and len(s) == 81
    np.testing.assert_allclose(v, np.sign(s) * s ** 2 / (1 + s ** 2), atol=1e-6)
    np.testing.assert_allclose(v, -v[::-1], atol=1e-6)        # odd function
    assert np.abs(v).max() < 1


def test_squashed_lengths_follow_the_length_factor_and_keep_mean_square_length():
    out = squashed_lengths(dims=(2, 16), n=4000, scale=1.0, seed=0)
    assert list(out) == [2, 16]
    for ls, lv in out.values():
        np.testing.assert_allclose(lv, ls ** 2 / (1 + ls ** 2), rtol=1e-4, atol=1e-6)
        assert (ls ** 2).mean() == pytest.approx(1.0, abs=0.06)
    assert out[16][0].std() < out[2][0].std()                  # lengths concentrate in high dimensions


def test_squashed_lengths_are_reproducible_from_the_seed():
    a, b = squashed_lengths((8,), n=10, seed=3), squashed_lengths((8,), n=10, seed=3)
    np.testing.assert_array_equal(a[8][0], b[8][0])


def test_slope_by_autograd_matches_the_formula_and_peaks_at_one_over_root_three():
    norms, autograd, analytic = squash_length_slope(max_norm=4.0, n=2000)
    np.testing.assert_allclose(autograd, analytic, atol=1e-6)
    assert norms[analytic.argmax()] == pytest.approx(1 / math.sqrt(3), abs=2e-3)
    assert analytic.max() == pytest.approx(3 * math.sqrt(3) / 8, rel=1e-5)
