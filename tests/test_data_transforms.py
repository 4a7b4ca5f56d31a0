"""Tests for capsedu.data.transforms: pixel scaling, shifts, padding, affine warps and the
Transform implementations (RandomShift, RandomPlacement, RandomCrop, RandomAffine; CenterCrop, CenterPad)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from capsedu.data import (
    CenterCrop, CenterPad, DeterministicTransform, RandomAffine, RandomCrop, RandomPlacement, RandomShift,
    RandomTransform, Transform, draw_shifts, load_mnist,
    pad_to, random_affine, random_shift, shift_images, to_float,
)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """The first 16 shipped test digits as float32 (16, 1, 28, 28)."""
    return to_float(load_mnist("test", subset=True).images[:16])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- to_float


def test_to_float_scales_uint8_to_the_unit_range_keeping_the_shape(rng):
    x = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8, generator=rng)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0, 255
    out = to_float(x)
    assert out.shape == (2, 3, 5, 4) and out.dtype == torch.float32
    assert out.min() == 0 and out.max() == 1 and torch.allclose(out * 255, x.float())


def test_to_float_only_casts_floating_images():
    x = torch.full((1, 1, 2, 2), 0.25, dtype=torch.float64)
    out = to_float(x)
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((1, 1, 2, 2), 0.25))


def test_to_float_rejects_images_without_a_channel_axis_and_integer_types():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got \(2, 28, 28\)"):
        to_float(torch.zeros(2, 28, 28, dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch.int32"):
        to_float(torch.zeros(2, 1, 28, 28, dtype=torch.int32))


# ----------------------------------------------------------------------------- shifts


def test_random_shift_with_zero_max_shift_is_identity_and_draws_nothing(rng):
    x = torch.rand(4, 1, 28, 28, generator=rng)
    g = gen(5)
    before = g.get_state()
    assert random_shift(x, max_shift=0, generator=g) is x
    assert torch.equal(g.get_state(), before)


def _reference_shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Literal per-image shift: roll, then blank what wrapped around."""
    out = np.roll(img, (dy, dx), axis=(-2, -1))
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


def test_random_shift_matches_per_image_roll_with_zero_fill(rng):
    x = torch.rand(12, 2, 9, 11, generator=rng, dtype=torch.float64)  # non-square, two channels
    shifts = draw_shifts(12, 3, gen(7))
    out = random_shift(x, max_shift=3, generator=gen(7))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert shifts.abs().max() <= 3
    for b, (dx, dy) in enumerate(shifts.tolist()):
        np.testing.assert_array_equal(out[b].numpy(), _reference_shift(x[b].numpy(), dx, dy))


def test_shift_images_moves_content_right_and_down_for_positive_shifts():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    out = shift_images(x, torch.tensor([[1, -2]]))  # dx=+1 (right), dy=-2 (up)
    assert out[0, 0, 0, 3] == 1.0 and out.sum() == 1.0


def test_random_shift_never_increases_mass(rng):
    x = torch.rand(64, 1, 28, 28, generator=rng)
    out = random_shift(x, max_shift=5, generator=rng)
    assert (out.sum(dim=(1, 2, 3)) <= x.sum(dim=(1, 2, 3)) + 1e-4).all()


def test_random_shift_covers_every_offset_in_range(rng):
    x = torch.zeros(2000, 1, 11, 11)
    x[:, :, 5, 5] = 1.0  # one bright pixel: where it lands is the shift
    out = random_shift(x, max_shift=2, generator=rng)
    flat = out.view(2000, -1).argmax(dim=1)
    dy, dx = flat // 11 - 5, flat % 11 - 5
    assert torch.equal(out.view(2000, -1).sum(1), torch.ones(2000))
    seen = set(zip(dx.tolist(), dy.tolist()))
    assert seen == {(a, b) for a in range(-2, 3) for b in range(-2, 3)}


def test_random_shift_transform_draws_draw_shifts_and_applies_shift_images(rng):
    x = torch.rand(10, 3, 8, 8, generator=rng)
    t = RandomShift(2)
    params = t.draw(10, gen(3))
    assert params.dtype == torch.int64 and params.shape == (10, 2)
    assert torch.equal(params, draw_shifts(10, 2, gen(3)))
    assert torch.equal(t.apply(x, params), shift_images(x, params))
    assert torch.equal(t(x, gen(3)), random_shift(x, 2, gen(3)))
    assert t.output_shape(3, 8, 8) == (3, 8, 8)


def test_random_shift_rejects_a_negative_range():
    with pytest.raises(ValueError, match="max_shift must be >= 0, got -1"):
        RandomShift(-1)
    with pytest.raises(ValueError, match="max_shift must be >= 0"):
        random_shift(torch.zeros(1, 1, 4, 4), -1)


# ----------------------------------------------------------------------------- the transform interface


