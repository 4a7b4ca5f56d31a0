"""Efficient-CapsNet (Mazzia et al., 2021): its layers, its parameter count, its registry entry, and that it learns."""
import pytest
import torch

from capsedu import CapsNetOutput, count_parameters
from capsedu.efficient_capsnet import EfficientCapsNet, EfficientCapsNetConfig
from capsedu.losses import margin_loss
from capsedu.models import MODELS, build_model, model_record
from capsedu.training.objectives import MarginLoss, default_objective


def test_the_mnist_network_has_the_papers_161824_parameters_and_the_decoder_adds_its_three_layers():
    assert count_parameters(EfficientCapsNet(reconstruction=False)) == 161_824
    decoder = 160 * 512 + 512 + 512 * 1024 + 1024 + 1024 * 784 + 784
    assert count_parameters(EfficientCapsNet()) == 161_824 + decoder


def test_shapes_from_image_to_class_capsules(rng):
    net = EfficientCapsNet(reconstruction=False).eval()
    images = torch.rand(3, 1, 28, 28, generator=rng)
    assert net.features(images).shape == (3, 128, 9, 9)
    u = net.primary_capsules(images)
    assert u.shape == (3, 16, 8) and (u.norm(dim=-1) < 1).all()
    assert net.predictions(images).shape == (3, 16, 10, 16)
    out = net(images)
    assert isinstance(out, CapsNetOutput) and out.reconstructions is None
    assert out.poses.shape == (3, 10, 16) and ((out.lengths >= 0) & (out.lengths < 1)).all()


def test_the_decoder_reconstructs_the_labelled_class_and_otherwise_the_longest(rng):
    net = EfficientCapsNet().eval()
    images = torch.rand(2, 1, 28, 28, generator=rng)
    labels = torch.tensor([3, 7])
    out = net(images, labels)
    torch.testing.assert_close(out.reconstructions, net.reconstruct(out.poses, labels))
    torch.testing.assert_close(net(images).reconstructions, net.reconstruct(out.poses, out.lengths.argmax(dim=1)))


def test_it_is_registered_and_rebuilt_from_its_record():
    net = EfficientCapsNet(routing="dynamic", reconstruction=False)
    name, config = model_record(net)
    assert name == "efficient-capsnet" and MODELS[name] is EfficientCapsNet
    rebuilt = build_model(name, config)
    assert type(rebuilt) is EfficientCapsNet and rebuilt.config == net.config
    rebuilt.load_state_dict(net.state_dict())
    # another routing changes only the routing's own parameters: self-attention's prior has 10 x 16
    assert count_parameters(EfficientCapsNet(reconstruction=False)) - count_parameters(net) == 160


def test_the_paper_objective_is_the_margin_loss():
    assert isinstance(default_objective(EfficientCapsNet()), MarginLoss)


@pytest.mark.parametrize("overrides, message", [
    ({"image_size": 10}, r"too small for its convolutions \(at least 11\)"),
    ({"conv_channels": (32, 64, 128)}, "conv_channels must have 4 widths"),
    ({"primary_dim": 6}, "must be a multiple of primary_dim"),
    ({"routing": "capsule"}, "EfficientCapsNet routing must be one of"),
    ({"n_classes": 0}, "n_classes"),
    ({"depth": 3}, "unknown EfficientCapsNet config keys"),
])
def test_bad_sizes_are_rejected_with_one_line_errors(overrides, message):
    with pytest.raises(ValueError, match=message) as error:
        EfficientCapsNet(**overrides)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="preset"):
        EfficientCapsNetConfig.from_preset("cifar10")


def test_a_few_steps_fit_a_small_batch(rng, one_thread):
    torch.manual_seed(0)
    net = EfficientCapsNet(reconstruction=False)
    images = torch.rand(16, 1, 28, 28, generator=rng)
    labels = torch.arange(16) % 10
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = margin_loss(net(images).lengths, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
