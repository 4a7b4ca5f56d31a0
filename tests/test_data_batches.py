"""Tests for capsedu.data.Batches: batch counts, order, augmentation, exact mid-epoch resume,
bit-identity with the earlier shift-only batcher, multi-hot labels and colour images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from capsedu.data import (
    Batches, CenterCrop, ImageSplit, RandomCrop, RandomPlacement, RandomShift, shift_images, to_float,
)


@pytest.fixture
def toy(rng):
    images = torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8, generator=rng)
    return images, torch.arange(50)  # labels name each example, so order is visible


def _collect(batches):
    return [(x.clone(), y.clone()) for x, y in batches]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_batches_counts_batches_with_and_without_drop_last(toy):
    assert len(Batches(toy, 16)) == 4 and len(list(Batches(toy, 16))) == 4
    assert len(Batches(toy, 16, drop_last=True)) == 3
    sizes = [len(y) for _, y in Batches(toy, 16, drop_last=True)]
    assert sizes == [16, 16, 16]
    assert [len(y) for _, y in Batches(toy, 16)] == [16, 16, 16, 2]
    assert len(Batches(toy, 10, drop_last=True)) == 5


def test_batches_yield_float_unit_range_images_matching_to_float(toy):
    images, labels = toy
    x, y = next(iter(Batches(toy, 8)))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, to_float(images[:8])) and torch.equal(y, labels[:8])


def test_batches_accept_an_image_split():
    split = ImageSplit(torch.zeros(5, 1, 28, 28, dtype=torch.uint8), torch.arange(5), 5, "toy", "generated", "test")
    assert [y.tolist() for _, y in Batches(split, 2)] == [[0, 1], [2, 3], [4]]


def test_shuffled_batches_visit_every_example_once_and_reshuffle_each_epoch(toy):
    b = Batches(toy, 16, shuffle=True, generator=torch.Generator().manual_seed(0))
    first = torch.cat([y for _, y in b])
    second = torch.cat([y for _, y in b])
    assert sorted(first.tolist()) == list(range(50)) and sorted(second.tolist()) == list(range(50))
    assert not torch.equal(first, second)


def test_batches_are_deterministic_given_a_seeded_generator(toy):
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return _collect(Batches(toy, 16, shuffle=True, augment=RandomShift(2), generator=g))

    a, b, c = run(3), run(3), run(4)
    assert _same(a, b)
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))


def test_random_shift_batches_are_bit_identical_to_the_shift_only_batcher(toy):
    """Runs started before augment= replaced augment_shift= must see the very same batches."""
    images, labels = toy
    got = _collect(Batches(toy, 16, shuffle=True, augment=RandomShift(2), generator=torch.Generator().manual_seed(21)))
    # the earlier algorithm, inline: one randperm, then every shift of the epoch, then batches in order
    g = torch.Generator().manual_seed(21)
    order = torch.randperm(50, generator=g)
    shifts = torch.randint(-2, 3, (50, 2), generator=g)
    assert len(got) == 4
    for i, (x, y) in enumerate(got):
        idx = order[16 * i:16 * (i + 1)]
        assert torch.equal(y, labels[idx])
        for row, (dx, dy) in zip(range(len(idx)), shifts[16 * i:16 * (i + 1)].tolist()):
            reference = np.roll(images[idx[row]].numpy().astype(np.float32) / 255, (dy, dx), axis=(-2, -1))
            reference[..., :max(dy, 0), :] = 0
            reference[..., reference.shape[-2] + min(dy, 0):, :] = 0
            reference[..., :max(dx, 0)] = 0
            reference[..., reference.shape[-1] + min(dx, 0):] = 0
            np.testing.assert_array_equal(x[row].numpy(), reference)


@pytest.mark.parametrize("augment", [RandomShift(2), RandomCrop(20), RandomPlacement(36)], ids=repr)
@pytest.mark.parametrize("k", [0, 1, 3, 4, 9])
def test_iter_from_k_equals_iterating_and_skipping_k(toy, k, augment):
    g_full, g_resume = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    full = _collect(Batches(toy, 16, shuffle=True, augment=augment, generator=g_full))
    resumed = _collect(Batches(toy, 16, shuffle=True, augment=augment, generator=g_resume).iter_from(k))
    assert len(resumed) == max(0, len(full) - k)
    assert _same(full[k:], resumed)
    assert torch.equal(g_full.get_state(), g_resume.get_state())  # the next epoch lines up too


def test_augmented_batches_are_shifted_copies_of_the_originals(toy):
    images, _ = toy
    for x, y in Batches(toy, 16, augment=RandomShift(2), generator=torch.Generator().manual_seed(0)):
        original = to_float(images[y])
        assert not torch.equal(x, original)
        assert (x.sum(dim=(1, 2, 3)) <= original.sum(dim=(1, 2, 3)) + 1e-4).all()
        assert any(torch.equal(x[0], shift_images(original[:1], torch.tensor([[dx, dy]]))[0])
                   for dx in range(-2, 3) for dy in range(-2, 3))


def test_a_deterministic_transform_changes_the_shape_and_consumes_no_randomness(toy):
    images, _ = toy
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    batches = _collect(Batches(toy, 16, augment=CenterCrop(24), generator=g))
    assert torch.equal(g.get_state(), before)
    assert all(x.shape[1:] == (1, 24, 24) for x, _ in batches)
    assert torch.equal(batches[0][0], to_float(images[:16])[..., 2:26, 2:26])


def test_limit_uses_only_the_first_examples(toy):
    assert torch.cat([y for _, y in Batches(toy, 8, limit=20)]).tolist() == list(range(20))
    shuffled = torch.cat([y for _, y in Batches(toy, 8, shuffle=True, limit=20,
                                                generator=torch.Generator().manual_seed(0))])
    assert sorted(shuffled.tolist()) == list(range(20))
    assert len(Batches(toy, 8, limit=20)) == 3 and Batches(toy, 8, limit=20).num_examples == 20


def test_batches_carry_multi_hot_labels_and_colour_images_through_random_crops(rng):
    images = torch.randint(0, 256, (30, 3, 32, 32), dtype=torch.uint8, generator=rng)
    labels = torch.zeros(30, 30)  # two classes per image, i and i + 1: every row is unique, so order is visible
    labels[torch.arange(30), torch.arange(30)] = 1.0
    labels[torch.arange(30), (torch.arange(30) + 1) % 30] = 1.0
    split = ImageSplit(images, labels, 30, "toy", "generated", "test")
    seen = []
    for x, y in Batches(split, 8, shuffle=True, augment=RandomCrop(24), generator=torch.Generator().manual_seed(2)):
        assert x.shape[1:] == (3, 24, 24) and x.dtype == torch.float32 and y.shape[1:] == (30,)
        for xi, yi in zip(x, y):
            row = int((split.labels == yi).all(dim=1).nonzero())  # the example this label belongs to
            original = to_float(images[row:row + 1])[0]  # (3, 32, 32)
            assert any(torch.equal(xi, original[:, t:t + 24, l:l + 24]) for t in range(9) for l in range(9))
            seen.append(row)
    assert sorted(seen) == list(range(30))


def test_batches_reject_bad_arguments_with_one_line_messages(toy):
    images, labels = toy
    with pytest.raises(ValueError, match="50 images but 49 labels"):
        Batches((images, labels[:49]), 8)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        Batches(toy, 0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        Batches((images[:, 0], labels), 8)
    with pytest.raises(ValueError, match=r"crop 30x30 is larger than the images \(28x28\)"):
        Batches(toy, 8, augment=RandomCrop(30))
    with pytest.raises(TypeError, match="augment must be a Transform"):
        Batches(toy, 8, augment=2)
    with pytest.raises(ValueError, match="start_batch must be an integer >= 0"):
        Batches(toy, 8).iter_from(-1)


def test_an_empty_split_is_refused_by_name_instead_of_yielding_no_batches():
    empty = ImageSplit(torch.zeros(0, 1, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), 10, "toy",
                       "generated", "an empty folder")
    with pytest.raises(ValueError, match=r"no examples to batch \(an empty folder\)"):
        Batches(empty, 8)