ALL_TRANSFORMS = [RandomShift(2), RandomPlacement(40), RandomCrop(20), CenterCrop(20), CenterPad(40), RandomAffine()]


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda t: type(t).__name__)
def test_every_transform_has_the_declared_output_shape_and_keeps_dtype(transform, digits):
    x = digits.repeat(1, 2, 1, 1)  # (16, 2, 28, 28): channels are carried along
    out = transform(x, gen())
    assert isinstance(transform, Transform)
    assert out.shape == (16, *transform.output_shape(2, 28, 28)) and out.dtype == x.dtype


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda t: type(t).__name__)
def test_every_transform_is_a_function_of_the_generator_state(transform, digits):
    a, b = transform(digits, gen(1)), transform(digits, gen(1))
    assert torch.equal(a, b)
    if isinstance(transform, RandomTransform):
        assert not torch.equal(a, transform(digits, gen(2)))


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda t: type(t).__name__)
def test_every_transform_draws_once_then_applies_the_same_params_to_any_slice(transform, digits):
    params = transform.draw(16, gen(4))
    whole = transform.apply(digits, params)
    halves = torch.cat([transform.apply(digits[:7], params[:7]), transform.apply(digits[7:], params[7:])])
    assert torch.equal(whole, halves)
    with pytest.raises(ValueError, match="7 sets of transform parameters for 16 images"):
        transform.apply(digits, params[:7])


# ----------------------------------------------------------------------------- placement and crops


def test_random_placement_keeps_the_whole_digit_on_the_canvas(digits):
    out = RandomPlacement(40)(digits, gen(0))  # (16, 1, 40, 40)
    assert out.shape == (16, 1, 40, 40)
    # all ink survives and the digit itself is unchanged: it sits at one integer offset in 0..12
    assert torch.allclose(out.sum(dim=(1, 2, 3)), digits.sum(dim=(1, 2, 3)))
    for b in range(16):
        found = [(x, y) for y in range(13) for x in range(13)
                 if torch.equal(out[b, :, y:y + 28, x:x + 28], digits[b])]
        assert found, f"digit {b} is not a translated copy"


def test_random_placement_reaches_every_position_on_a_non_square_canvas():
    x = torch.ones(3000, 1, 2, 3)
    out = RandomPlacement((5, 7))(x, gen(0))  # margins: 3 rows, 4 columns
    assert out.shape == (3000, 1, 5, 7) and torch.equal(out.sum(dim=(1, 2, 3)), torch.full((3000,), 6.0))
    tops = out[:, 0].sum(dim=2).gt(0).float().argmax(dim=1)  # first inked row
    lefts = out[:, 0].sum(dim=1).gt(0).float().argmax(dim=1)
    assert set(zip(lefts.tolist(), tops.tolist())) == {(x, y) for x in range(5) for y in range(4)}


def test_random_placement_on_a_canvas_the_size_of_the_image_is_the_identity(digits):
    assert torch.equal(RandomPlacement(28)(digits, gen(0)), digits)


