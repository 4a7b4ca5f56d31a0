import re

import pytest
import torch

from capsedu import capsule_loss, margin_loss, reconstruction_loss
from capsedu.models import CapsNetOutput
from capsedu.objectives import MarginLoss


def literal_margin_loss(lengths, labels, m_pos=0.9, m_neg=0.1, lam=0.5):
    total = 0.0
    for n in range(lengths.shape[0]):
        for k in range(lengths.shape[1]):
            v = float(lengths[n, k])
            if k == int(labels[n]):
                total += max(0.0, m_pos - v) ** 2
            else:
                total += lam * max(0.0, v - m_neg) ** 2
    return total / lengths.shape[0]


def test_margin_loss_matches_equation_4(rng):
    lengths = torch.rand(8, 10, generator=rng, dtype=torch.float64)
    labels = torch.randint(0, 10, (8,), generator=rng)
    assert margin_loss(lengths, labels).item() == pytest.approx(literal_margin_loss(lengths, labels))
    assert margin_loss(lengths, labels, 0.8, 0.2, 0.25).item() == pytest.approx(
        literal_margin_loss(lengths, labels, 0.8, 0.2, 0.25))


def test_margin_loss_is_zero_when_margins_are_met():
    lengths = torch.full((3, 10), 0.05)
    labels = torch.tensor([1, 4, 9])
    lengths[torch.arange(3), labels] = 0.95
    assert margin_loss(lengths, labels).item() == 0.0


def test_margin_loss_down_weights_absent_classes_by_lambda():
    lengths = torch.zeros(1, 2)
    lengths[0, 1] = 0.6
    labels = torch.tensor([0])
    # present class 0 at length 0 costs 0.9^2; absent class 1 costs 0.5 * (0.6 - 0.1)^2
    assert margin_loss(lengths, labels).item() == pytest.approx(0.81 + 0.5 * 0.25)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8, torch.bool])
def test_margin_loss_accepts_multi_hot_labels_for_overlapping_digits(dtype):
    lengths = torch.tensor([[0.9, 0.95, 0.5]])
    multi = torch.tensor([[1.0, 1.0, 0.0]]).to(dtype)  # MultiMNIST: two ones per row
    assert margin_loss(lengths, multi).item() == pytest.approx(0.5 * 0.4 ** 2)


@pytest.mark.parametrize("bad", [2.0, -1.0, 0.5, float("nan")])
def test_margin_loss_rejects_multi_hot_targets_other_than_0_and_1_naming_labels(bad):
    multi = torch.tensor([[1.0, 0.0, 0.0], [0.0, bad, 1.0]])
    with pytest.raises(ValueError, match="multi-hot labels must contain only 0 and 1"):
        margin_loss(torch.rand(2, 3), multi)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_margin_loss_accepts_class_indices_of_any_integer_dtype(dtype):
    lengths = torch.rand(3, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 4, 9])
    assert margin_loss(lengths, labels.to(dtype)).item() == pytest.approx(margin_loss(lengths, labels).item())


def test_margin_loss_rejects_an_empty_batch_naming_lengths():
    with pytest.raises(ValueError, match=r"lengths: empty batch"):
        margin_loss(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long))


def test_margin_loss_rejects_integer_lengths():
    with pytest.raises(ValueError, match="lengths must be a floating-point tensor"):
        margin_loss(torch.ones(2, 10, dtype=torch.long), torch.tensor([0, 1]))


def test_margin_loss_in_float64_is_computed_and_returned_in_float64(rng):
    lengths = torch.rand(8, 10, generator=rng, dtype=torch.float64)
    labels = torch.randint(0, 10, (8,), generator=rng)
    loss = margin_loss(lengths, labels)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(literal_margin_loss(lengths, labels), rel=1e-14)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_margin_loss_of_half_precision_lengths_is_float32(rng, dtype):
    lengths = torch.rand(8, 10, generator=rng).to(dtype)
    labels = torch.randint(0, 10, (8,), generator=rng)
    loss = margin_loss(lengths, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, margin_loss(lengths.float(), labels))


@pytest.mark.parametrize("labels", [torch.tensor([10, 0]), torch.tensor([-1, 0])])
def test_margin_loss_rejects_labels_out_of_range(labels):
    with pytest.raises(ValueError, match="labels must lie in"):
        margin_loss(torch.rand(2, 10), labels)


def test_margin_loss_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="lengths"):
        margin_loss(torch.rand(2, 10, 1), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="batch size"):
        margin_loss(torch.rand(2, 10), torch.tensor([0, 1, 2]))


def test_reconstruction_loss_sums_squares_per_image_and_averages_over_batch(rng):
    rec = torch.rand(4, 1, 28, 28, generator=rng)
    img = torch.rand(4, 1, 28, 28, generator=rng)
    expected = sum(((rec[n] - img[n]) ** 2).sum().item() for n in range(4)) / 4
    assert reconstruction_loss(rec, img).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        reconstruction_loss(rec, img[:, :, :20])


