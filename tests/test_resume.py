"""Runs that survive any interruption: Ctrl-C/SIGTERM at any moment, resume checks, the output directory."""
import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest
import torch

import capsedu.train as train_mod
from capsedu.checkpoint import load_checkpoint
from capsedu.interrupts import DeferredInterrupt, SafeStop
from capsedu.run_directory import RunDirectory, RunDirectoryError
from capsedu.train import fit
from run_fixtures import assert_same_weights, quiet, send_sigint_at_optimizer_step, tiny_config, weights


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted reference run every interrupted run must reproduce exactly."""
    result = fit(tiny_config(tmp_path_factory.mktemp("straight")), progress=False, log=quiet)
    return weights(result.model), result.history


@pytest.mark.parametrize("step", [2, 4])  # inside the first epoch, and the second
def test_sigint_inside_optimizer_step_is_deferred_and_resume_ends_bit_identical(tmp_path, straight, step):
    handle = send_sigint_at_optimizer_step(step)
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_config(tmp_path), progress=False, log=quiet)
    finally:
        handle.remove()
    ckpt = tmp_path / "run" / "last.pt"
    state = load_checkpoint(ckpt)
    assert (state["epoch"], state["step_in_epoch"]) == divmod(step, 3)  # saved right after that step
    resumed = fit(tiny_config(tmp_path), resume=ckpt, progress=False, log=quiet)
    assert_same_weights(straight[0], weights(resumed.model), exact=True)
    assert without_seconds(resumed.history) == without_seconds(straight[1])


def test_sigint_during_the_test_pass_keeps_the_trained_epoch(tmp_path, straight):
    model_calls = {"eval": 0}

    def on_forward(module, args):
        if not module.training:
            model_calls["eval"] += 1
            if model_calls["eval"] == 1:
                os.kill(os.getpid(), signal.SIGINT)

    real_build = train_mod.TrainConfig.build_model

    def build_with_hook(self, *a, **kw):
        model = real_build(self, *a, **kw)
        model.register_forward_pre_hook(on_forward)
        return model

    train_mod.TrainConfig.build_model = build_with_hook
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_config(tmp_path), progress=False, log=quiet)
    finally:
        train_mod.TrainConfig.build_model = real_build
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 3)  # all three batches trained, test pending
    logs = []
    resumed = fit(tiny_config(tmp_path), resume=tmp_path / "run" / "last.pt", progress=False, log=logs.append)
    assert any("its test pass" in line for line in logs)
    assert_same_weights(straight[0], weights(resumed.model), exact=True)
    assert without_seconds(resumed.history) == without_seconds(straight[1])


def test_periodic_checkpoints_resume_bit_identical_with_the_whole_epochs_statistics(tmp_path, straight):
    with pytest.raises(KeyboardInterrupt):
        handle = send_sigint_at_optimizer_step(5)
        try:
            fit(tiny_config(tmp_path, checkpoint_every=1), progress=False, log=quiet)
        finally:
            handle.remove()
    resumed = fit(tiny_config(tmp_path), resume=tmp_path / "run" / "last.pt", progress=False, log=quiet)
    assert_same_weights(straight[0], weights(resumed.model), exact=True)
    assert without_seconds(resumed.history) == without_seconds(straight[1])


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path):
    before = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN in a background job
    with DeferredInterrupt(notify=quiet) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested == "SIGINT"
        with pytest.raises(KeyboardInterrupt) as info:
            os.kill(os.getpid(), signal.SIGINT)
        assert not isinstance(info.value, SafeStop)
        with pytest.raises(SafeStop):
            stop.check()
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found is back


@pytest.mark.parametrize("change, flag", [
    (dict(preset="paper"), "--preset"), (dict(model="baseline"), "--model"), (dict(batch_size=32), "--batch-size"),
    (dict(lr=2e-3), "--lr"), (dict(seed=4), "--seed"), (dict(train_limit=128), "--train-limit"),
    (dict(augment_shift=0), "--augment-shift"), (dict(reconstruction=False), "--no-reconstruction"),
])
def test_resume_refuses_changed_training_settings(tmp_path, change, flag):
    fit(tiny_config(tmp_path, epochs=1), progress=False, log=quiet)
    with pytest.raises(ValueError, match=f"cannot resume .*{flag}"):
        fit(tiny_config(tmp_path, **change), resume=tmp_path / "run" / "last.pt", progress=False, log=quiet)


def test_resume_reports_the_settings_it_honours(tmp_path):
    fit(tiny_config(tmp_path, epochs=1), progress=False, log=quiet)
    logs = []
    fit(tiny_config(tmp_path, epochs=2, test_limit=50, checkpoint_every=2), resume=tmp_path / "run" / "last.pt",
        progress=False, log=logs.append)
    text = "\n".join(logs)
    for flag in ("--epochs 2", "--test-limit 50", "--checkpoint-every 2"):
        assert f"resume: using {flag}" in text


def write_idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">" + "I" * (1 + array.dim()), magic, *array.shape))
        f.write(array.numpy().tobytes())


def fake_mnist(root, seed):
    """A complete torchvision-layout MNIST of 256 random training and 64 test digits."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    for prefix, n in (("train", 256), ("t10k", 64)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", torch.randint(0, 256, (n, 28, 28), generator=g,
                                                                      dtype=torch.uint8), 0x803)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", torch.randint(0, 10, (n,), generator=g,
                                                                      dtype=torch.uint8), 0x801)


