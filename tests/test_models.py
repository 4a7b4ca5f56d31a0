import json
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from capsedu import BaselineCNN, CapsNet, DigitCaps, PrimaryCaps, count_parameters, dynamic_routing
from capsedu.models import MODELS, PRESETS, BaselineCNNConfig, CapsNetConfig, build_model, model_record
from capsedu.routing import MAX_ITERATIONS


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return CapsNet("small").eval()


def test_paper_capsnet_has_8_2m_parameters_and_6_8m_without_decoder():
    assert count_parameters(CapsNet()) == 8_215_568
    assert count_parameters(CapsNet(reconstruction=False)) == 6_804_224


def test_paper_parameter_counts_per_layer_match_hand_arithmetic():
    net = CapsNet()
    assert count_parameters(net.conv1) == 9 * 9 * 1 * 256 + 256
    assert count_parameters(net.primary) == 9 * 9 * 256 * 256 + 256
    assert count_parameters(net.digits) == 1152 * 10 * 8 * 16  # one 16x8 W_ij per pair, no bias
    assert count_parameters(net.decoder) == (160 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784)


def test_baseline_cnn_has_about_35_4m_parameters():
    assert count_parameters(BaselineCNN()) == 35_445_522  # "35.4M" in section 5
    assert BaselineCNN().eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_baseline_cnn_has_the_layers_of_section_5():
    net = BaselineCNN()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [256, 256, 128]
    assert all(c.kernel_size == (5, 5) and c.stride == (1, 1) for c in convs)
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [328, 192, 10]


def test_baseline_cnn_has_exactly_one_dropout_right_before_the_final_linear_layer():
    layers = list(BaselineCNN().modules())
    dropouts = [i for i, m in enumerate(layers) if isinstance(m, nn.Dropout)]
    linears = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    assert len(dropouts) == 1
    assert dropouts[0] == linears[-1] - 1  # "connected with dropout to a 10 class softmax layer"
    assert layers[dropouts[0]].p == 0.5


def test_baseline_cnn_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    net = BaselineCNN(channels=(4, 4, 4), hidden=(8, 8))
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), net(x))
        assert not torch.equal(net.train()(x), net(x))


def test_baseline_cnn_rejects_images_of_another_dtype_naming_images():
    message = r"images have dtype torch.float64 but the BaselineCNN's parameters are torch.float32"
    with pytest.raises(ValueError, match=message):
        BaselineCNN(channels=(4, 4, 4))(torch.rand(2, 1, 28, 28, dtype=torch.float64))


def test_baseline_cnn_config_round_trip_rebuilds_the_same_architecture():
    net = BaselineCNN(channels=(8, 8, 4), hidden=(16, 12), dropout=0.25)
    assert net.config == BaselineCNNConfig(channels=(8, 8, 4), hidden=(16, 12), dropout=0.25)
    clone = BaselineCNN.from_config(json.loads(json.dumps(net.config.to_dict())))
    assert clone.config == net.config and str(clone) == str(net)
    with pytest.raises(ValueError, match="unknown BaselineCNN config keys"):
        BaselineCNN.from_config({"width": 3})
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        BaselineCNN(kernel_size=4)


def test_model_registry_maps_names_to_the_models():
    from capsedu.efficient_capsnet import EfficientCapsNet
    assert MODELS == {"capsnet": CapsNet, "baseline": BaselineCNN, "efficient-capsnet": EfficientCapsNet}


@pytest.mark.parametrize("name, cls", [("capsnet", CapsNet), ("baseline", BaselineCNN),
                                       ("CapsNet", CapsNet), ("BaselineCNN", BaselineCNN)])
def test_build_model_by_registry_or_legacy_class_name_gives_the_paper_network(name, cls):
    model = build_model(name)
    assert type(model) is cls
    assert count_parameters(model) == {CapsNet: 8_215_568, BaselineCNN: 35_445_522}[cls]
    assert count_parameters(build_model(name, {})) == count_parameters(model)


def test_build_model_rejects_an_unknown_name_listing_the_choices():
    with pytest.raises(ValueError, match=r"unknown model 'resnet'; choose one of \['baseline', 'capsnet', 'efficient-capsnet'\]"):
        build_model("resnet")
    with pytest.raises(ValueError, match="unknown CapsNet config keys"):
        build_model("capsnet", {"depth": 3})


