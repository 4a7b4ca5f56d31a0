"""Helpers behind chapters 4-6: architecture table, margin-loss and decoder figures and widgets."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from capsedu import CapsNet, margin_loss  # noqa: E402
from capsedu.short_runs import length_cross_entropy, margin_plus_reconstruction, heldout_accuracy, train_steps  # noqa: E402
from capsedu.summary import layer_table, routing_macs, routing_memory_bytes, time_layers, totals  # noqa: E402
from capsedu import viz, widgets  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These tests run tiny tensors, where a second intra-op thread costs more than it saves
    # (and far more on a shared, busy CPU); restore the setting for the other test files.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def paper_rows():
    torch.manual_seed(0)
    return {r.name: r for r in layer_table(CapsNet("paper"))}


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return CapsNet("small").eval()


# ---- chapter 4: shapes, parameters, compute ----

def test_paper_layer_params_match_hand_arithmetic(paper_rows):
    assert paper_rows["conv1"].params == 9 * 9 * 1 * 256 + 256 == 20_992
    assert paper_rows["PrimaryCaps"].params == 9 * 9 * 256 * 256 + 256 == 5_308_672
    assert paper_rows["DigitCaps u_hat"].params == 1152 * 10 * 16 * 8 == 1_474_560
    assert paper_rows["decoder"].params == (160 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784) == 1_411_344


def test_paper_layer_shapes_come_from_forward_pass(paper_rows):
    assert paper_rows["conv1"].output_shape == (256, 20, 20)
    assert paper_rows["PrimaryCaps"].output_shape == (6 * 6 * 32, 8)
    assert paper_rows["DigitCaps u_hat"].output_shape == (1152, 10, 16)
    assert paper_rows["routing (r=3)"].output_shape == (10, 16)
    assert paper_rows["decoder"].output_shape == (1, 28, 28)


def test_paper_multiply_adds_per_layer(paper_rows):
    assert paper_rows["conv1"].macs == 20 * 20 * 256 * 81 == 8_294_400
    assert paper_rows["PrimaryCaps"].macs == 6 * 6 * 256 * (81 * 256) == 191_102_976
    assert paper_rows["DigitCaps u_hat"].macs == 1_474_560
    assert paper_rows["routing (r=3)"].macs == 5 * 1152 * 10 * 16
    assert paper_rows["decoder"].macs == 160 * 512 + 512 * 1024 + 1024 * 784 == 1_409_024


def test_totals_with_and_without_decoder(paper_rows):
    t = totals(list(paper_rows.values()))
    assert t["params"] == 8_215_568
    assert t["params_without_decoder"] == 6_804_224
    assert t["macs"] - t["macs_without_decoder"] == 1_409_024


def test_routing_macs_skip_agreement_in_last_iteration():
    assert routing_macs(1152, 10, 16, 1) == 1152 * 10 * 16
    assert routing_macs(1152, 10, 16, 3) == 3 * 184_320 + 2 * 184_320


def test_routing_memory_is_batch_times_predictions():
    assert routing_memory_bytes(128, 1152, 10, 16) == 128 * 1152 * 10 * 16 * 4


def test_conv_linear_macs_counts_every_convolution_and_linear_layer():
    from capsedu import BaselineCNN
    from capsedu.summary import conv_linear_macs

    tiny = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(18, 4))
    assert conv_linear_macs(tiny, (1, 5, 5)) == 2 * 3 * 3 * 9 + 18 * 4
    paper = {r.name: r.macs for r in layer_table(CapsNet("paper"))}
    assert conv_linear_macs(CapsNet("paper")) == paper["conv1"] + paper["PrimaryCaps"] + paper["decoder"]
    # the paper's baseline: three 5x5 'same' convolutions at 28x28, then FC 328, 192, 10
    expected = 784 * 25 * (1 * 256 + 256 * 256 + 256 * 128) + 128 * 784 * 328 + 328 * 192 + 192 * 10
    assert conv_linear_macs(BaselineCNN()) == expected


def test_layer_table_rejects_other_image_size(small_model):
    with pytest.raises(ValueError, match="image_size=32"):
        layer_table(small_model, image_size=32)


def test_layer_table_follows_config_of_bigger_images():
    rows = {r.name: r for r in layer_table(CapsNet("small", image_size=36, reconstruction=False))}
    assert rows["conv1"].output_shape == (64, 28, 28)
    assert rows["PrimaryCaps"].output_shape == (10 * 10 * 16, 8)  # (28 - 9) // 2 + 1 = 10
    assert "decoder" not in rows


def test_time_layers_reports_every_stage(small_model):
    times = time_layers(small_model, batch_size=2, repeats=1)
    assert set(times) == {"conv1", "PrimaryCaps", "DigitCaps u_hat", "routing", "decoder"}
    assert all(t > 0 for t in times.values())


def test_architecture_widget_slider_updates_table():
    w = widgets.architecture_widget("paper")
    assert w.state["totals"]["params"] == 8_215_568
    w.controls["conv_channels"].value = 128                 # as if the reader moved the slider
    rows = {r.name: r for r in w.state["rows"]}
    assert rows["conv1"].params == 81 * 128 + 128
    assert rows["PrimaryCaps"].params == 81 * 128 * 256 + 256
    assert "128" in w.children[-1].value.replace(",", "")


def test_architecture_widget_preset_resets_sliders():
    w = widgets.architecture_widget("paper")
    w.update(primary_types=8)
    assert w.state["config"]["primary_types"] == 8
    state = w.update(preset="small")
    assert state["config"]["conv_channels"] == 64 and state["config"]["primary_types"] == 16
    assert state["totals"]["params"] == 2_817_552
    with pytest.raises(ValueError, match="unknown control"):
        w.update(kernel=3)


def test_diagram_and_cost_plots_show_table_values(paper_rows):
    rows = list(paper_rows.values())
    _, labels = viz.draw_capsnet_diagram(rows)
    assert len(labels) == len(rows)
    assert "1152 x 10 x 16" in labels[3] and "5,308,672 params" in labels[2]
    drawn = viz.plot_layer_costs(rows, times={"conv1": 0.1, "routing": 0.2})
    assert drawn["names"][0] == "conv1"
    np.testing.assert_array_equal(drawn["params"], [r.params for r in rows[1:]])
    assert drawn["times"][drawn["names"].index("routing (r=3)")] == pytest.approx(0.2)


# ---- chapter 5: margin loss ----

def test_margin_loss_curves_match_eq5_and_derivative():
    c = viz.margin_loss_curves(0.9, 0.1, 0.5, lengths=torch.tensor([0.0, 0.05, 0.5, 0.95]))
    np.testing.assert_allclose(c["present"], [0.81, 0.85 ** 2, 0.16, 0.0], atol=1e-6)
    np.testing.assert_allclose(c["absent"], [0.0, 0.0, 0.5 * 0.16, 0.5 * 0.85 ** 2], atol=1e-6)
    np.testing.assert_allclose(c["d_present"], [-1.8, -1.7, -0.8, 0.0], atol=1e-5)
    np.testing.assert_allclose(c["d_absent"], [0.0, 0.0, 0.4, 0.85], atol=1e-5)


def test_margin_loss_widget_slider_redraws_with_library_loss():
    w = widgets.margin_loss_widget()
    w.controls["m_pos"].value = 0.7
    w.controls["lam"].value = 1.0
    s = w.state
    assert (s["m_pos"], s["lam"]) == (0.7, 1.0)
    lengths = torch.as_tensor(s["lengths"])
    for k in (0, 50, 120, 200):
        x = lengths[k].reshape(1, 1)
        assert s["present"][k] == pytest.approx(float(margin_loss(x, torch.ones(1, 1), 0.7, 0.1, 1.0)), abs=1e-6)
        assert s["absent"][k] == pytest.approx(float(margin_loss(x, torch.zeros(1, 1), 0.7, 0.1, 1.0)), abs=1e-6)
    assert s["present"][lengths >= 0.7].max() == 0.0
    line = s["figure"].axes[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), s["present"])


def test_training_curves_are_running_means():
    drawn = viz.plot_training_curves({"a": {"loss": [4, 2, 0, 2], "accuracy": [0, 1, 1, 0]}}, smooth=2)
    np.testing.assert_allclose(drawn["a"]["loss"], [3, 1, 1])
    np.testing.assert_allclose(drawn["a"]["accuracy"], [0.5, 1, 0.5])


def test_train_steps_records_every_step_and_parts():
    torch.manual_seed(0)
    model = CapsNet("small", conv_channels=8, primary_types=2, decoder_hidden=(16, 16))
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.rand(4, 1, 28, 28, generator=gen), torch.tensor([0, 1, 2, 3]))]
    loss_fn = margin_plus_reconstruction(0.0005)
    hist = train_steps(model, batches, loss_fn, steps=3)   # cycles over the one batch
    assert len(hist["loss"]) == len(hist["accuracy"]) == len(hist["reconstruction"]) == 3
    assert hist["loss"][0] == pytest.approx(hist["margin"][0] + 0.0005 * hist["reconstruction"][0], rel=1e-5)
    assert hist["loss"][-1] < hist["loss"][0]
    assert 0.0 <= heldout_accuracy(model, batches[0][0], batches[0][1]) <= 1.0


def test_length_cross_entropy_uses_scaled_lengths_as_logits():
    class Out:
        lengths = torch.tensor([[0.9, 0.1], [0.2, 0.3]])
    loss = length_cross_entropy(10.0)(Out, None, torch.tensor([0, 1]))
    expected = torch.nn.functional.cross_entropy(10 * Out.lengths, torch.tensor([0, 1]))
    assert float(loss) == pytest.approx(float(expected))


# ---- chapter 6: decoder ----

def test_perturbation_grid_tweaks_one_dimension(small_model):
    pose = torch.linspace(-0.2, 0.2, 16)
    grid = viz.perturbation_grid(small_model, pose, digit=3)
    assert grid.shape == (16, 11, 28, 28)
    caps = torch.zeros(1, 10, 16)
    caps[0, 3] = pose
    caps[0, 3, 5] += 0.15
    with torch.no_grad():
        expected = small_model.reconstruct(caps, torch.tensor([3]))[0, 0]
    torch.testing.assert_close(grid[5, 8], expected)                     # delta index 8 = +0.15
    torch.testing.assert_close(grid[0, 5], grid[15, 5])                  # delta 0: unchanged pose
    tiled = viz.plot_perturbation_grid(grid)
    assert tiled.shape == (16 * 28, 11 * 28)


def test_perturbation_widget_image_is_decoder_of_perturbed_pose(small_model):
    gen = torch.Generator().manual_seed(0)
    poses = torch.randn(10, 16, generator=gen) * 0.2
    w = widgets.perturbation_widget(small_model, poses, digit=0)
    w.controls["digit"].value = 7
    w.controls["d2"].value = 0.2                                          # the reader drags slider "dim 2"
    caps = torch.zeros(1, 10, 16)
    caps[0, 7] = poses[7]
    caps[0, 7, 2] += 0.2
    with torch.no_grad():
        expected = small_model.reconstruct(caps, torch.tensor([7]))[0, 0].numpy()
    np.testing.assert_allclose(w.state["image"], expected, atol=1e-6)
    assert w.state["offsets"][2] == pytest.approx(0.2)
    w.children[0].children[1].click()                                     # reset button
    assert not w.state["offsets"].any()


def test_show_image_rows_lays_out_grid():
    imgs = torch.rand(5, 1, 28, 28)
    fig = viz.show_image_rows([imgs, imgs[:, 0]], row_titles=["in", "out"], captions=list("abcde"))
    assert len(fig.axes) == 10
    assert fig.axes[0].get_title() == "a"
    np.testing.assert_allclose(fig.axes[6].images[0].get_array(), imgs[1, 0].numpy())
