"""The training loop, the evaluator and the objectives (capsedu.train, capsedu.objectives)."""
import os

import pytest
import torch

import capsedu.training.loop as train_mod
from capsedu import BaselineCNN, CapsNet, margin_loss
from capsedu.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from capsedu.data import Batches, load_mnist
from capsedu.objectives import CrossEntropy, MarginLoss, count_correct, default_objective, make_objective
from capsedu.train import EpochTotals, evaluate, fit, make_optimizer, train_epoch

from run_fixtures import assert_same_weights, quiet, tiny_config, weights


def test_fit_writes_checkpoint_and_history(tmp_path):
    result = fit(tiny_config(tmp_path), progress=False, log=quiet)
    assert result.checkpoint.is_file()
    assert (tmp_path / "run" / "history.json").is_file()
    assert [h["epoch"] for h in result.history] == [1, 2]
    for h in result.history:
        assert 0 <= h["test_accuracy"] <= 1 and h["train_loss"] > 0 and h["lr"] < 1e-3
    state = load_checkpoint(result.checkpoint)
    assert state["epoch"] == 2 and state["step_in_epoch"] == 0
    assert state["data"]["examples"] == 192 and len(state["data"]["sha256"]) == 16
    assert not [p for p in os.listdir(tmp_path / "run") if p.endswith(".tmp")]


def test_resume_after_an_epoch_gives_the_same_weights_and_history_as_an_uninterrupted_run(tmp_path):
    straight = fit(tiny_config(tmp_path / "a"), progress=False, log=quiet)
    fit(tiny_config(tmp_path / "b", epochs=1), progress=False, log=quiet)
    resumed = fit(tiny_config(tmp_path / "b", epochs=2), resume=tmp_path / "b" / "run" / "last.pt",
                  progress=False, log=quiet)
    assert_same_weights(weights(straight.model), weights(resumed.model), exact=True)
    strip = lambda hist: [{k: v for k, v in h.items() if k != "seconds"} for h in hist]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)


def test_checkpoint_round_trip_restores_the_model(tmp_path):
    torch.manual_seed(0)
    net = CapsNet("small", routing_iterations=2).eval()
    path = save_checkpoint({"model_class": "capsnet", "model_config": net.config.to_dict(),
                            "model_state": net.state_dict()}, tmp_path / "m.pt")
    clone, _ = load_model(path)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(clone(x).lengths, net(x).lengths)
    assert clone.routing_iterations == 2


