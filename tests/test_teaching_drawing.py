"""The chapters' figures (each module's ``plot_*`` / ``draw_*``): every one draws exactly the data it is given
(headless)."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from capsedu.teaching import poses
from capsedu.teaching.agreement import (draw_capsule_schema, plot_coincidence, plot_couplings, plot_routing_dynamics,
                                        plot_votes)
from capsedu.teaching.architecture import LayerRow, draw_capsnet_diagram, plot_layer_costs
from capsedu.teaching.curves import plot_training_curves
from capsedu.teaching.decoder import draw_reconstruction, plot_perturbation_grid, plot_strongest_dimensions
from capsedu.teaching.images import draw_flow, show_image_rows, show_images
from capsedu.teaching.margin import plot_margin_loss
from capsedu.teaching.motivation import PART_TEMPLATES, draw_transforming_autoencoder, face_readout, plot_pooling_vs_pose
from capsedu.teaching.poses import draw_face_scene
from capsedu.teaching.squashing import draw_squash_2d, plot_length_histograms, plot_squash_1d, plot_squash_gradient


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def rows():
    return [LayerRow("input", (1, 28, 28), 0, 0), LayerRow("conv1", (256, 20, 20), 20_992, 8_294_400),
            LayerRow("routing (r=3)", (10, 16), 0, 921_600), LayerRow("decoder", (1, 28, 28), 1_411_344, 1_409_024)]


def test_show_images_draws_each_image_without_ticks():
    imgs = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    fig, axes = plt.subplots(1, 3)
    artists = show_images(axes, imgs, ["a", "b", "c"])
    np.testing.assert_array_equal(artists[2].get_array(), imgs[2, 0].numpy())
    assert axes[1].get_title() == "b" and list(axes[0].get_xticks()) == []


def test_show_image_rows_lays_out_grid():
    imgs = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    fig = show_image_rows([imgs, imgs[:, 0]], row_titles=["in", "out"], captions=list("abcde"))
    assert len(fig.axes) == 10
    assert fig.axes[0].get_title() == "a" and fig.axes[5].get_ylabel() == "out"
    np.testing.assert_allclose(fig.axes[6].images[0].get_array(), imgs[1, 0].numpy())


def test_face_scene_draws_the_outline_every_part_and_every_vote():
    whole = poses.pose2d(0.3, 1.0, 0.5, 1.2)
    placed = poses.place_parts(whole)
    _, ax = plt.subplots()
    drawn = draw_face_scene(ax, whole, placed, votes=poses.part_votes(placed))
    assert set(drawn["parts"]) == set(drawn["votes"]) == set(poses.FACE_PARTS)
    # every vote of a real face is the face itself: each dashed outline lies on the solid one
    np.testing.assert_allclose(drawn["votes"]["nose"].get_xydata(), drawn["outline"].get_xydata(), atol=1e-9)
    _, ax = plt.subplots()
    assert draw_face_scene(ax, None, placed)["outline"] is None


def test_pooling_panel_marks_each_detected_part_at_its_centre():
    readout = face_readout(shift=(1, 2))
    fig, axes = plt.subplots(1, 2)
    drawn = plot_pooling_vs_pose(axes, readout, list(PART_TEMPLATES))
    centres = readout["centres"].numpy()
    np.testing.assert_allclose(drawn["marks"].get_offsets(), centres[:, ::-1])  # scatter takes (x=col, y=row)
    assert [b.get_height() for b in drawn["bars"]] == readout["presence"].tolist()


def test_squash_plots_draw_the_given_values():
    fig, axes = plt.subplots(1, 3)
    s, v = np.linspace(-2, 2, 9), np.linspace(-0.8, 0.8, 9)
    line = plot_squash_1d(axes[0], s, v)
    np.testing.assert_array_equal(line.get_ydata(), v)
    norms = np.linspace(0.1, 3, 40)
    curve, points = plot_squash_gradient(axes[1], norms, norms * 2, norms * 3, every=4)
    np.testing.assert_array_equal(curve.get_ydata(), norms * 3)
    np.testing.assert_array_equal(points.get_ydata(), (norms * 2)[::4])
    drawn = draw_squash_2d(axes[2], torch.tensor([3.0, 4.0]), torch.tensor([0.6, 0.8]))
    assert [a.xy for a in drawn["arrows"]] == [(3.0, 4.0), pytest.approx((0.6, 0.8))]


def test_length_histograms_one_panel_per_dimension():
    rng = np.random.default_rng(0)
    lengths = {2: (rng.random(50), rng.random(50)), 16: (rng.random(50), rng.random(50))}
    fig, axes = plt.subplots(1, 2)
    drawn = plot_length_histograms(axes, lengths, bins=10)
    assert [ax.get_title() for ax in drawn] == ["d = 2", "d = 16"]
    assert len(axes[0].patches) == 20                                 # two histograms of 10 bins


def test_coincidence_plot_draws_one_line_per_threshold():
    _, ax = plt.subplots()
    curves = {0.8: np.array([0.2, 0.1, 0.05]), 0.9: np.array([0.1, 0.02, 0.004])}
    lines = plot_coincidence(ax, range(2, 5), curves)
    np.testing.assert_array_equal(lines[1].get_xdata(), [2, 3, 4])
    np.testing.assert_array_equal(lines[1].get_ydata(), curves[0.9])
    assert ax.get_yscale() == "log"


def test_votes_and_couplings_draw_one_arrow_and_one_number_per_vote():
    u_hat = torch.randn(7, 3, 2, generator=torch.Generator().manual_seed(0))
    c = torch.full((7, 3), 1 / 3)
    fig, axes = plt.subplots(1, 4)
    drawn = plot_votes(axes[:3], u_hat, c, torch.zeros(3, 2))
    assert [len(a) for a in drawn] == [7, 7, 7]
    im = plot_couplings(axes[3], c)
    assert im.get_array().shape == (7, 3) and len(axes[3].texts) == 21


def test_routing_dynamics_plot_draws_the_logit_changes_and_the_successive_steps():
    conv = {"logit_change": np.array([0.5, 0.3, 0.2]), "coupling_step": np.array([0.1, 0.01]),
            "output_step": np.array([0.2, 0.03])}
    fig, (a, b) = plt.subplots(1, 2)
    drawn = plot_routing_dynamics(a, b, conv)
    assert [bar.get_height() for bar in drawn["bars"]] == [0.5, 0.3, 0.2]
    np.testing.assert_array_equal(drawn["lines"][0].get_ydata(), [0.1, 0.01])
    np.testing.assert_array_equal(drawn["lines"][1].get_xdata(), [2, 3])        # step k compares k with k - 1
    assert b.get_yscale() == "log"


def test_diagram_and_cost_plots_show_table_values(rows):
    _, labels = draw_capsnet_diagram(rows)
    assert len(labels) == len(rows)
    assert "256 x 20 x 20" in labels[1] and "20,992 params" in labels[1]
    drawn = plot_layer_costs(rows, times={"conv1": 0.1, "routing": 0.2})
    assert drawn["names"] == ["conv1", "routing (r=3)", "decoder"]
    np.testing.assert_array_equal(drawn["params"], [20_992, 0, 1_411_344])
    assert list(drawn["times"]) == [pytest.approx(0.1), pytest.approx(0.2), 0.0]  # "routing" matches by first word


def test_margin_loss_plot_draws_the_curves_and_the_margins():
    curves = {"lengths": np.array([0.0, 0.5, 1.0]), "present": np.array([0.81, 0.16, 0.0]),
              "absent": np.array([0.0, 0.08, 0.405]), "d_present": np.array([-1.8, -0.8, 0.0]),
              "d_absent": np.array([0.0, 0.4, 0.9]), "m_pos": 0.9, "m_neg": 0.1, "lam": 0.5}
    _, ax = plt.subplots()
    present, absent = plot_margin_loss(curves, ax=ax)
    np.testing.assert_array_equal(present.get_ydata(), curves["present"])
    np.testing.assert_array_equal(absent.get_ydata(), curves["absent"])
    assert [line.get_xdata()[0] for line in ax.lines[2:]] == [0.9, 0.1]
    _, ax = plt.subplots()
    present, _ = plot_margin_loss(curves, ax=ax, gradients=True)
    np.testing.assert_array_equal(present.get_ydata(), curves["d_present"])


def test_training_curves_draw_the_smoothed_steps_and_values():
    smoothed = {"a": {"loss": (np.array([1, 2]), np.array([3.0, 1.0])),
                      "accuracy": (np.array([1, 2]), np.array([0.5, 1.0]))}}
    drawn = plot_training_curves(smoothed)
    loss, acc = drawn["a"]
    np.testing.assert_array_equal(loss.get_xdata(), [1, 2])
    np.testing.assert_array_equal(acc.get_ydata(), [0.5, 1.0])


def test_perturbation_grid_plot_tiles_rows_and_columns():
    grid = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5) / 120
    tiled = plot_perturbation_grid(grid, deltas=(-0.1, 0.0, 0.1))
    assert tiled.shape == (2 * 4, 3 * 5)
    np.testing.assert_array_equal(tiled[4:8, 10:15], grid[1, 2].numpy())


def test_draw_reconstruction_shows_the_image_in_unit_range():
    _, ax = plt.subplots()
    image = np.random.default_rng(0).random((28, 28))
    im = draw_reconstruction(ax, image, "digit 3")
    np.testing.assert_array_equal(im.get_array(), image)
    assert im.get_clim() == (0, 1) and ax.get_title() == "digit 3"


def test_strongest_dimensions_plot_draws_one_large_panel_per_digit():
    grid = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5) / 120
    panels = [("digit 0", grid, ["dim 7", "dim 2"]), ("digit 1", grid[:1], ["dim 3"]), ("digit 2", grid, ["a", "b"])]
    fig, tiled = plot_strongest_dimensions(panels, deltas=(-0.1, 0.0, 0.1), ncols=2)
    assert len(tiled) == 3 and tiled[0].shape == (8, 15) and tiled[1].shape == (4, 15)
    np.testing.assert_array_equal(tiled[0][4:8, 10:15], grid[1, 2].numpy())
    axes = fig.axes
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["dim 7", "dim 2"]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["-0.10", "+0.00", "+0.10"]   # first, middle, last
    assert axes[1].get_title() == "digit 1" and not axes[3].axison          # the unused fourth panel is blank
    assert fig.get_figwidth() == pytest.approx(2 * (3 * 0.46 + 1.0))



def test_flow_diagram_draws_every_box_and_arrow_between_box_edges():
    _, ax = plt.subplots()
    drawn = draw_flow(ax, {"a": (0.0, 0.0, "A", "w"), "b": (4.0, 0.0, "B", "w")}, [("a", "b", "to b")], size=(2.0, 1.0))
    assert drawn["texts"] == {"a": "A", "b": "B"} and [t.get_text() for t in ax.texts] == ["A", "B", "to b"]
    arrow = [p for p in ax.patches if type(p).__name__ == "FancyArrowPatch"][0]
    (x0, _), (x1, _) = arrow._posA_posB
    assert 1.0 < x0 < 1.2 and 2.8 < x1 < 3.0                         # from a's right edge to b's left edge


def test_schemas_of_routing_and_of_transforming_autoencoders_name_each_step():
    drawn = draw_capsule_schema()
    assert ["(eq. 2)" in drawn["texts"][k] for k in ("votes", "sum")] == [True, True]
    assert "(eq. 3)" in drawn["texts"]["c"] and "(eq. 1)" in drawn["texts"]["v"] and ("v", "b", "agreement") in drawn["arrows"]
    drawn = draw_transforming_autoencoder(capsules=2)
    assert sum(k.startswith("rec") for k in drawn["texts"]) == 2 and len(drawn["arrows"]) == 8
