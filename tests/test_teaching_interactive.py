"""The chapters' widgets (capsedu.teaching.interactive.InteractiveFigure): moving a control recomputes the
state and redraws (no browser needed)."""
import numpy as np
import pytest
import torch

from capsedu import CapsNet, margin_loss
from capsedu.functional import squash
from capsedu.routing import routing_trace
from capsedu.teaching.agreement import routing_widget, toy_votes
from capsedu.teaching.architecture import architecture_widget
from capsedu.teaching.decoder import perturbation_widget
from capsedu.teaching.margin import margin_loss_widget
from capsedu.teaching.motivation import pooling_widget
from capsedu.teaching.squashing import squash_widget


pytestmark = pytest.mark.usefixtures("one_thread")


def test_pooling_widget_shift_keeps_presence_and_moves_positions():
    w = pooling_widget()
    before = w.state
    w.controls["dx"].value = 3
    after = w.update(dy=-2)
    assert torch.equal(before["presence"], after["presence"])
    assert torch.allclose(after["centre"] - before["centre"], torch.tensor([-2.0, 3.0], dtype=torch.float64))
    assert len(w.figure.axes[1].patches) == 3
    with pytest.raises(ValueError):
        w.update(angle=3)


def test_squash_widget_v_equals_squash_of_the_slider_vector():
    w = squash_widget(x=1.0, y=0.5)
    w.controls["x"].value = 2.0
    assert torch.allclose(w.state["s"], torch.tensor([2.0, 0.5]))
    assert torch.allclose(w.state["v"], squash(torch.tensor([2.0, 0.5])))
    state = w.update(x=0.0, y=0.0)
    assert state["length_v"] == 0.0
    assert len(w.figure.axes[0].texts) == 2  # the two arrows


def test_routing_widget_slider_updates_couplings_to_routing_trace():
    u_hat, _ = toy_votes()
    w = routing_widget(u_hat, iterations=1)
    assert torch.allclose(w.state["couplings"], torch.full((7, 3), 1 / 3))
    w.controls["iterations"].value = 4  # the observe callback recomputes
    trace = routing_trace(u_hat, 4)
    assert w.state["iterations"] == 4
    assert torch.allclose(w.state["couplings"], trace.couplings[-1][0])
    assert torch.allclose(w.state["outputs"], trace.outputs[-1][0])
    state = w.update(iterations=2)
    assert torch.allclose(state["couplings"], routing_trace(u_hat, 2).couplings[-1][0])
    assert len(w.figure.axes) >= 4 and len(w.figure.axes[3].images) == 1


def test_architecture_widget_slider_updates_table():
    w = architecture_widget("paper")
    assert w.state["totals"]["params"] == 8_215_568
    w.controls["conv_channels"].value = 128                 # as if the reader moved the slider
    rows = {r.name: r for r in w.state["rows"]}
    assert rows["conv1"].params == 81 * 128 + 128
    assert rows["PrimaryCaps"].params == 81 * 128 * 256 + 256
    assert "128" in w.children[-1].value.replace(",", "")


def test_architecture_widget_preset_resets_sliders():
    w = architecture_widget("paper")
    w.update(primary_types=8)
    assert w.state["config"]["primary_types"] == 8
    state = w.update(preset="small")
    assert state["config"]["conv_channels"] == 64 and state["config"]["primary_types"] == 16
    assert state["totals"]["params"] == 2_817_552
    with pytest.raises(ValueError, match="unknown control"):
        w.update(kernel=3)


def test_margin_loss_widget_slider_redraws_with_library_loss():
    w = margin_loss_widget()
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