@pytest.mark.parametrize("model", [
    lambda: CapsNet("small", routing_iterations=2, reconstruction=False, decoder_hidden=(32,)),
    lambda: CapsNet("small", image_size=36, routing_gradient="last"),
    lambda: BaselineCNN(channels=(8, 8, 4), hidden=(16, 12), dropout=0.25, n_classes=5),
])
def test_model_record_rebuilds_the_same_architecture_through_json(model):
    model = model()
    name, config = model_record(model)
    assert name in MODELS
    name, config = json.loads(json.dumps([name, config]))  # what a checkpoint stores
    clone = build_model(name, config)
    assert type(clone) is type(model) and clone.config == model.config
    assert {k: v.shape for k, v in clone.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_model_record_looks_through_data_parallel_and_rejects_unregistered_models():
    net = CapsNet("small")
    assert model_record(nn.DataParallel(net)) == model_record(net) == ("capsnet", net.config.to_dict())
    with pytest.raises(ValueError, match="Linear is not a registered model"):
        model_record(nn.Linear(2, 2))


def test_paper_network_has_1152_primary_capsules_on_a_6x6_grid():
    net = CapsNet()
    assert net.config.primary_grid == 6 and net.config.n_primary == 1152
    u = net.primary_capsules(torch.rand(2, 1, 28, 28))
    assert u.shape == (2, 1152, 8)
    assert (u.norm(dim=-1) < 1).all()  # squashed


@pytest.mark.parametrize("preset", ["paper", "small"])
def test_output_shapes_for_both_presets(preset):
    torch.manual_seed(0)
    net = CapsNet(preset).eval()
    x = torch.rand(3, 1, 28, 28)
    out = net(x)
    assert out.lengths.shape == (3, 10)
    assert out.poses.shape == (3, 10, 16)
    assert out.reconstructions.shape == (3, 1, 28, 28)
    assert ((out.lengths >= 0) & (out.lengths < 1)).all()
    assert ((out.reconstructions >= 0) & (out.reconstructions <= 1)).all()
    assert net.predictions(x).shape == (3, net.config.n_primary, 10, 16)


def test_small_preset_needs_about_a_tenth_of_the_paper_compute():
    def conv_macs(cfg):
        conv_out = cfg.image_size - cfg.conv_kernel + 1
        conv1 = conv_out ** 2 * cfg.conv_channels * cfg.conv_kernel ** 2 * cfg.in_channels
        primary = cfg.primary_grid ** 2 * cfg.primary_types * cfg.primary_dim * cfg.primary_kernel ** 2 * cfg.conv_channels
        return conv1 + primary
    ratio = conv_macs(PRESETS["small"]) / conv_macs(PRESETS["paper"])
    assert 0.08 < ratio < 0.15


def test_without_decoder_there_are_no_reconstructions(small):
    net = CapsNet("small", reconstruction=False)
    assert net(torch.rand(2, 1, 28, 28)).reconstructions is None
    with pytest.raises(ValueError, match="no decoder"):
        net.reconstruct(torch.zeros(2, 10, 16), torch.tensor([0, 1]))


def test_reconstruction_is_masked_by_true_label_or_else_by_longest_capsule(small):
    x = torch.rand(4, 1, 28, 28)
    labels = torch.tensor([3, 1, 4, 1])
    with torch.no_grad():
        out = small(x, labels)
        torch.testing.assert_close(out.reconstructions, small.reconstruct(out.poses, labels))
        out_free = small(x)
        torch.testing.assert_close(out_free.reconstructions, small.reconstruct(out_free.poses, out_free.lengths.argmax(1)))
        # the decoder sees only the chosen capsule: changing another capsule changes nothing
        poses = out.poses.clone()
        poses[:, 0] += 5.0
        torch.testing.assert_close(small.reconstruct(poses, labels), out.reconstructions)


def test_digitcaps_predictions_equal_w_ij_times_u_i():
    torch.manual_seed(0)
    layer = DigitCaps(n_in=7, in_dim=8, n_out=3, out_dim=16)
    u = torch.randn(2, 7, 8)
    u_hat = layer.predictions(u)
    for i in range(7):
        for j in range(3):
            torch.testing.assert_close(u_hat[:, i, j], u[:, i] @ layer.weight[i, j].T)


def test_primary_caps_groups_channels_into_capsules():
    torch.manual_seed(0)
    layer = PrimaryCaps(in_channels=4, n_types=2, dim=3, kernel_size=3, stride=1)
    x = torch.randn(1, 4, 5, 5)
    out = layer(x)  # grid 3x3, 2 types -> 18 capsules of dim 3
    assert out.shape == (1, 18, 3)
    conv = layer.conv(x)  # (1, 6, 3, 3)
    from capsedu import squash
    # capsule of type 1 at grid position (row 2, col 0) is channels 3..5 at that position
    torch.testing.assert_close(out[0, 1 * 9 + 2 * 3 + 0], squash(conv[0, 3:6, 2, 0]))


def test_examples_are_classified_independently_of_the_batch(small):
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        full = small(x)
        for n in range(4):
            single = small(x[n:n + 1])
            torch.testing.assert_close(full.lengths[n:n + 1], single.lengths, rtol=1e-4, atol=1e-5)


def test_routing_iterations_can_change_at_run_time():
    torch.manual_seed(0)
    small = CapsNet("small").eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        small.digits.weight.mul_(100)  # untrained predictions are ~0 and agree on nothing; make them matter
        a = small(x, routing_iterations=1).lengths
        b = small(x, routing_iterations=5).lengths
        assert not torch.allclose(a, b)
        small.routing_iterations = 5
        torch.testing.assert_close(small(x).lengths, b)
        small.routing_iterations = 3
    with pytest.raises(ValueError, match="iterations"):
        small.routing_iterations = 0
    with pytest.raises(ValueError, match="iterations"):
        small(x, routing_iterations=0)


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 1, 32, 32), (2, 3, 28, 28), (28, 28)])
def test_wrong_image_shape_is_rejected_naming_the_expected_shape(small, shape):
    with pytest.raises(ValueError, match=r"images must have shape \(batch, 1, 28, 28\)"):
        small(torch.rand(*shape))


