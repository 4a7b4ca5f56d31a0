"""capsedu.teaching.couplings: how far routing moves a CapsNet's couplings from uniform."""
import numpy as np
import pytest
import torch

from capsedu.data import Batches
from capsedu.models import CapsNet
from capsedu.teaching.couplings import (
    accuracy_by_iterations, coupling_statistics, entropy, polarisation, weighted_mean,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = CapsNet("small").eval()
    with torch.no_grad():  # untrained W_ij make votes too short to agree; lengthen them so routing moves
        for p in net.digits.parameters():
            p.mul_(50)
    return net


@pytest.fixture(scope="module")
def images():
    return torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_the_first_iteration_is_uniform_and_later_ones_move_away(model, images):
    stats = coupling_statistics(model, images, iterations=4)
    assert stats["entropy"][0] == pytest.approx(1.0) and stats["max_coupling"][0] == pytest.approx(0.1)
    assert stats["to_predicted"][0] == pytest.approx(0.1) and stats["same_prediction"][0] == 1.0
    assert np.all(np.diff(stats["entropy"]) < 0)            # agreement concentrates the couplings
    assert np.all(stats["to_predicted"][1:] > 0.1)          # ... towards the winning capsule
    assert np.all(np.diff(stats["length_of_predicted"]) > 0)


def test_statistics_match_a_direct_computation_from_the_routing_trace(model, images):
    from capsedu.routing import routing_trace

    stats = coupling_statistics(model, images, iterations=2)
    with torch.no_grad():
        c = routing_trace(model.predictions(images), 2).couplings[1]       # (batch, n_in, n_out)
    entropy = -(c * c.log()).sum(-1).mean() / np.log(10)
    assert stats["entropy"][1] == pytest.approx(float(entropy), rel=1e-5)
    assert stats["max_coupling"][1] == pytest.approx(float(c.max(-1).values.mean()), rel=1e-5)


def test_accuracy_by_iterations_routes_with_each_r_and_restores_the_models_own(model, images):
    labels = torch.arange(6)
    batches = Batches((images, labels), 3)
    by_r = accuracy_by_iterations(model, batches, iterations=(1, 3))
    for r, acc in by_r.items():
        with torch.no_grad():
            expected = (model(images, routing_iterations=r).lengths.argmax(1) == labels).float().mean().item()
        assert acc == pytest.approx(expected)
    assert model.routing_iterations == 3


def test_entropy_and_polarisation_run_from_uniform_to_one_parent():
    uniform, one = torch.full((4,), 0.25), torch.tensor([0.0, 1.0, 0.0, 0.0])
    assert entropy(uniform).item() == pytest.approx(1.0) and entropy(one).item() == pytest.approx(0.0, abs=1e-6)
    assert polarisation(uniform).item() == pytest.approx(0.0) and polarisation(one).item() == pytest.approx(1.0)
    assert polarisation(torch.tensor([0.5, 0.5, 0.0, 0.0])).item() == pytest.approx(1 / 3)


def test_weighting_by_vote_length_lets_the_children_that_vote_decide():
    values, weights = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert weighted_mean(values, weights) == 0.0 and weighted_mean(values, torch.ones(2)) == 0.5


def test_routing_polarises_the_couplings_and_the_weighted_measures_are_reported_beside_the_plain_ones(
        model, images):
    stats = coupling_statistics(model, images, iterations=4)
    assert stats["polarisation"][0] == pytest.approx(0.0, abs=1e-6)
    assert stats["weighted_entropy"][0] == pytest.approx(1.0)
    assert np.all(np.diff(stats["polarisation"]) > 0) and np.all(np.diff(stats["weighted_polarisation"]) > 0)
    assert np.all(np.diff(stats["weighted_entropy"]) < 0)