def test_perturbation_widget_image_is_decoder_of_perturbed_pose():
    torch.manual_seed(0)
    model = CapsNet("small").eval()
    poses = torch.randn(10, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    w = perturbation_widget(model, poses, digit=0)
    w.controls["digit"].value = 7
    w.controls["d2"].value = 0.2                                          # the reader drags slider "dim 2"
    caps = torch.zeros(1, 10, 16)
    caps[0, 7] = poses[7]
    caps[0, 7, 2] += 0.2
    with torch.no_grad():
        expected = model.reconstruct(caps, torch.tensor([7]))[0, 0].numpy()
    np.testing.assert_allclose(w.state["image"], expected, atol=1e-6)
    np.testing.assert_allclose(w.state["figure"].axes[0].images[0].get_array(), expected, atol=1e-6)
    assert w.state["offsets"][2] == pytest.approx(0.2)
    w.children[0].children[1].click()                                     # reset button
    assert not w.state["offsets"].any()


def test_routing_widget_static_rendering_draws_each_snapshot_and_keeps_the_live_figure():
    u_hat, _ = toy_votes()
    w = routing_widget(u_hat, iterations=2, snapshots=({"iterations": 1}, {"iterations": 10}))
    live_couplings = w.state["couplings"].clone()
    html = w._repr_html_()
    images = html.split('src="data:image/png;base64,')[1:]
    assert len(images) == 2 and images[0].split('"')[0] != images[1].split('"')[0]
    assert "r = 1 routing iterations" in html and "r = 10 routing iterations" in html and "JupyterLab" in html
    lengths_r10 = routing_trace(u_hat, 10).outputs[-1][0].norm(dim=-1)
    assert ", ".join(f"{float(x):.2f}" for x in lengths_r10) in html
    # the live widget still shows r = 2: its state, its slider and its printed couplings
    assert w.controls["iterations"].value == 2 and torch.equal(w.state["couplings"], live_couplings)
    heat = w.figure.axes[-1].images[0].get_array()
    np.testing.assert_allclose(heat, live_couplings.numpy(), atol=1e-6)
    assert "r = 2:" in w.readout.value and f"{float(live_couplings[0, 0]):7.3f}" in w.readout.value


def test_architecture_widget_static_rendering_shows_presets_without_moving_the_controls():
    w = architecture_widget("paper")
    w.update(conv_channels=128)
    html = w.static_html()
    assert html.count("<table>") == 2
    assert "8,215,568" in html and "2,817,552" in html            # paper and small totals
    assert w.controls["conv_channels"].value == 128 and w.controls["preset"].value == "paper"


def test_perturbation_widget_prints_the_offsets_it_decodes():
    torch.manual_seed(0)
    model = CapsNet("small").eval()
    poses = torch.randn(10, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    w = perturbation_widget(model, poses, digit=4, snapshots=({}, {"d3": 0.25}))
    assert "offsets: none" in w.readout.value
    w.update(d3=-0.1)
    assert "dim 3 -0.10" in w.readout.value
    assert f"||v|| = {float((poses[4] + torch.eye(16)[3] * -0.1).norm()):.3f}" in w.readout.value
    html = w.static_html()
    assert html.count("<figure>") == 2 and "dim 3 +0.25" in html
    assert w.state["offsets"][3] == pytest.approx(-0.1)          # the live setting is back after the snapshots


def _descendants(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _descendants(child)


def test_no_widget_has_a_fixed_width_and_rows_of_controls_wrap():
    """A JupyterLab output area can be under 1000 px wide: controls must wrap or shrink, never overflow."""
    torch.manual_seed(0)
    model = CapsNet("small").eval()
    poses = torch.randn(10, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    built = [pooling_widget(), squash_widget(), routing_widget(),
             architecture_widget("small"), margin_loss_widget(),
             perturbation_widget(model, poses, digit=1)]
    for box in built:
        for w in _descendants(box):
            width = getattr(w.layout, "width", None)
            assert width in (None, "", "auto", "100%"), f"{type(w).__name__} {getattr(w, 'description', '')}: width {width}"
            if type(w).__name__ == "HBox":
                assert w.layout.flex_flow == "row wrap", f"an HBox in {type(box).__name__} does not wrap"
            if type(w).__name__ == "GridBox":
                assert "auto-fill" in w.layout.grid_template_columns and "minmax" in w.layout.grid_template_columns
    grid = next(w for w in _descendants(built[-1]) if type(w).__name__ == "GridBox")
    assert len(grid.children) == 16 and all(s.layout.width == "auto" for s in grid.children)


def test_perturbation_widget_shows_the_full_grid_of_the_digit_ranked():
    from capsedu.teaching.decoder import perturbation_grid, rank_dimensions

    torch.manual_seed(0)
    model = CapsNet("small").eval()
    poses = torch.randn(10, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    w = perturbation_widget(model, poses, digit=2)
    order, effects = rank_dimensions(perturbation_grid(model, poses[2], 2))
    assert w.state["ranking"] == order
    np.testing.assert_allclose(w.state["effects"], effects.numpy())
    assert w.state["grid"].shape == (16, 11, 28, 28)
    ax_grid = w.figure.axes[1]
    assert [t.get_text() for t in ax_grid.get_yticklabels()] == [f"dim {d}" for d in order]
    assert f"dim {order[0]} ({float(effects[0]):.3f})" in w.readout.value
    w.update(d3=0.2)                                       # editing the capsule leaves the unedited grid alone
    assert w.state["ranking"] == order
    w.update(digit=5)
    assert w.state["ranking"] == rank_dimensions(perturbation_grid(model, poses[5], 5))[0]
