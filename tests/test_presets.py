"""Section 7's networks and training recipes: the CIFAR-10, smallNORB and SVHN presets, the
none-of-the-above routing category, and how TrainConfig picks augmentation, test crops and presets."""
from __future__ import annotations

import pytest
import torch

from capsedu.data import Batches, CenterCrop, RandomCrop, RandomShift, data_transforms, recipe_for
from capsedu.functional import squash
from capsedu.layers import DigitCaps
from capsedu.models import PRESETS, CapsNet, build_model, count_parameters, model_record
from capsedu.objectives import MarginLoss
from capsedu.train import TrainConfig, checkpoint_test_transform, model_input_shape, resume_differences


def conv_params(c_in: int, c_out: int, k: int = 9) -> int:
    return c_in * c_out * k * k + c_out


def decoder_params(widths) -> int:
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


# ----------------------------------------------------------------------------- the presets


@pytest.mark.parametrize("preset, c, size, n_classes, conv, types, p_dim, d_dim, grid", [
    ("cifar10", 3, 24, 10, 256, 64, 8, 16, 4),    # 24 -> conv 16 -> primary (16 - 9) // 2 + 1 = 4
    ("smallnorb", 2, 32, 5, 256, 32, 8, 16, 8),   # 32 -> 24 -> 8
    ("svhn", 3, 32, 10, 64, 16, 6, 8, 8),
])
def test_each_preset_has_the_papers_sizes_and_the_parameters_they_imply(preset, c, size, n_classes, conv, types,
                                                                        p_dim, d_dim, grid):
    net = CapsNet(preset)
    cfg = net.config
    assert (cfg.in_channels, cfg.image_size, cfg.n_classes, cfg.conv_channels) == (c, size, n_classes, conv)
    assert (cfg.primary_types, cfg.primary_dim, cfg.digit_dim, cfg.routing_iterations) == (types, p_dim, d_dim, 3)
    assert cfg.n_primary == grid * grid * types
    expected = (conv_params(c, conv) + conv_params(conv, types * p_dim) + cfg.n_primary * n_classes * d_dim * p_dim
                + decoder_params([n_classes * d_dim, 512, 1024, c * size * size]))
    assert count_parameters(net) == expected
    out = net(torch.rand(2, c, size, size), torch.tensor([0, 1]))
    assert out.lengths.shape == (2, n_classes) and out.poses.shape == (2, n_classes, d_dim)
    assert out.reconstructions.shape == (2, c, size, size)


def test_only_the_cifar10_preset_has_a_none_of_the_above_category():
    assert [name for name, cfg in PRESETS.items() if cfg.none_of_the_above] == ["cifar10"]
    assert CapsNet("cifar10").digits.none_of_the_above


def test_the_category_adds_no_parameters():
    assert count_parameters(CapsNet("cifar10")) == count_parameters(CapsNet("cifar10", none_of_the_above=False))


# ----------------------------------------------------------------------------- none-of-the-above


def leaky_routing_reference(u_hat: torch.Tensor, iterations: int):
    """Procedure 1 with one extra softmax entry whose logit stays 0 (the authors' ``_leaky_routing``)."""
    batch, n_in, n_out, _ = u_hat.shape
    b = u_hat.new_zeros(batch, n_in, n_out)
    for _ in range(iterations):
        c = torch.softmax(torch.cat([b.new_zeros(batch, n_in, 1), b], dim=2), dim=2)[..., 1:]  # (B, n_in, n_out)
        v = squash((c.unsqueeze(-1) * u_hat).sum(dim=1), dim=-1)                                # (B, n_out, d)
        b = b + (u_hat * v.unsqueeze(1)).sum(dim=-1)
    return v, c


@pytest.mark.parametrize("iterations", [1, 3])
def test_none_of_the_above_routes_exactly_like_a_softmax_entry_fixed_at_zero(rng, iterations):
    layer = DigitCaps(n_in=12, in_dim=4, n_out=3, out_dim=5, iterations=iterations, none_of_the_above=True).double()
    with torch.no_grad():
        layer.weight.normal_(0, 0.5, generator=rng)
    u = squash(torch.randn(2, 12, 4, generator=rng, dtype=torch.float64), dim=-1)
    v, c = layer(u, return_couplings=True)
    v_ref, c_ref = leaky_routing_reference(layer.predictions(u), iterations)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(c, c_ref)
    assert v.shape == (2, 3, 5) and c.shape == (2, 12, 3)
    assert bool((c.sum(dim=-1) < 1).all())  # the category took the rest of every softmax
    if iterations == 1:
        torch.testing.assert_close(c, torch.full_like(c, 1 / 4))


def test_without_the_category_the_couplings_sum_to_one_and_the_routes_differ(rng):
    torch.manual_seed(0)
    with_nota = DigitCaps(n_in=12, in_dim=4, n_out=3, out_dim=5, none_of_the_above=True)
    plain = DigitCaps(n_in=12, in_dim=4, n_out=3, out_dim=5)
    plain.load_state_dict(with_nota.state_dict())
    u = squash(torch.randn(2, 12, 4, generator=rng), dim=-1)
    _, c_plain = plain(u, return_couplings=True)
    torch.testing.assert_close(c_plain.sum(dim=-1), torch.ones(2, 12))
    assert not torch.allclose(plain(u), with_nota(u))


