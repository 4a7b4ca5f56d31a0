import os
import subprocess
import sys

import pytest
import torch

import capsedu.train as train_mod
from capsedu import CapsNet
from capsedu.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from capsedu.data import Batches, load_mnist
from capsedu.train import TrainConfig, evaluate, fit, make_optimizer, train_epoch


def tiny_config(tmp_path, **kw):
    base = dict(preset="small", epochs=2, batch_size=64, subset=True, train_limit=192, test_limit=100,
                eval_batch_size=100, output=str(tmp_path / "run"), seed=3)
    base.update(kw)
    return TrainConfig(**base)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_fit_writes_checkpoint_and_history(tmp_path):
    result = fit(tiny_config(tmp_path), progress=False, log=lambda s: None)
    assert result.checkpoint.is_file()
    assert (tmp_path / "run" / "history.json").is_file()
    assert [h["epoch"] for h in result.history] == [1, 2]
    for h in result.history:
        assert 0 <= h["test_accuracy"] <= 1 and h["train_loss"] > 0 and h["lr"] < 1e-3
    state = load_checkpoint(result.checkpoint)
    assert state["epoch"] == 2 and state["step_in_epoch"] == 0
    assert not [p for p in os.listdir(tmp_path / "run") if p.endswith(".tmp")]


def test_resume_after_an_epoch_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight = fit(tiny_config(tmp_path / "a"), progress=False, log=lambda s: None)
    fit(tiny_config(tmp_path / "b", epochs=1), progress=False, log=lambda s: None)
    resumed = fit(tiny_config(tmp_path / "b", epochs=2), resume=tmp_path / "b" / "run" / "last.pt",
                  progress=False, log=lambda s: None)
    assert_same_weights(weights(straight.model), weights(resumed.model))
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_ctrl_c_mid_epoch_saves_a_checkpoint_and_resume_continues_exactly(tmp_path, monkeypatch):
    straight = fit(tiny_config(tmp_path / "a"), progress=False, log=lambda s: None)
    calls = {"n": 0}
    real_loss = train_mod.capsule_loss

    def interrupting_loss(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 5:  # second epoch, second batch (3 batches per epoch, + test-set evaluation calls)
            raise KeyboardInterrupt
        return real_loss(*args, **kw)

    monkeypatch.setattr(train_mod, "capsule_loss", interrupting_loss)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(tmp_path / "b"), progress=False, log=lambda s: None)
    monkeypatch.setattr(train_mod, "capsule_loss", real_loss)
    ckpt = tmp_path / "b" / "run" / "last.pt"
    state = load_checkpoint(ckpt)
    assert (state["epoch"], state["step_in_epoch"]) == (1, 0) or state["step_in_epoch"] > 0
    resumed = fit(tiny_config(tmp_path / "b"), resume=ckpt, progress=False, log=lambda s: None)
    assert_same_weights(weights(straight.model), weights(resumed.model))