def test_integer_images_are_rejected(small):
    with pytest.raises(ValueError, match="floating point"):
        small(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_images_of_another_dtype_than_the_model_are_rejected_naming_images_and_both_dtypes(small, dtype):
    message = rf"images have dtype {dtype} but the CapsNet's parameters are torch.float32"
    with pytest.raises(ValueError, match=message):
        small(torch.rand(2, 1, 28, 28).to(dtype))
    with pytest.raises(ValueError, match=message):
        small.predictions(torch.rand(2, 1, 28, 28).to(dtype))


def test_a_float64_model_classifies_float64_images_in_float64(small):
    net = CapsNet("small", reconstruction=True)
    net.load_state_dict(small.state_dict())
    net = net.double().eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, ref = net(x.double()), small(x)
    assert out.lengths.dtype == out.poses.dtype == out.reconstructions.dtype == torch.float64
    torch.testing.assert_close(out.lengths.float(), ref.lengths, rtol=1e-4, atol=1e-6)


def test_a_half_precision_model_routes_in_float32_on_the_cpu():
    torch.manual_seed(0)
    net = CapsNet("small").half().eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, 28, 28).half(), torch.tensor([1, 2]))
    assert out.poses.dtype == out.lengths.dtype == torch.float32
    assert out.reconstructions.dtype == torch.float16
    assert torch.isfinite(out.lengths).all()


def test_an_empty_batch_of_images_is_rejected_naming_images(small):
    with pytest.raises(ValueError, match=r"images: empty batch \(shape \(0, 1, 28, 28\)\)"):
        small(torch.rand(0, 1, 28, 28))
    with pytest.raises(ValueError, match=r"images: empty batch"):
        small(torch.rand(0, 1, 28, 28), torch.zeros(0, dtype=torch.long))


def test_labels_of_any_integer_dtype_choose_the_reconstructed_capsule(small):
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(small(x, torch.tensor([3, 1], dtype=torch.int32)).reconstructions,
                                   small(x, torch.tensor([3, 1])).reconstructions)