def test_random_crop_cuts_in_range_windows_and_reaches_every_position():
    h, w, size = 6, 5, 3
    x = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).expand(2000, 2, h, w)  # pixel value = position
    out = RandomCrop(size)(x, gen(0))
    assert out.shape == (2000, 2, size, size)
    top, left = (out[:, 0, 0, 0] // w).long(), (out[:, 0, 0, 0] % w).long()
    assert set(zip(left.tolist(), top.tolist())) == {(a, b) for a in range(w - size + 1) for b in range(h - size + 1)}
    for b in range(0, 2000, 97):
        t, l = int(top[b]), int(left[b])
        assert torch.equal(out[b], x[b, :, t:t + size, l:l + size])


def test_center_crop_takes_the_middle_and_undoes_pad_to(digits):
    x = torch.arange(48.0).view(1, 1, 6, 8)
    assert torch.equal(CenterCrop((2, 4))(x), x[..., 2:4, 2:6])
    assert torch.equal(CenterCrop(28)(pad_to(digits, 40)), digits)
    assert torch.equal(CenterCrop(28)(pad_to(digits, 33)), digits)  # odd margin


@pytest.mark.parametrize("transform, message", [
    (RandomCrop(30), r"crop 30x30 is larger than the images \(28x28\)"),
    (CenterCrop((20, 29)), r"crop 20x29 is larger than the images \(28x28\)"),
    (RandomPlacement(27), r"canvas 27x27 is smaller than the images \(28x28\)"),
])
def test_transforms_reject_images_that_do_not_fit(transform, message, digits):
    with pytest.raises(ValueError, match=message):
        transform.output_shape(1, 28, 28)
    with pytest.raises(ValueError, match=message):
        transform(digits, gen())


@pytest.mark.parametrize("make, message", [
    (lambda: RandomCrop(0), "size must be >= 1 pixel"),
    (lambda: CenterCrop((3, -1)), "size must be >= 1 pixel"),
    (lambda: RandomPlacement(0), "canvas must be >= 1 pixel"),
    (lambda: RandomAffine(scale_range=(1.2, 0.8)), "scale_range"),
    (lambda: RandomAffine(max_rotation=-1.0), "max_rotation"),
])
def test_transforms_reject_impossible_settings(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ----------------------------------------------------------------------------- padding and affine warps


def test_pad_to_centres_digits_on_a_zero_canvas(rng):
    x = torch.rand(3, 1, 28, 28, generator=rng) + 0.1
    out = pad_to(x, 40)
    assert out.shape == (3, 1, 40, 40)
    assert torch.equal(out[..., 6:34, 6:34], x)
    assert out.sum() == pytest.approx(x.sum().item(), rel=1e-6)
    assert pad_to(x, (30, 31)).shape == (3, 1, 30, 31)
    with pytest.raises(ValueError, match=r"size 20x20 is smaller than the images \(28x28\)"):
        pad_to(x, 20)


def test_identity_affine_reproduces_the_padded_input(digits, rng):
    x = pad_to(digits, 40)
    out = random_affine(x, max_rotation=0.0, max_shear=0.0, scale_range=(1.0, 1.0), max_translate=0, generator=rng)
    assert out.shape == x.shape
    assert (out - x).abs().max() < 1e-5


def test_translation_only_affine_is_an_integer_pixel_shift(digits, rng):
    x = pad_to(digits, 40)
    out = random_affine(x, max_rotation=0.0, max_shear=0.0, scale_range=(1.0, 1.0), max_translate=3, generator=rng)
    errors = torch.stack([
        (out - shift_images(x, torch.tensor([[dx, dy]]).expand(16, 2))).abs().amax(dim=(1, 2, 3))
        for dx in range(-3, 4) for dy in range(-3, 4)
    ])  # (49, 16)
    assert (errors.min(dim=0).values < 1e-5).all()


def test_affine_shear_is_measured_in_pixels_on_non_square_images(rng):
    x = torch.zeros(64, 1, 21, 41)
    x[:, :, 2:19, 20] = 1.0  # a vertical bar; shear x' = x + s * y tilts it to slope s
    out = random_affine(x, max_rotation=0.0, max_shear=0.5, scale_range=(1.0, 1.0), max_translate=0, generator=rng)
    ys, xs = torch.arange(21.0), torch.arange(41.0)
    mass = out[:, 0].sum(dim=2)  # (64, 21) ink per row
    rows = mass > 0.5
    centre = (out[:, 0] * xs).sum(dim=2) / mass.clamp_min(1e-6)  # (64, 21) ink centroid per row
    slopes = []
    for b in range(64):
        y, c = ys[rows[b]], centre[b][rows[b]]
        slopes.append(((y - y.mean()) * (c - c.mean())).sum() / ((y - y.mean()) ** 2).sum())
    slopes = torch.stack(slopes)
    assert slopes.abs().max() <= 0.5 + 1e-3 and slopes.abs().max() > 0.3


def test_affine_downscaling_shrinks_the_ink(digits, rng):
    x = pad_to(digits, 40)
    out = random_affine(x, max_rotation=0.0, max_shear=0.0, scale_range=(0.5, 0.5), max_translate=0, generator=rng)
    ratio = out.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert ((ratio > 0.15) & (ratio < 0.35)).all()  # area scales by 0.5 * 0.5


def test_random_affine_params_stay_in_their_ranges():
    params = RandomAffine(max_rotation=30.0, max_shear=0.2, scale_range=(0.9, 1.1), max_translate=2).draw(500, gen())
    assert params.shape == (500, 6) and params.dtype == torch.float64
    angle, shear, scale, shift = params[:, 0], params[:, 1], params[:, 2:4], params[:, 4:6]
    assert angle.abs().max() <= np.deg2rad(30.0) and shear.abs().max() <= 0.2
    assert scale.min() >= 0.9 and scale.max() <= 1.1
    assert set(shift.flatten().tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}


def test_center_pad_is_the_test_view_of_random_placement():
    from capsedu.data import CenterPad, RandomPlacement, pad_to

    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    pad = CenterPad(40)
    assert pad.draw(4).shape == (4, 0)  # deterministic: nothing drawn
    out = pad.apply(images, pad.draw(4))
    assert torch.equal(out, pad_to(images, 40))
    assert pad.output_shape(1, 28, 28) == RandomPlacement(40).output_shape(1, 28, 28) == (1, 40, 40)
    with pytest.raises(ValueError, match="smaller than the images"):
        CenterPad(20).output_shape(1, 28, 28)


def test_the_place_recipe_trains_on_random_positions_and_tests_centred():
    from capsedu.data import CenterPad, RandomPlacement, data_transforms

    assert data_transforms("mnist", "place", canvas_size=40) == (RandomPlacement(40), CenterPad(40))
    with pytest.raises(ValueError, match="needs --canvas-size"):
        data_transforms("mnist", "place")
    with pytest.raises(ValueError, match="--canvas-size applies to --augment place only"):
        data_transforms("mnist", "shift", canvas_size=40)


@pytest.mark.parametrize("transform", [CenterCrop(20), CenterPad(40)], ids=lambda t: type(t).__name__)
def test_central_crops_and_pads_are_deterministic_transforms_that_consume_no_randomness(transform, digits):
    assert isinstance(transform, DeterministicTransform) and not isinstance(transform, RandomTransform)
    g = gen()
    before = g.get_state()
    params = transform.draw(16, g)
    assert params.shape == (16, 0) and torch.equal(g.get_state(), before)
    assert torch.equal(transform(digits, g), transform(digits))
