"""Tests for the data sets derived from MNIST: MultiMNIST and the generated affNIST-like test set."""
from __future__ import annotations

import pytest
import torch

from capsedu.data import ImageSplit, load_mnist, make_affine_test, make_multimnist, pad_to, to_float


@pytest.fixture(scope="module")
def subset_test() -> ImageSplit:
    return load_mnist("test", subset=True)


# ----------------------------------------------------------------------------- MultiMNIST


def test_multimnist_shapes_and_dtypes(subset_test):
    mm = make_multimnist(subset_test, 40, seed=1)
    assert len(mm) == 40
    for t in (mm.images, mm.first, mm.second):
        assert t.shape == (40, 1, 36, 36) and t.dtype == torch.float32
        assert t.min() >= 0 and t.max() <= 1
    assert mm.labels.shape == (40, 10) and mm.labels.dtype == torch.float32
    assert mm.first_label.dtype == torch.int64 and mm.second_label.shape == (40,)


def test_multimnist_pairs_two_digits_of_different_classes(subset_test):
    mm = make_multimnist(subset_test, 200, seed=2)
    assert (mm.first_label != mm.second_label).all()
    assert torch.equal(mm.labels.sum(1), torch.full((200,), 2.0))
    assert set(mm.labels.unique().tolist()) == {0.0, 1.0}
    rows = torch.arange(200)
    assert (mm.labels[rows, mm.first_label] == 1).all() and (mm.labels[rows, mm.second_label] == 1).all()


def test_multimnist_image_is_the_saturating_overlay_of_its_two_digits(subset_test):
    mm = make_multimnist(subset_test, 50, seed=3)
    assert torch.equal(mm.images, torch.clamp(mm.first + mm.second, max=1.0))
    assert (mm.first.sum(dim=(1, 2, 3)) > 0).all() and (mm.second.sum(dim=(1, 2, 3)) > 0).all()


def test_multimnist_keeps_whole_digits_inside_the_canvas(subset_test):
    mm = make_multimnist(subset_test, 300, max_shift=4, seed=4)
    masses = to_float(subset_test.images).sum(dim=(1, 2, 3))  # (N,)
    # shifts of up to 4 px inside a 4 px margin lose nothing: each digit's ink equals some source digit's
    for digit in (mm.first[:20], mm.second[:20]):
        got = digit.sum(dim=(1, 2, 3))
        assert ((got[:, None] - masses[None, :]).abs().min(dim=1).values < 1e-3).all()


def test_multimnist_is_deterministic_given_seed(subset_test):
    a, b, c = (make_multimnist(subset_test, 30, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_multimnist_reproduces_the_pairs_of_earlier_releases(subset_test):
    # values made with the single-module implementation this package replaced: seeds keep meaning the same data
    mm = make_multimnist(subset_test, 8, seed=0)
    assert mm.first_label.tolist() == [3, 2, 1, 2, 9, 8, 8, 9]
    assert mm.second_label.tolist() == [5, 3, 0, 5, 6, 2, 0, 2]
    assert mm.images.sum().item() == pytest.approx(1494.10595703125, rel=1e-6)
    expected_first = [74.0941162, 135.7451019, 57.5254936, 114.6509781, 84.6039200, 96.7137375, 121.8862762, 107.5176468]
    assert mm.first.sum(dim=(1, 2, 3)).tolist() == pytest.approx(expected_first, rel=1e-6)


def test_multimnist_takes_the_number_of_classes_from_the_split():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 1, 20, 24), dtype=torch.uint8, generator=g)
    split = ImageSplit(images, torch.arange(12) % 3 + 2, 5, "toy", "generated", "test")  # classes 2..4 of 0..4
    mm = make_multimnist(split, 30, seed=0)
    assert mm.images.shape == (30, 1, 28, 32) and mm.labels.shape == (30, 5)
    assert mm.labels[:, :2].sum() == 0 and (mm.first_label != mm.second_label).all()


def test_multimnist_needs_class_indices_and_two_classes():
    images = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    one_class = ImageSplit(images, torch.zeros(4, dtype=torch.int64), 10, "toy", "generated", "test")
    with pytest.raises(ValueError, match="at least two classes"):
        make_multimnist(one_class, 5)
    multi_hot = ImageSplit(images, torch.eye(4), 4, "toy", "generated", "test")
    with pytest.raises(ValueError, match="class-index labels"):
        make_multimnist(multi_hot, 5)
    with pytest.raises(ValueError, match="n must be an integer >= 0, got -1"):
        make_multimnist(one_class, -1)


# ----------------------------------------------------------------------------- affNIST-like set


def test_make_affine_test_gives_a_generated_split_with_the_sources_labels(subset_test):
    affine = make_affine_test(subset_test, n=32, seed=0)
    assert isinstance(affine, ImageSplit)
    assert (affine.name, affine.source, affine.n_classes) == ("affnist-like", "generated", 10)
    assert "seed 0" in affine.origin and subset_test.origin in affine.origin
    assert affine.images.shape == (32, 1, 40, 40) and affine.images.dtype == torch.float32
    assert torch.equal(affine.labels, subset_test.labels[:32])
    assert affine.images.min() >= 0 and affine.images.max() <= 1


def test_make_affine_test_is_deterministic_given_seed_and_actually_warps(subset_test):
    images = make_affine_test(subset_test, n=32, seed=0).images
    again = make_affine_test(subset_test, n=32, seed=0).images
    other = make_affine_test(subset_test, n=32, seed=1).images
    assert torch.equal(images, again) and not torch.equal(images, other)
    assert not torch.allclose(images, pad_to(to_float(subset_test.images[:32]), 40))


def test_make_affine_test_reproduces_the_images_of_earlier_releases(subset_test):
    # ink per image, made with the single-module implementation this package replaced
    expected = [154.725967, 139.081024, 172.501129, 153.172119, 75.761139, 113.684845, 92.963295, 93.870849]
    ink = make_affine_test(subset_test, n=8, seed=0).images.sum(dim=(1, 2, 3))
    assert ink.tolist() == pytest.approx(expected, rel=1e-5)


def test_make_affine_test_honours_range_overrides_and_rejects_unknown_ones(subset_test):
    still = make_affine_test(subset_test, n=8, seed=0, max_rotation=0.0, max_shear=0.0, scale_range=(1.0, 1.0),
                             max_translate=0)
    assert (still.images - pad_to(to_float(subset_test.images[:8]), 40)).abs().max() < 1e-5
    assert len(make_affine_test(subset_test, n=10**6)) == len(subset_test)
    with pytest.raises(TypeError, match="max_rotate"):
        make_affine_test(subset_test, n=8, max_rotate=10.0)
