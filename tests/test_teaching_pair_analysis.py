"""capsedu.teaching.pair_analysis: MultiMNIST error by overlap, at least one digit right, test-time routing."""
import math

import pytest
import torch

from capsedu.checkpoint import load_model
from capsedu.data import Pairs, load_split, pair_test_batches
from capsedu.models import CapsNet
from capsedu.teaching.pair_analysis import at_least_one_right, error_by_overlap, pair_results, routing_sweep
from capsedu.train import TrainConfig, evaluate
from experiments.runner import REPO


class ScoresInTheCorner(torch.nn.Module):
    """A stand-in model whose class scores are the first ten pixels of each image's top row."""

    def forward(self, images):
        return images[:, 0, 0, :10]


def _batch(scores, labels, boxes):
    """Pairs whose overlay carries ``scores`` and whose digits are the rectangles ``boxes`` ((top, left) each)."""
    n = len(scores)
    overlay = torch.zeros(n, 1, 36, 36)
    overlay[:, 0, 0, :10] = torch.tensor(scores)
    first, second = torch.zeros(n, 1, 36, 36), torch.zeros(n, 1, 36, 36)
    for i, ((t1, l1), (t2, l2)) in enumerate(boxes):
        first[i, 0, t1:t1 + 10, l1:l1 + 10] = 1
        second[i, 0, t2:t2 + 10, l2:l2 + 10] = 1
    return Pairs(overlay, first, second), torch.tensor(labels)


@pytest.fixture()
def results():
    one_hot = lambda *ks: [1.0 if k in ks else 0.0 for k in range(10)]  # noqa: E731
    batch = _batch([one_hot(1, 2), one_hot(1, 5), one_hot(7, 8)], [[1, 2], [1, 2], [3, 4]],
                   [((5, 5), (5, 5)), ((5, 5), (5, 10)), ((0, 0), (20, 20))])   # overlaps 1, 0.5, 0
    return pair_results(ScoresInTheCorner(), [batch])


def test_pair_results_counts_the_classes_found_among_the_top_two_and_measures_each_overlap(results):
    assert results.found.tolist() == [2, 1, 0]
    assert results.overlap.tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert results.error == pytest.approx(2 / 3) and at_least_one_right(results) == pytest.approx(2 / 3)


def test_error_by_overlap_puts_each_pair_in_its_bin_and_the_last_bin_includes_full_overlap(results):
    rows = error_by_overlap(results, edges=(0.0, 0.5, 0.9, 1.0))
    assert [(r["pairs"], r["error"]) for r in rows] == [(1, 1.0), (1, 1.0), (1, 0.0)]
    assert math.isnan(error_by_overlap(results, edges=(0.0, 0.2, 0.4, 0.5, 1.0))[1]["error"])
    with pytest.raises(ValueError, match="increasing"):
        error_by_overlap(results, edges=(0.5, 0.5))


def test_an_empty_set_of_pairs_is_refused():
    with pytest.raises(ValueError, match="no pairs"):
        pair_results(ScoresInTheCorner(), [])


@pytest.fixture(scope="module")
def shipped():
    model, _ = load_model(REPO / "capsedu" / "assets" / "multimnist_capsnet_small.pt")
    test = load_split("mnist", "test", subset=True)
    return model.float().eval(), pair_test_batches(test, 50, limit=100)


def test_the_shipped_models_error_is_the_papers_rule_that_training_reports(shipped):
    model, batches = shipped
    objective = TrainConfig(dataset="multimnist", model="capsnet").build_objective()
    assert pair_results(model, batches).error == pytest.approx(evaluate(model, batches, objective)["error"])


def test_the_routing_sweep_scores_each_r_and_restores_the_models_own(shipped):
    model, batches = shipped
    sweep = routing_sweep(model, batches, iterations=(1, 3))
    assert set(sweep) == {1, 3} and all(0.0 <= e <= 1.0 for e in sweep.values())
    assert sweep[3] == pytest.approx(pair_results(model, batches).error) and model.routing_iterations == 3


def test_pair_results_leaves_a_training_model_in_training_mode():
    net = CapsNet("small", image_size=36).train()
    test = load_split("mnist", "test", subset=True)
    pair_results(net, pair_test_batches(test, 10, limit=10))
    assert net.training