@pytest.mark.parametrize("dtype, expected", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                             (torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
def test_digitcaps_accepts_float64_and_half_inputs_with_the_documented_output_dtype(dtype, expected):
    torch.manual_seed(0)
    layer = DigitCaps(n_in=7, in_dim=8, n_out=3, out_dim=4)
    u = torch.randn(2, 7, 8)
    v = layer(u.to(dtype))
    assert v.dtype == expected and v.shape == (2, 3, 4)
    tol = dict(rtol=1e-5, atol=1e-7) if dtype in (torch.float32, torch.float64) else dict(rtol=0.05, atol=1e-3)
    torch.testing.assert_close(v.float(), layer(u), **tol)


def test_digitcaps_rejects_integer_and_empty_inputs_naming_u():
    layer = DigitCaps(n_in=7, in_dim=8, n_out=3, out_dim=4)
    with pytest.raises(ValueError, match="u must be a floating-point tensor"):
        layer(torch.ones(2, 7, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"u: empty batch"):
        layer(torch.zeros(0, 7, 8))


@pytest.mark.parametrize("labels", [torch.tensor([0, 10]), torch.tensor([-1, 2])])
def test_labels_out_of_range_are_rejected(small, labels):
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\]"):
        small(torch.rand(2, 1, 28, 28), labels)


def test_bad_configurations_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="unknown CapsNet preset"):
        CapsNet("huge")
    with pytest.raises(ValueError, match="iterations"):
        CapsNet(routing_iterations=0)
    with pytest.raises(ValueError, match="too small"):
        CapsNet(image_size=16)
    with pytest.raises(ValueError, match="CapsNet conv_channels must be an integer >= 1, got 0"):
        CapsNet(conv_channels=0)
    with pytest.raises(ValueError, match=r"unknown CapsNet config keys: \['depth'\]"):
        CapsNet("small", depth=3)
    with pytest.raises(ValueError, match="decoder_hidden"):
        CapsNet("small", decoder_hidden=(32, 0))


def test_a_huge_routing_iteration_count_is_refused_everywhere_instead_of_running_for_ever(small):
    u = torch.rand(1, 3, 2, 4)
    for build in (lambda: CapsNet("small", routing_iterations=10 ** 9),
                  lambda: setattr(small, "routing_iterations", MAX_ITERATIONS + 1),
                  lambda: small(torch.rand(1, 1, 28, 28), routing_iterations=10 ** 9),
                  lambda: dynamic_routing(u, 10 ** 9),
                  lambda: DigitCaps(3, 4, 2, 4, iterations=10 ** 9)):
        with pytest.raises(ValueError, match=rf"iterations must be an integer in \[1, {MAX_ITERATIONS}\]"):
            build()
    assert CapsNet("small", routing_iterations=MAX_ITERATIONS).routing_iterations == MAX_ITERATIONS


def test_a_model_is_built_from_a_config_or_from_a_preset_with_overrides():
    config = CapsNetConfig.from_preset("small", image_size=36, reconstruction=False)
    assert config == replace(PRESETS["small"], image_size=36, reconstruction=False)
    assert CapsNet(config).config == CapsNet.from_preset("small", image_size=36, reconstruction=False).config \
        == CapsNet("small", image_size=36, reconstruction=False).config == config
    assert BaselineCNN.from_preset("small", image_size=36).config == BaselineCNNConfig(channels=(32, 32, 16),
                                                                                         image_size=36)
    with pytest.raises(ValueError, match="a CapsNetConfig or a preset name with overrides, not both"):
        CapsNet(config, image_size=28)
    with pytest.raises(ValueError, match="takes a CapsNetConfig or a preset name, got int"):
        CapsNet(3)


def test_a_config_is_checked_when_it_is_made_so_no_invalid_config_exists():
    with pytest.raises(ValueError, match="CapsNet primary_dim must be an integer >= 1, got True"):
        CapsNetConfig(primary_dim=True)
    with pytest.raises(ValueError, match="CapsNet routing_gradient must be one of"):
        replace(CapsNetConfig(), routing_gradient="some")
    with pytest.raises(ValueError, match="BaselineCNN dropout must be a finite number >= 0.0, got nan"):
        BaselineCNNConfig(dropout=float("nan"))
    with pytest.raises(ValueError, match="BaselineCNN channels must be a non-empty sequence"):
        BaselineCNNConfig(channels=())
    assert CapsNetConfig(decoder_hidden=[8, 4]).decoder_hidden == (8, 4)  # JSON lists become tuples


def test_config_round_trip_rebuilds_the_same_architecture():
    net = CapsNet("small", routing_iterations=2, reconstruction=False)
    clone = CapsNet.from_config(net.config.to_dict())
    assert clone.config == net.config
    assert count_parameters(clone) == count_parameters(net)


def test_other_input_sizes_work_for_multimnist_canvases():
    net = CapsNet("small", image_size=36).eval()
    assert net.config.n_primary == 10 * 10 * 16
    out = net(torch.rand(2, 1, 36, 36))
    assert out.reconstructions.shape == (2, 1, 36, 36)