def test_the_margin_loss_trains_a_network_with_the_category_through_routing(rng):
    net = CapsNet("small", in_channels=3, image_size=24, none_of_the_above=True)
    images, labels = torch.rand(4, 3, 24, 24, generator=rng), torch.tensor([0, 1, 2, 3])
    result = MarginLoss()(net, images, labels)
    result.loss.backward()
    assert result.output.lengths.shape == (4, 10)  # the category is not a class
    assert float(net.digits.weight.grad.abs().sum()) > 0 and float(net.conv1.weight.grad.abs().sum()) > 0


def test_checkpoint_records_keep_the_category_and_older_records_build_without_it():
    name, config = model_record(CapsNet("cifar10"))
    assert config["none_of_the_above"] is True
    assert build_model(name, config).digits.none_of_the_above
    older = CapsNet("small").config.to_dict()
    assert "none_of_the_above" not in older  # recorded as before the category existed
    assert not build_model("capsnet", older).digits.none_of_the_above
    with pytest.raises(ValueError, match="none_of_the_above must be True or False"):
        CapsNet("small", none_of_the_above=1)


# ----------------------------------------------------------------------------- recipes and TrainConfig


@pytest.mark.parametrize("dataset, train, test, preset", [
    ("mnist", RandomShift(2), None, "small"),
    ("cifar10", RandomCrop(24), CenterCrop(24), "cifar10"),
    ("smallnorb", RandomCrop(32), CenterCrop(32), "smallnorb"),
    ("svhn", None, None, "svhn"),
])
def test_auto_means_the_papers_recipe_for_each_data_set(dataset, train, test, preset):
    config = TrainConfig(dataset=dataset).validate()
    assert config.transforms() == (train, test) == data_transforms(dataset)
    assert config.resolved_preset() == preset == recipe_for(dataset).preset
    assert TrainConfig(dataset=dataset, model="baseline").validate().resolved_preset() == "small"


def test_explicit_augmentation_choices_override_the_recipe():
    assert TrainConfig(dataset="cifar10", augment="none").transforms() == (None, None)
    assert TrainConfig(dataset="cifar10", augment="shift", augment_shift=3).transforms() == (RandomShift(3), None)
    assert TrainConfig(dataset="cifar10", crop_size=28).transforms() == (RandomCrop(28), CenterCrop(28))
    assert TrainConfig(dataset="mnist", augment="crop", crop_size=24).transforms() == (RandomCrop(24), CenterCrop(24))
    assert TrainConfig(dataset="mnist", augment_shift=0).transforms() == (None, None)
    assert TrainConfig(dataset="svhn", preset="small").resolved_preset() == "small"


@pytest.mark.parametrize("settings, message", [
    (dict(crop_size=20), "--crop-size applies to crop augmentation only"),
    (dict(augment="crop"), "--augment crop needs --crop-size for mnist"),
    (dict(augment="flip"), "--augment must be one of"),
    (dict(dataset="cifar10", crop_size=0), "--crop-size must be an integer >= 1"),
    (dict(preset="huge"), "--preset must be one of"),
    (dict(model="baseline", preset="cifar10"), "for the baseline"),
])
def test_settings_that_cannot_work_are_refused_in_one_line(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings).validate()


def test_the_model_is_built_for_the_cropped_size_and_test_crops_must_agree():
    assert model_input_shape((3, 32, 32), (3, 32, 32), RandomCrop(24), CenterCrop(24)) == (3, 24, 24)
    assert model_input_shape((1, 28, 28), (1, 28, 28), RandomShift(2), None) == (1, 28, 28)
    with pytest.raises(ValueError, match="3x24x24 after RandomCrop.* but test images are 3x32x32"):
        model_input_shape((3, 32, 32), (3, 32, 32), RandomCrop(24), None)


def test_test_batches_are_the_central_crop_every_time(rng):
    images = torch.randint(0, 256, (5, 2, 48, 48), dtype=torch.uint8, generator=rng)
    batches = Batches((images, torch.zeros(5, dtype=torch.long)), 5, augment=CenterCrop(32))
    first, second = next(iter(batches))[0], next(iter(batches))[0]
    assert first.shape == (5, 2, 32, 32) and torch.equal(first, second)
    torch.testing.assert_close(first, images[:, :, 8:40, 8:40].float() / 255)


def test_resume_treats_auto_as_what_it_stands_for():
    def refused(saved, requested):
        return resume_differences(TrainConfig(**saved), TrainConfig(**requested))[0]

    assert refused(dict(preset="small"), dict(preset="auto")) == []  # runs from before "auto" continue
    assert refused(dict(dataset="cifar10"), dict(dataset="cifar10", preset="cifar10", augment="crop")) == []
    assert refused(dict(dataset="cifar10"), dict(dataset="cifar10", augment="none")) == ["--augment 'none' "
                                                                                         "(checkpoint: 'auto')"]
    assert refused(dict(dataset="cifar10"), dict(dataset="cifar10", crop_size=28)) == ["--crop-size 28 "
                                                                                       "(checkpoint: None)"]
    assert refused(dict(dataset="svhn"), dict(dataset="svhn", preset="paper")) == ["--preset 'paper' "
                                                                                   "(checkpoint: 'auto')"]


def test_evaluation_uses_the_test_transform_a_checkpoint_was_trained_with():
    assert checkpoint_test_transform({"dataset": "smallnorb", "augment": "auto"}) == CenterCrop(32)
    assert checkpoint_test_transform({"dataset": "cifar10", "crop_size": 28, "a_future_setting": 1}) == CenterCrop(28)
    assert checkpoint_test_transform({"dataset": "mnist", "preset": "small"}) is None  # older checkpoints
    assert checkpoint_test_transform({}) is None
