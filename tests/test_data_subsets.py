"""capsedu.data.subsets and TrainConfig.train_subset_seed: seeded class-balanced training subsets."""
import pytest
import torch

from capsedu.checkpoint import load_checkpoint
from capsedu.data import DataError, ImageSplit
from capsedu.data.subsets import balanced_indices, balanced_subset
from capsedu.train import TrainConfig, fit
from run_fixtures import quiet, tiny_config


def _labels(seed=0, n=500):
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed))


def test_a_balanced_subset_holds_the_same_number_of_each_class():
    labels = _labels()
    index = balanced_indices(labels, 100, 10, seed=0)
    assert torch.bincount(labels[index], minlength=10).tolist() == [10] * 10
    assert index.unique().numel() == 100 and torch.equal(index, index.sort().values)


def test_the_remainder_goes_one_each_to_classes_chosen_by_the_seed():
    counts = torch.bincount(_labels()[balanced_indices(_labels(), 64, 10, seed=1)], minlength=10)
    assert sorted(counts.tolist()) == [6] * 6 + [7] * 4


def test_the_same_seed_draws_the_same_subset_and_another_seed_another():
    labels = _labels()
    assert torch.equal(balanced_indices(labels, 100, 10, 3), balanced_indices(labels, 100, 10, 3))
    assert not torch.equal(balanced_indices(labels, 100, 10, 3), balanced_indices(labels, 100, 10, 4))


def test_a_class_too_small_for_its_share_is_a_data_error_naming_it():
    labels = torch.tensor([0] * 50 + [1] * 3)
    with pytest.raises(DataError, match="class 1 has 3 examples, a balanced subset of 10 needs 5"):
        balanced_indices(labels, 10, 2, seed=0)


def test_an_impossible_size_is_refused():
    with pytest.raises(ValueError, match="1 to 500 examples, got 501"):
        balanced_indices(_labels(), 501, 10, seed=0)


def test_balanced_subset_keeps_images_with_their_labels_and_says_how_it_was_drawn():
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 2, 2).contiguous()
    split = ImageSplit(images, torch.arange(40) % 4, 4, "toy", "full", "here")
    sub = balanced_subset(split, 8, seed=2)
    assert torch.equal(sub.images[:, 0, 0, 0].long() % 4, sub.labels)
    assert "8 class-balanced examples (seed 2) of here" == sub.origin


def test_the_subset_seed_needs_a_training_limit():
    with pytest.raises(ValueError, match="--train-subset-seed draws --train-limit examples"):
        TrainConfig(train_subset_seed=0).validate()


def test_a_run_with_a_subset_seed_trains_on_a_balanced_draw_that_the_seed_changes(tmp_path):
    fingerprints = []
    for seed in (0, 1):
        config = tiny_config(tmp_path, epochs=1, train_limit=64, train_subset_seed=seed,
                             output=str(tmp_path / f"run{seed}"))
        result = fit(config, progress=False, log=quiet)
        fingerprints.append(load_checkpoint(result.checkpoint)["data"])
    assert [f["examples"] for f in fingerprints] == [64, 64]
    assert fingerprints[0]["sha256"] != fingerprints[1]["sha256"]
