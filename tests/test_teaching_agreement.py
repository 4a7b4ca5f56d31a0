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


def test_routing_convergence_measures_successive_steps():
    g = torch.Generator().manual_seed(0)
    trace = routing_trace(torch.randn(2, 20, 4, 6, generator=g) * 0.3, iterations=5)
    conv = agreement.routing_convergence(trace)
    np.testing.assert_allclose(conv["logit_change"], trace.logit_changes().numpy())
    assert len(conv["coupling_step"]) == len(conv["output_step"]) == len(conv["logit_change_step"]) == 4
    assert len(conv["longest_output"]) == 5
    # step k = 2 compares iteration 2 with iteration 1 (the uniform couplings)
    assert conv["coupling_step"][0] == pytest.approx(float((trace.couplings[1] - trace.couplings[0]).abs().mean()))
    assert conv["output_step"][-1] == pytest.approx(float((trace.outputs[4] - trace.outputs[3]).norm(dim=-1).mean()))
    added = [b1 - b0 for b0, b1 in zip(trace.logits[:-1], trace.logits[1:])]
    assert conv["logit_change_step"][1] == pytest.approx(float((added[2] - added[1]).abs().mean()))
    assert conv["longest_output"][2] == pytest.approx(float(trace.outputs[2].norm(dim=-1).max(-1).values.mean()))


def test_routing_convergence_steps_vanish_when_routing_has_settled():
    # one parent, so the couplings are 1 from the start and the output never changes after iteration 1;
    # the logits still grow by the same agreement every iteration: a constant change, not zero
    u_hat = torch.randn(3, 8, 1, 4, generator=torch.Generator().manual_seed(1))
    conv = agreement.routing_convergence(routing_trace(u_hat, iterations=4))
    assert conv["coupling_step"].max() == 0.0 and conv["output_step"].max() == 0.0
    assert conv["logit_change_step"].max() < 1e-6
    assert conv["logit_change"].min() > 0.01