def test_checkpoints_of_the_earlier_format_still_load(tmp_path):
    net = CapsNet("small").eval()
    path = save_checkpoint({"model_class": "CapsNet", "model_config": net.config.to_dict(),
                            "model_state": net.state_dict()}, tmp_path / "old.pt")
    clone, _ = load_model(path)
    assert isinstance(clone, CapsNet)


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint({"model_class": "capsnet", "model_config": {}, "model_state": {"w": torch.ones(3)}},
                           tmp_path / "c.pt")

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match=f"could not write checkpoint {path}: disk full"):
        save_checkpoint({"model_class": "capsnet", "model_config": {}, "model_state": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model_state"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["c.pt"]


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_corrupt_or_truncated_checkpoints_give_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:  # a real checkpoint cut in half
        save_checkpoint({"model_class": "capsnet", "model_config": {}, "model_state": {"w": torch.ones(1000)}}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(path)


def test_missing_foreign_and_directory_checkpoints_are_reported(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a capsedu checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


class Payload:  # an arbitrary object: weights_only loading must refuse to unpickle it
    pass


def test_checkpoints_are_loaded_with_weights_only_and_torch_advice_is_not_passed_on(tmp_path):
    torch.save({"format": "capsedu-checkpoint-v1", "evil": Payload()}, tmp_path / "obj.pt")
    with pytest.raises(CheckpointError, match="unreadable or corrupt") as info:
        load_checkpoint(tmp_path / "obj.pt")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


def test_a_checkpoint_that_does_not_fit_the_model_names_the_mismatch(tmp_path):
    net = CapsNet("small")
    cfg = CapsNet("paper").config.to_dict()
    save_checkpoint({"model_class": "capsnet", "model_config": cfg, "model_state": net.state_dict()}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch .*conv1.weight: \(64, 1, 9, 9\) vs model \(256, 1, 9, 9\)"):
        load_model(tmp_path / "m.pt")


def test_a_checkpoint_with_an_unknown_model_or_config_key_is_reported(tmp_path):
    net = CapsNet("small")
    save_checkpoint({"model_class": "resnet", "model_config": {}, "model_state": net.state_dict()}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="resnet"):
        load_model(tmp_path / "a.pt")
    cfg = {**net.config.to_dict(), "wings": 2}
    save_checkpoint({"model_class": "capsnet", "model_config": cfg, "model_state": net.state_dict()}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="wings"):
        load_model(tmp_path / "b.pt")


def test_learning_rate_decays_exponentially_per_step():
    net = torch.nn.Linear(2, 2)
    opt, sched = make_optimizer(net, lr=1e-3, lr_decay=0.5, decay_steps=10)
    for _ in range(20):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(1e-3 * 0.25)


@pytest.mark.parametrize("bad, message", [
    (dict(epochs=0), "--epochs"), (dict(batch_size=-1), "--batch-size"), (dict(routing_iterations=0), "--routing"),
    (dict(model="resnet"), "--model"), (dict(lr=0), "--lr"), (dict(lr=float("inf")), "--lr"),
    (dict(lr=float("nan")), "--lr"), (dict(seed=2 ** 70), "--seed"), (dict(seed=-1), "--seed"),
    (dict(dataset="imagenet"), "--dataset"), (dict(loss="hinge"), "--loss"),
    (dict(model="baseline", loss="margin"), "cross-entropy"), (dict(reconstruction_weight=-1.0), "--reconstruction"),
    (dict(train_limit=0), "--train-limit"), (dict(augment_shift=-2), "--augment-shift"),
    (dict(output=""), "--output must name a directory"), (dict(routing_iterations=10 ** 6), r"in \[1, 100\]"),
])
def test_invalid_training_settings_are_rejected_naming_the_flag(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, **bad).validate()


def test_short_training_on_real_mnist_digits_reaches_well_above_chance():
    torch.manual_seed(0)
    train = load_mnist("train")  # full MNIST when CAPSEDU_DATA points at it, the shipped subset otherwise
    test = load_mnist("test")
    net = CapsNet("small")
    opt, sched = make_optimizer(net, lr=2e-3)
    batches = Batches(train, 32, shuffle=True, generator=torch.Generator().manual_seed(0), limit=4000)
    stats = train_epoch(net, batches, opt, sched, progress=False)
    acc = evaluate(net, Batches(test, 250, limit=500))["accuracy"]
    assert stats["loss"] < 0.3 and stats["examples"] == 4000
    assert acc > 0.85, f"test accuracy after 125 steps only {acc:.3f}"


class NaNAfter(MarginLoss):
    """The margin loss, turned into NaN from the ``bad``-th call on."""

    def __init__(self, bad):
        super().__init__(reconstruction_weight=0.0)
        self.calls, self.bad = 0, bad

    def loss(self, output, images, targets):
        self.calls += 1
        terms = super().loss(output, images, targets)
        return {k: v * float("nan") for k, v in terms.items()} if self.calls >= self.bad else terms


def test_a_non_finite_loss_stops_training_before_it_reaches_the_weights():
    torch.manual_seed(0)
    net = CapsNet("small", reconstruction=False)
    opt, _ = make_optimizer(net)
    x = torch.rand(8, 1, 28, 28)
    y = torch.arange(8) % 10
    before = weights(net)
    seen_losses = []
    with pytest.raises(FloatingPointError, match="training loss became nan at step 2"):
        train_epoch(net, [(x, y)] * 4, opt, objective=NaNAfter(3), progress=False,
                    on_step=lambda record: seen_losses.append(float(record.loss)))
    assert len(seen_losses) == 2 and all(torch.isfinite(torch.tensor(seen_losses)))
    after = weights(net)
    assert all(torch.isfinite(w).all() for w in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the two good steps did train


def test_deferred_host_reads_give_the_same_metrics_and_still_catch_a_nan(monkeypatch):
    # on a GPU the totals are read back every few steps only; emulate that cadence on the CPU
    x = torch.rand(8, 1, 28, 28)
    y = torch.arange(8) % 10
    results = []
    for every in (1, 3):
        monkeypatch.setattr(train_mod, "_host_sync_every", lambda device, every=every: every)
        torch.manual_seed(0)
        net = CapsNet("small", reconstruction=False)
        opt, _ = make_optimizer(net)
        results.append(train_epoch(net, [(x, y)] * 5, opt, progress=False))
    assert results[0] == pytest.approx(results[1], rel=1e-12)
    with pytest.raises(FloatingPointError, match="nan at one of steps 3-5"):
        train_epoch(net, [(x, y)] * 7, opt, objective=NaNAfter(5), progress=False)


def test_the_progress_bar_shows_running_loss_and_accuracy_at_either_cadence(monkeypatch):
    shown = []
    monkeypatch.setattr(train_mod.tqdm, "set_postfix", lambda self, **kw: shown.append(kw), raising=False)
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    for every in (1, 25):  # the CPU's cadence and an accelerator's
        monkeypatch.setattr(train_mod, "_host_sync_every", lambda device, every=every: every)
        shown.clear()
        net = CapsNet("small", reconstruction=False)
        opt, _ = make_optimizer(net)
        train_epoch(net, [(x, y)] * 26, opt, progress=True)
        assert shown and {"loss", "acc"} <= set(shown[-1]), every


def test_epoch_totals_continue_across_calls_like_one_pass():
    torch.manual_seed(0)
    x, y = torch.rand(12, 1, 28, 28), torch.arange(12) % 10
    batches = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]
    nets = []
    for split in (False, True):
        torch.manual_seed(1)
        net = CapsNet("small", reconstruction=False)
        opt, _ = make_optimizer(net)
        if split:
            totals = EpochTotals()
            train_epoch(net, batches[:1], opt, progress=False, totals=totals)
            restored = EpochTotals.from_state(totals.state())  # what a checkpoint keeps
            stats = train_epoch(net, batches[1:], opt, progress=False, totals=restored)
        else:
            stats = train_epoch(net, batches, opt, progress=False)
        nets.append((net, stats))
    assert nets[0][1] == pytest.approx(nets[1][1], rel=1e-12)
    assert_same_weights(weights(nets[0][0]), weights(nets[1][0]), exact=True)


def test_on_step_receives_each_steps_loss_terms():
    torch.manual_seed(0)
    net = CapsNet("small")
    opt, _ = make_optimizer(net)
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    records = []
    train_epoch(net, [(x, y)] * 3, opt, objective=MarginLoss(), progress=False, on_step=records.append)
    assert [r.step for r in records] == [0, 1, 2]
    for r in records:
        assert set(r.parts) == {"margin", "reconstruction"} and r.examples == 4
        assert float(r.loss) == pytest.approx(float(r.parts["margin"] + r.parts["reconstruction"]), rel=1e-6)


def test_the_same_loop_trains_the_baseline_with_cross_entropy():
    torch.manual_seed(0)
    net = BaselineCNN(channels=(8, 8, 4), hidden=(16, 8))
    assert isinstance(default_objective(net), CrossEntropy)
    opt, _ = make_optimizer(net, lr=3e-3)
    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    before = evaluate(net, [(x, y)])
    for _ in range(40):
        train_epoch(net, [(x, y)], opt, progress=False)
    after = evaluate(net, [(x, y)])  # eval mode: no dropout
    assert after["loss"] < 0.5 * before["loss"] and after["accuracy"] >= 0.5
    with pytest.raises(ValueError, match="margin loss needs capsule lengths"):
        MarginLoss()(net, x, y)


def test_multi_hot_targets_train_with_the_margin_loss_and_count_exact_pairs():
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.9, 0.1, 0.8], [0.2, 0.9, 0.3]])
    pairs = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    assert int(count_correct(scores, pairs)) == 2  # row 1 ranks class 2 above class 1
    torch.manual_seed(0)
    net = CapsNet("small", image_size=36, reconstruction=False)
    opt, _ = make_optimizer(net)
    x = torch.rand(4, 1, 36, 36)
    targets = torch.zeros(4, 10)
    targets[torch.arange(4), torch.tensor([0, 1, 2, 3])] = 1.0
    targets[torch.arange(4), torch.tensor([5, 6, 7, 8])] = 1.0
    stats = train_epoch(net, [(x, targets)] * 2, opt, progress=False)
    assert stats["examples"] == 8 and stats["loss"] > 0


def test_cross_entropy_on_capsule_lengths_scales_them():
    out = CapsNet("small", reconstruction=False).eval()
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([1, 2, 3])
    lengths = out(x).lengths
    expected = torch.nn.functional.cross_entropy(10.0 * lengths, y)
    torch.testing.assert_close(make_objective("cross-entropy", scale=10.0)(out, x, y).loss, expected)
    with pytest.raises(ValueError, match="unknown loss"):
        make_objective("hinge")


def test_pair_margin_loss_reconstructs_each_digit_from_its_own_capsule():
    from capsedu.data import load_mnist, make_multimnist
    from capsedu.objectives import PairMarginLoss

    pairs = make_multimnist(load_mnist("test", subset=True), 6, seed=0)
    images, targets = pairs.as_batch()                                           # Pairs, (6, 2)
    torch.manual_seed(0)
    net = CapsNet("small", image_size=36)
    result = PairMarginLoss()(net, images, targets)
    out = net(pairs.images)
    first = net.reconstruct(out.poses, pairs.first_label)
    expected_recon = ((first - pairs.first) ** 2).flatten(1).sum(1).mean() + \
        ((net.reconstruct(out.poses, pairs.second_label) - pairs.second) ** 2).flatten(1).sum(1).mean()
    torch.testing.assert_close(result.parts["reconstruction"], 0.0005 * expected_recon)
    torch.testing.assert_close(result.parts["margin"], margin_loss(out.lengths, pairs.labels))
    top2 = out.lengths.topk(2, dim=1).indices.sort(dim=1).values
    assert int(result.correct) == int((top2 == targets.sort(dim=1).values).all(dim=1).sum())
    with pytest.raises(ValueError, match="overlay and each digit alone"):
        PairMarginLoss()(net, pairs.images, targets)
    opt, _ = make_optimizer(net)
    stats = train_epoch(net, [(images, targets)] * 2, opt, objective=PairMarginLoss(), progress=False)
    assert stats["examples"] == 12


def test_one_cycle_warms_up_to_the_peak_then_decays_to_a_hundredth():
    from capsedu.train import one_cycle

    factor = one_cycle(100)
    assert factor(0) == pytest.approx(0.1) and factor(10) == pytest.approx(1.0)
    assert all(factor(t) < factor(t + 1) for t in range(10))               # warm-up rises
    assert all(factor(t) > factor(t + 1) for t in range(10, 99))           # then falls, smoothly
    assert factor(100) == pytest.approx(0.01) and factor(500) == pytest.approx(0.01)


def test_the_one_cycle_schedule_is_stepped_per_batch_and_needs_its_length():
    net = torch.nn.Linear(2, 2)
    opt, sched = make_optimizer(net, lr=3e-3, schedule="one-cycle", total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(3e-4) and max(lrs) == pytest.approx(3e-3) and lrs.index(max(lrs)) == 2
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-5)
    with pytest.raises(ValueError, match="total_steps"):
        make_optimizer(net, schedule="one-cycle")
    with pytest.raises(ValueError, match="schedule must be one of"):
        make_optimizer(net, schedule="cosine")
