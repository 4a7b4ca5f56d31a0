"""capsedu.teaching.decoder: decoding one capsule and perturbing its dimensions (paper Fig. 4)."""
import pytest
import torch

from capsedu import CapsNet
from capsedu.teaching.decoder import PERTURBATION_DELTAS, decode_capsule, perturbation_grid


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