def test_capsule_loss_adds_0_0005_times_reconstruction_error(rng):
    lengths = torch.rand(4, 10, generator=rng)
    labels = torch.randint(0, 10, (4,), generator=rng)
    rec = torch.rand(4, 1, 28, 28, generator=rng)
    img = torch.rand(4, 1, 28, 28, generator=rng)
    out = CapsNetOutput(lengths, torch.zeros(4, 10, 16), rec)
    expected = margin_loss(lengths, labels) + 0.0005 * reconstruction_loss(rec, img)
    torch.testing.assert_close(capsule_loss(out, img, labels), expected)
    no_decoder = CapsNetOutput(lengths, torch.zeros(4, 10, 16), None)
    torch.testing.assert_close(capsule_loss(no_decoder, img, labels), margin_loss(lengths, labels))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_capsule_loss_rejects_integer_images_naming_images_and_the_0_1_scale(rng, dtype):
    rec = torch.rand(2, 1, 28, 28, generator=rng)
    out = CapsNetOutput(torch.rand(2, 10, generator=rng), torch.zeros(2, 10, 16), rec)
    pixels = torch.randint(0, 256, (2, 1, 28, 28), generator=rng).to(dtype)
    with pytest.raises(ValueError, match=r"images must be a floating-point tensor scaled to \[0, 1\]"):
        capsule_loss(out, pixels, torch.tensor([1, 2]))


@pytest.mark.parametrize("dtype, expected", [(torch.float64, torch.float64), (torch.float16, torch.float32),
                                             (torch.bfloat16, torch.float32)])
def test_capsule_loss_of_float64_and_half_outputs_has_the_documented_dtype(rng, dtype, expected):
    lengths = torch.rand(4, 10, generator=rng)
    rec, img = torch.rand(4, 1, 28, 28, generator=rng), torch.rand(4, 1, 28, 28, generator=rng)
    labels = torch.randint(0, 10, (4,), generator=rng)
    out = CapsNetOutput(lengths.to(dtype), torch.zeros(4, 10, 16, dtype=dtype), rec.to(dtype))
    loss = capsule_loss(out, img.to(dtype), labels)
    assert loss.dtype == expected
    reference = capsule_loss(CapsNetOutput(lengths.to(dtype).float(), None, rec.to(dtype).float()),
                             img.to(dtype).float(), labels)
    torch.testing.assert_close(loss.float(), reference)


@pytest.mark.parametrize("constants, message", [
    ((0.9, 0.1, -0.5), "lam must be a finite number >= 0.0, got -0.5"),
    ((float("nan"), 0.1, 0.5), "m_pos must be a finite number, got nan"),
    ((0.9, float("inf"), 0.5), "m_neg must be a finite number, got inf"),
    ((0.9, 0.1, True), "lam must be a finite number >= 0.0, got True"),
])
def test_margin_loss_refuses_a_negative_lambda_and_margins_that_are_not_finite(constants, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        margin_loss(torch.rand(2, 10), torch.tensor([0, 1]), *constants)
    with pytest.raises(ValueError, match=re.escape(message)):
        MarginLoss(0.0, *constants)


@pytest.mark.parametrize("weight", [-0.0005, float("nan"), float("inf")])
def test_capsule_loss_refuses_the_reconstruction_weights_the_margin_objective_refuses(rng, weight):
    out = CapsNetOutput(torch.rand(2, 10, generator=rng), None, torch.rand(2, 1, 28, 28, generator=rng))
    with pytest.raises(ValueError, match="reconstruction_weight must be a finite number >= 0.0"):
        capsule_loss(out, torch.rand(2, 1, 28, 28, generator=rng), torch.tensor([1, 2]), reconstruction_weight=weight)
    with pytest.raises(ValueError, match="reconstruction_weight must be a finite number >= 0.0"):
        MarginLoss(reconstruction_weight=weight)


def test_reconstruction_loss_refuses_an_empty_batch_and_integer_pixels_in_one_line(rng):
    with pytest.raises(ValueError, match=r"images: empty batch \(shape \(0, 1, 28, 28\)\)"):
        reconstruction_loss(torch.zeros(0, 1, 28, 28), torch.zeros(0, 1, 28, 28))
    pixels = torch.randint(0, 256, (2, 1, 28, 28), generator=rng).to(torch.uint8)
    with pytest.raises(ValueError, match=r"images must be a floating-point tensor scaled to \[0, 1\]"):
        reconstruction_loss(torch.rand(2, 1, 28, 28, generator=rng), pixels)


def test_the_margin_objective_is_capsule_loss_split_into_its_named_terms(rng):
    lengths, labels = torch.rand(4, 10, generator=rng), torch.randint(0, 10, (4,), generator=rng)
    rec, img = torch.rand(4, 1, 28, 28, generator=rng), torch.rand(4, 1, 28, 28, generator=rng)
    out = CapsNetOutput(lengths, torch.zeros(4, 10, 16), rec)
    terms = MarginLoss(0.01, 0.8, 0.2, 0.25).loss(out, img, labels)
    assert set(terms) == {"margin", "reconstruction"}
    torch.testing.assert_close(sum(terms.values()), capsule_loss(out, img, labels, 0.8, 0.2, 0.25, 0.01))
    # several digits at once: the decoder reads the longest capsule, not a known digit, so no reconstruction term
    multi_hot = torch.zeros(4, 10).scatter_(1, labels[:, None], 1.0)
    torch.testing.assert_close(capsule_loss(out, img, multi_hot), margin_loss(lengths, multi_hot))