def test_resume_refuses_different_training_data(tmp_path):
    for seed in (1, 2):
        fake_mnist(tmp_path / f"data{seed}", seed)
    fit(tiny_config(tmp_path, epochs=1, subset=False, data=str(tmp_path / "data1")), progress=False, log=quiet)
    with pytest.raises(ValueError, match="cannot resume .* on different data"):
        fit(tiny_config(tmp_path, epochs=2, subset=False, data=str(tmp_path / "data2")),
            resume=tmp_path / "run" / "last.pt", progress=False, log=quiet)


def test_training_into_an_output_that_holds_a_run_needs_resume_or_overwrite(tmp_path):
    fit(tiny_config(tmp_path, epochs=1), progress=False, log=quiet)
    with pytest.raises(RunDirectoryError, match="already holds a run.*--resume.*--overwrite"):
        fit(tiny_config(tmp_path, epochs=1), progress=False, log=quiet)
    fit(tiny_config(tmp_path, epochs=1, seed=5), overwrite=True, progress=False, log=quiet)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["train_config"]["seed"] == 5


def test_a_second_run_into_a_locked_output_is_refused(tmp_path):
    with RunDirectory(tmp_path / "run"):
        with pytest.raises(RunDirectoryError, match="another capsedu run .* is using"):
            fit(tiny_config(tmp_path), progress=False, log=quiet)
    fit(tiny_config(tmp_path, epochs=1), progress=False, log=quiet)  # released: the same output works


def test_output_problems_are_found_before_any_data_is_loaded(tmp_path, monkeypatch):
    import capsedu.data as data

    monkeypatch.setattr(data, "load_split", lambda *a, **k: pytest.fail("data loaded before the output was checked"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirectoryError, match="is a file, not a directory"):
        fit(tiny_config(tmp_path, output=str(tmp_path / "file")), progress=False, log=quiet)
    with pytest.raises(RunDirectoryError, match="cannot write to --output"):
        fit(tiny_config(tmp_path, output=str(tmp_path / "file" / "sub")), progress=False, log=quiet)


def test_resume_of_a_finished_run_says_there_is_nothing_to_do(tmp_path):
    fit(tiny_config(tmp_path, epochs=1), progress=False, log=quiet)
    with pytest.raises(ValueError, match="nothing to do: .* already holds 1 epochs"):
        fit(tiny_config(tmp_path, epochs=1), resume=tmp_path / "run" / "last.pt", progress=False, log=quiet)


def same_threads_env():
    """The environment for a ``capsedu`` subprocess that uses as many torch threads as this process: the
    bit-identical resume contract holds for one thread count (the checkpoint records it)."""
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "capsedu.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=same_threads_env(), **kw)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_at_a_random_moment_of_capsedu_train_resumes_to_the_same_weights(tmp_path, sig, straight):
    args = ["train", "--recipe", "paper", "--subset", "--train-limit", "192", "--test-limit", "100", "--batch-size", "64",
            "--epochs", "2", "--seed", "3", "--no-progress", "--output", str(tmp_path / "run")]
    proc = cli(*args)
    history = tmp_path / "run" / "history.json"
    deadline = time.time() + 120
    while not history.exists() and proc.poll() is None and time.time() < deadline:  # wait for epoch 1
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err
    if proc.returncode != 0:  # stopped (130, as for any Ctrl-C): resume to the end
        assert proc.returncode == 130, err
        done = subprocess.run([sys.executable, "-m", "capsedu.cli", *args, "--resume"], capture_output=True,
                              text=True, timeout=300, env=same_threads_env())
        assert done.returncode == 0, done.stderr
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 2
    assert_same_weights(straight[0], {k: v for k, v in state["model_state"].items()}, exact=True)
    keys = ("epoch", "train_loss", "train_accuracy", "test_accuracy", "lr")  # the CLI tests in batches of 500
    pick = lambda hist: [{k: h[k] for k in keys} for h in hist]  # noqa: E731
    assert pick(json.loads(history.read_text())) == pick(straight[1])


def test_resume_with_another_thread_count_is_reported(tmp_path, one_thread):
    fit(tiny_config(tmp_path, epochs=1), progress=False, log=quiet)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["torch_threads"] == 1
    torch.set_num_threads(2)  # one_thread puts the count back afterwards
    lines = []
    fit(tiny_config(tmp_path, epochs=2), resume=tmp_path / "run" / "last.pt", progress=False, log=lines.append)
    assert any("2 torch threads (checkpoint: 1)" in line for line in lines), lines


def test_a_one_cycle_run_interrupted_mid_epoch_resumes_bit_identical(tmp_path):
    straight_run = fit(tiny_config(tmp_path / "straight", schedule="one-cycle", lr=3e-3), progress=False, log=quiet)
    handle = send_sigint_at_optimizer_step(4)
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_config(tmp_path, schedule="one-cycle", lr=3e-3), progress=False, log=quiet)
    finally:
        handle.remove()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    from capsedu.fast import resolve_amp

    assert state["amp"] is resolve_amp("auto", "cpu")  # the autocast setting the run used is recorded
    resumed = fit(tiny_config(tmp_path, schedule="one-cycle", lr=3e-3), resume=tmp_path / "run" / "last.pt",
                  progress=False, log=quiet)
    assert_same_weights(weights(straight_run.model), weights(resumed.model), exact=True)
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in straight_run.history]


def test_resume_with_bf16_autocast_switched_is_reported(tmp_path):
    fit(tiny_config(tmp_path, epochs=1, amp=False), progress=False, log=quiet)
    lines = []
    fit(tiny_config(tmp_path, epochs=2, amp=True), resume=tmp_path / "run" / "last.pt", progress=False,
        log=lines.append)
    assert any("bf16 autocast on (checkpoint: off)" in line for line in lines), lines
