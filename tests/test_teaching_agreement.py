"""capsedu.teaching.agreement: chance agreement in high dimensions, toy votes, how routing settles."""
import math

import numpy as np
import pytest
import torch

from capsedu.routing import dynamic_routing, routing_trace
from capsedu.teaching import agreement


def test_coincidence_probability_matches_closed_forms_and_monte_carlo():
    # d = 2: angle uniform on [0, pi]; d = 3: cos uniform on [-1, 1]
    assert agreement.coincidence_probability(2, 0.9) == pytest.approx(math.acos(0.9) / math.pi, rel=1e-4)
    assert agreement.coincidence_probability(3, 0.9) == pytest.approx(0.05, rel=1e-4)
    assert agreement.coincidence_monte_carlo(4, 0.5, n=50_000) == pytest.approx(
        agreement.coincidence_probability(4, 0.5), abs=0.01)
    assert agreement.coincidence_probability(16, 0.9) < 1e-5 < agreement.coincidence_probability(8, 0.9)


def test_coincidence_probability_rejects_one_dimension():
    with pytest.raises(ValueError, match="dim"):
        agreement.coincidence_probability(1)


def test_coincidence_curves_hold_one_probability_per_dimension_and_threshold():
    curves = agreement.coincidence_curves(dims=range(2, 6), thresholds=(0.5, 0.9))
    assert list(curves) == [0.5, 0.9]
    np.testing.assert_allclose(curves[0.9], [agreement.coincidence_probability(d, 0.9) for d in range(2, 6)])
    assert (np.diff(curves[0.9]) < 0).all() and (curves[0.9] < curves[0.5]).all()


def test_toy_votes_routing_favours_the_agreeing_clusters():
    u_hat, info = agreement.toy_votes()
    assert u_hat.shape == (1, 7, 3, 2)
    _, c = dynamic_routing(u_hat, 3, return_couplings=True)
    assert (c[0, info["groups"][0], 0] > 0.6).all() and (c[0, info["groups"][1], 1] > 0.6).all()
    assert c[0, info["outlier"], 0] < 0.2


def test_routing_convergence_measures_distances_from_the_last_iteration():
    g = torch.Generator().manual_seed(0)
    trace = routing_trace(torch.randn(2, 20, 4, 6, generator=g) * 0.3, iterations=5)
    conv = agreement.routing_convergence(trace)
    np.testing.assert_allclose(conv["logit_change"], trace.logit_changes().numpy())
    assert len(conv["coupling_diff"]) == len(conv["output_diff"]) == 4
    first_c = (trace.couplings[0] - trace.couplings[-1]).abs().mean()
    first_v = (trace.outputs[0] - trace.outputs[-1]).norm(dim=-1).mean()
    assert conv["coupling_diff"][0] == pytest.approx(float(first_c))
    assert conv["output_diff"][0] == pytest.approx(float(first_v))
    assert conv["coupling_diff"][-1] < conv["coupling_diff"][0]
