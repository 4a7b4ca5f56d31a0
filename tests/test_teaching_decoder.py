"""capsedu.teaching.decoder: decoding one capsule and perturbing its dimensions (paper Fig. 4)."""
import pytest
import torch

from capsedu import CapsNet
from capsedu.teaching.decoder import (PERTURBATION_DELTAS, decode_capsule, perturbation_effects, perturbation_grid,
                                      rank_dimensions)


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return CapsNet("small").eval()


def _reconstruct(model, pose, digit):
    caps = torch.zeros(1, 10, 16)
    caps[0, digit] = pose
    with torch.no_grad():
        return model.reconstruct(caps, torch.tensor([digit]))[0, 0]


def test_deltas_are_the_papers_steps_of_0_05_in_plus_minus_0_25():
    assert len(PERTURBATION_DELTAS) == 11 and PERTURBATION_DELTAS[5] == 0.0
    assert PERTURBATION_DELTAS[0] == -0.25 and PERTURBATION_DELTAS[-1] == 0.25
    assert all(b - a == pytest.approx(0.05) for a, b in zip(PERTURBATION_DELTAS, PERTURBATION_DELTAS[1:]))


def test_decode_capsule_masks_every_other_digit(small_model):
    poses = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    images = decode_capsule(small_model, poses, digit=4)
    assert images.shape == (2, 28, 28)
    for k in range(2):
        torch.testing.assert_close(images[k], _reconstruct(small_model, poses[k], 4))


def test_perturbation_grid_tweaks_one_dimension_per_row(small_model):
    pose = torch.linspace(-0.2, 0.2, 16)
    grid = perturbation_grid(small_model, pose, digit=3)
    assert grid.shape == (16, 11, 28, 28)
    torch.testing.assert_close(grid[5, 8], _reconstruct(small_model, pose + 0.15 * torch.eye(16)[5], 3))  # +0.15
    torch.testing.assert_close(grid[0, 5], grid[15, 5])                  # delta 0: the unchanged pose
    torch.testing.assert_close(grid[0, 5], _reconstruct(small_model, pose, 3))


def test_perturbation_grid_takes_chosen_dimensions_and_deltas(small_model):
    pose = torch.zeros(16)
    grid = perturbation_grid(small_model, pose, digit=1, deltas=(-0.1, 0.3), dims=[2, 9])
    assert grid.shape == (2, 2, 28, 28)
    torch.testing.assert_close(grid[1, 1], _reconstruct(small_model, 0.3 * torch.eye(16)[9], 1))


def test_perturbation_effects_measure_the_change_from_the_unperturbed_column():
    grid = torch.zeros(3, 3, 2, 2)                   # 3 dimensions, deltas (-0.1, 0, 0.1), 2x2 images
    grid[:, 1] = 0.5                                 # the unperturbed reconstruction, the same in every row
    grid[0, 0], grid[0, 2] = 0.5, 0.5                # dim 0 changes nothing
    grid[1, 0], grid[1, 2] = 0.4, 0.7                # dim 1: 0.1 and 0.2 per pixel
    grid[2, 0], grid[2, 2] = 0.5, 0.45               # dim 2: 0 and 0.05
    effects = perturbation_effects(grid, deltas=(-0.1, 0.0, 0.1))
    torch.testing.assert_close(effects, torch.tensor([0.0, 0.15, 0.025]))
    dims, ranked = rank_dimensions(grid, deltas=(-0.1, 0.0, 0.1), dims=[4, 7, 9])
    assert dims == [7, 9, 4]
    torch.testing.assert_close(ranked, torch.tensor([0.15, 0.025, 0.0]))
    with pytest.raises(ValueError, match="0"):
        perturbation_effects(grid, deltas=(-0.1, 0.05, 0.1))
    with pytest.raises(ValueError, match="rows"):
        rank_dimensions(grid, deltas=(-0.1, 0.0, 0.1), dims=[1, 2])


def test_rank_dimensions_of_a_model_puts_the_dimension_the_decoder_reads_most_first(small_model):
    pose = torch.full((16,), 0.1)
    grid = perturbation_grid(small_model, pose, digit=2)
    dims, effects = rank_dimensions(grid)
    assert sorted(dims) == list(range(16)) and (effects[:-1] >= effects[1:]).all()
    centre = _reconstruct(small_model, pose, 2)
    by_hand = torch.stack([(grid[dims[0], k] - centre).abs().mean() for k in range(11) if k != 5]).mean()
    torch.testing.assert_close(effects[0], by_hand)
    # make one dimension dominate: scale up the decoder's input weights of dimension 2*16 + 11
    with torch.no_grad():
        first = small_model.decoder.net[0]
        saved = first.weight.clone()
        first.weight[:, 2 * 16 + 11] *= 50
        try:
            assert rank_dimensions(perturbation_grid(small_model, pose, digit=2))[0][0] == 11
        finally:
            first.weight.copy_(saved)