def test_checkpoint_round_trip_restores_the_model(tmp_path):
    torch.manual_seed(0)
    net = CapsNet("small", routing_iterations=2).eval()
    path = save_checkpoint({"model_class": "CapsNet", "model_config": net.config.to_dict(),
                            "model_state": net.state_dict()}, tmp_path / "m.pt")
    clone, _ = load_model(path)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(clone(x).lengths, net(x).lengths)
    assert clone.routing_iterations == 2


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint({"model_class": "CapsNet", "model_config": {}, "model_state": {"w": torch.ones(3)}},
                           tmp_path / "c.pt")

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model_class": "CapsNet", "model_config": {}, "model_state": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model_state"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["c.pt"]


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_corrupt_or_truncated_checkpoints_give_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:  # a real checkpoint cut in half
        save_checkpoint({"model_class": "CapsNet", "model_config": {}, "model_state": {"w": torch.ones(1000)}}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(path)


def test_missing_and_foreign_checkpoints_are_reported(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a capsedu checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


class Payload:  # an arbitrary object: weights_only loading must refuse to unpickle it
    pass


def test_checkpoints_are_loaded_with_weights_only(tmp_path):
    torch.save({"format": "capsedu-checkpoint-v1", "evil": Payload()}, tmp_path / "obj.pt")
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(tmp_path / "obj.pt")


def test_a_checkpoint_that_does_not_fit_the_model_names_the_mismatch(tmp_path):
    net = CapsNet("small")
    cfg = CapsNet("paper").config.to_dict()
    save_checkpoint({"model_class": "CapsNet", "model_config": cfg, "model_state": net.state_dict()}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch .*conv1.weight: \(64, 1, 9, 9\) vs model \(256, 1, 9, 9\)"):
        load_model(tmp_path / "m.pt")


def test_resuming_from_weights_only_file_is_refused(tmp_path):
    net = CapsNet("small")
    save_checkpoint({"model_class": "CapsNet", "model_config": net.config.to_dict(), "model_state": net.state_dict()},
                    tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="weights only"):
        fit(tiny_config(tmp_path), resume=tmp_path / "w.pt", progress=False, log=lambda s: None)


def test_learning_rate_decays_exponentially_per_step():
    net = torch.nn.Linear(2, 2)
    opt, sched = make_optimizer(net, lr=1e-3, lr_decay=0.5, decay_steps=10)
    for _ in range(20):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(1e-3 * 0.25)


def test_invalid_training_settings_are_rejected(tmp_path):
    for bad in (dict(epochs=0), dict(batch_size=-1), dict(routing_iterations=0), dict(model="resnet"), dict(lr=0)):
        with pytest.raises(ValueError):
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
    assert stats["loss"] < 0.3
    assert acc > 0.85, f"test accuracy after 125 steps only {acc:.3f}"


def run_cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "capsedu.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_train_and_evaluate_report_the_same_test_accuracy(tmp_path):
    out = tmp_path / "cli"
    r = run_cli("train", "--subset", "--train-limit", "128", "--test-limit", "100", "--batch-size", "64",
                "--output", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and last.endswith("%")
    assert str(out / "last.pt") in r.stdout
    e = run_cli("evaluate", str(out / "last.pt"), "--subset", "--test-limit", "100")
    assert e.returncode == 0, e.stderr
    assert e.stdout.strip().splitlines()[-1] == last


def test_cli_reports_a_corrupt_checkpoint_and_bad_options_clearly(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    e = run_cli("evaluate", str(bad), "--subset")
    assert e.returncode == 2 and "unreadable or corrupt" in e.stderr and str(bad) in e.stderr
    t = run_cli("train", "--routing-iterations", "0")
    assert t.returncode == 2 and "must be >= 1" in t.stderr


def test_a_non_finite_loss_stops_training_before_it_reaches_the_weights():
    torch.manual_seed(0)
    net = CapsNet("small", reconstruction=False)
    opt, _ = make_optimizer(net)
    x = torch.rand(8, 1, 28, 28)
    y = torch.arange(8) % 10
    before = weights(net)
    seen_losses = []

    def loss_fn(out, images, labels):
        loss = out.lengths.sum()
        return loss * float("nan") if len(seen_losses) == 2 else loss

    with pytest.raises(FloatingPointError, match="training loss became nan at step 2"):
        train_epoch(net, [(x, y)] * 4, opt, loss_fn=loss_fn, progress=False,
                    on_step=lambda step, loss: seen_losses.append(float(loss)))
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
    calls = []

    def loss_fn(out, images, labels):
        calls.append(1)
        loss = out.lengths.sum()
        return loss * float("nan") if len(calls) == 5 else loss

    with pytest.raises(FloatingPointError, match="nan at one of steps 3-5"):
        train_epoch(net, [(x, y)] * 7, opt, loss_fn=loss_fn, progress=False)


def test_fit_with_a_compiled_model_trains_checkpoints_and_resumes(tmp_path, monkeypatch):
    # compile is the default on CUDA; here the graph goes through dynamo and AOT autograd with the
    # eager backend (no C++ build), which traces exactly what a GPU run would compile
    import warnings

    import capsedu.fast as fast

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, backend="aot_eager", fullgraph=True))
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "compile failed, running eagerly"
        result = fit(tiny_config(tmp_path, epochs=1, compile=True, checkpoint_every=2), progress=False)
        assert fast.is_compiled(result.model)
        resumed = fit(tiny_config(tmp_path, epochs=2, compile=True), resume=result.checkpoint, progress=False)
    plain = fit(tiny_config(tmp_path / "eager", epochs=2, compile=False), progress=False)
    assert len(resumed.history) == 2
    assert_same_weights(weights(resumed.model), weights(plain.model))
    torch._dynamo.reset()


def test_optimizer_state_from_a_gpu_run_resumes_on_the_cpu():
    from capsedu.train import load_optimizer_state

    torch.manual_seed(0)
    net = CapsNet("small", reconstruction=False)
    opt, _ = make_optimizer(net)
    net(torch.rand(2, 1, 28, 28)).lengths.sum().backward()
    opt.step()
    saved = opt.state_dict()
    saved["param_groups"][0]["fused"] = True  # what make_optimizer records for CUDA parameters
    fresh, _ = make_optimizer(net)
    load_optimizer_state(fresh, saved)
    assert not fresh.param_groups[0].get("fused")
    assert fresh.param_groups[0]["lr"] == saved["param_groups"][0]["lr"]
    state_before = {k: v["exp_avg"].clone() for k, v in zip(range(3), fresh.state.values())}
    net(torch.rand(2, 1, 28, 28)).lengths.sum().backward()
    fresh.step()  # torch < 2.4 has no fused CPU Adam and would reject the saved flag here
    assert all(not torch.equal(state_before[k], v["exp_avg"]) for k, v in zip(range(3), fresh.state.values()))


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
