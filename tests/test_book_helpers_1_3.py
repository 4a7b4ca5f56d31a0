"""Library helpers behind chapters 1-3: toys, poses, plots and widgets (seeded, fast, headless)."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from capsedu import poses, toys, viz  # noqa: E402
from capsedu.functional import squash  # noqa: E402
from capsedu.routing import dynamic_routing, routing_trace  # noqa: E402
from capsedu.widgets import pooling_widget, routing_widget, squash_widget  # noqa: E402


# ---------------------------------------------------------------- chapter 1 toys
def test_1d_example_presence_is_invariant_and_position_is_equivariant():
    m1 = toys.detect_1d(torch.tensor([0.0, 3, 2, 0, 0]))
    m2 = toys.detect_1d(torch.tensor([0.0, 0, 3, 2, 0]))
    p1, pos1 = toys.presence_and_position_1d(m1)
    p2, pos2 = toys.presence_and_position_1d(m2)
    assert p1.round().tolist() == p2.round().tolist() == [0, 1, 0, 0]
    assert m1[1].round().tolist() == [0, 1, 0, 0] and m2[1].round().tolist() == [0, 0, 1, 0]
    assert pos2[1] - pos1[1] == pytest.approx(1.0, abs=1e-3)


def test_max_pooling_cannot_tell_face_from_scrambled_parts_but_readout_can():
    a = toys.detect_parts(toys.face_image(toys.FACE_LAYOUT))
    b = toys.detect_parts(toys.face_image(toys.SCRAMBLED_LAYOUT))
    assert torch.equal(toys.max_pool_presence(a), toys.max_pool_presence(b))
    assert toys.max_pool_presence(a).tolist() == [1.0, 1.0, 1.0]
    ra, rb = toys.capsule_readout(a), toys.capsule_readout(b)
    assert ra["count"].tolist() == rb["count"].tolist() == [2, 1, 1]
    assert not torch.equal(ra["positions"], rb["positions"])


def test_face_image_rejects_parts_off_the_canvas():
    with pytest.raises(ValueError, match="does not fit"):
        toys.face_image(shift=(0, 20))


def test_scramble_patches_permutes_quadrants_and_validates():
    x = torch.arange(16.0).view(1, 4, 4)
    y = toys.scramble_patches(x, grid=2)
    assert torch.equal(y[0, :2, :2], x[0, 2:, 2:]) and torch.equal(y[0, 2:, 2:], x[0, :2, :2])
    assert torch.equal(toys.scramble_patches(x, 2, perm=[0, 1, 2, 3]), x)
    with pytest.raises(ValueError):
        toys.scramble_patches(x, 2, perm=[0, 0, 1, 2])


def test_displace_top_half_moves_only_the_top():
    x = torch.rand(2, 1, 6, 6)
    y = toys.displace_top_half(x, 2)
    assert torch.equal(y[..., 3:, :], x[..., 3:, :])
    assert torch.equal(y[..., :3, 2:], x[..., :3, :4]) and (y[..., :3, :2] == 0).all()
    assert torch.equal(toys.displace_top_half(x, 0), x)


def test_pooling_cnn_shapes_and_short_training_reduces_loss():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is fastest, and immune to busy shared CPUs
    try:
        _train_pooling_cnn_check()
    finally:
        torch.set_num_threads(threads)


def _train_pooling_cnn_check():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g)
    y = (x[:, 0, :14].mean((1, 2)) > x[:, 0, 14:].mean((1, 2))).long()  # learnable toy labels
    model, losses = toys.train_pooling_cnn(x, y, steps=25, batch_size=32)
    assert model(x).shape == (64, 10) and model.features(x).shape == (64, 32, 8, 8) and model.pooled(x).shape == (64, 32)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_coincidence_probability_matches_closed_forms_and_monte_carlo():
    # d = 2: angle uniform on [0, pi]; d = 3: cos uniform on [-1, 1]
    assert toys.coincidence_probability(2, 0.9) == pytest.approx(math.acos(0.9) / math.pi, rel=1e-4)
    assert toys.coincidence_probability(3, 0.9) == pytest.approx(0.05, rel=1e-4)
    assert toys.coincidence_monte_carlo(4, 0.5, n=50_000) == pytest.approx(toys.coincidence_probability(4, 0.5), abs=0.01)
    assert toys.coincidence_probability(16, 0.9) < 1e-5 < toys.coincidence_probability(8, 0.9)


def test_toy_votes_routing_favours_the_agreeing_clusters():
    u_hat, info = toys.toy_votes()
    assert u_hat.shape == (1, 7, 3, 2)
    _, c = dynamic_routing(u_hat, 3, return_couplings=True)
    assert (c[0, info["groups"][0], 0] > 0.6).all() and (c[0, info["groups"][1], 1] > 0.6).all()
    assert c[0, info["outlier"], 0] < 0.2


def test_poses_roundtrip_and_votes_agree_only_for_a_real_face():
    p = poses.pose2d(0.4, 1.0, -2.0, 1.5)
    assert poses.pose_params(p) == pytest.approx({"theta": 0.4, "tx": 1.0, "ty": -2.0, "scale": 1.5})
    votes = poses.part_votes(poses.place_parts(p))
    assert poses.vote_spread(votes) < 1e-10
    assert torch.allclose(votes["mouth"], p)
    names = list(poses.FACE_PARTS)
    observed = poses.place_parts(p)
    scrambled = {n: observed[m] for n, m in zip(names, names[1:] + names[:1])}
    assert poses.vote_spread(poses.part_votes(scrambled)) > 0.5


# ---------------------------------------------------------------- plots
def test_squash_plots_return_the_plotted_values():
    fig, axes = plt.subplots(1, 3)
    s, v = viz.plot_squash_1d(axes[0])
    assert abs(v[len(s) // 2]) < 1e-12 and abs(v).max() < 1
    norms, auto, analytic = viz.plot_squash_gradient(axes[1])
    assert abs(auto - analytic).max() < 1e-6
    drawn = viz.draw_squash_2d(axes[2], (3.0, 4.0))
    assert torch.allclose(drawn["v"], squash(torch.tensor([3.0, 4.0])))
    assert len(axes[0].lines) >= 1 and len(drawn["arrows"]) == 2
    plt.close(fig)


def test_length_histograms_squash_every_length_below_one():
    fig, axes = plt.subplots(1, 2)
    out = viz.plot_length_histograms(axes, dims=(2, 16), n=500)
    assert set(out) == {2, 16}
    for ls, lv in out.values():
        assert (lv < 1).all() and (lv <= ls + 1e-6).all()  # n^2/(1+n^2) <= n
    assert len(axes[0].patches) > 0
    plt.close(fig)


def test_routing_dynamics_plot_values_come_from_the_trace():
    g = torch.Generator().manual_seed(0)
    trace = routing_trace(torch.randn(2, 20, 4, 6, generator=g) * 0.3, iterations=5)
    fig, (a, b) = plt.subplots(1, 2)
    out = viz.plot_routing_dynamics(a, b, trace)
    assert torch.allclose(torch.tensor(out["logit_change"]), trace.logit_changes())
    assert len(out["coupling_diff"]) == 4 and out["coupling_diff"][-1] <= out["coupling_diff"][0]
    assert len(a.patches) == 5 and len(b.lines) == 2
    plt.close(fig)


def test_plot_votes_and_couplings_draw_one_arrow_per_vote():
    u_hat, _ = toys.toy_votes()
    c = torch.full((7, 3), 1 / 3)
    fig, axes = plt.subplots(1, 4)
    drawn = viz.plot_votes(axes[:3], u_hat[0], c, torch.zeros(3, 2))
    assert [len(a) for a in drawn] == [7, 7, 7]
    im = viz.plot_couplings(axes[3], c)
    assert im.get_array().shape == (7, 3)
    plt.close(fig)


# ---------------------------------------------------------------- widgets
def test_routing_widget_slider_updates_couplings_to_routing_trace():
    u_hat, _ = toys.toy_votes()
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


def test_squash_widget_v_equals_squash_of_the_slider_vector():
    w = squash_widget(x=1.0, y=0.5)
    w.controls["x"].value = 2.0
    assert torch.allclose(w.state["s"], torch.tensor([2.0, 0.5]))
    assert torch.allclose(w.state["v"], squash(torch.tensor([2.0, 0.5])))
    state = w.update(x=0.0, y=0.0)
    assert state["length_v"] == 0.0
    assert len(w.figure.axes[0].texts) == 2  # the two arrows


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
