"""``capsedu`` on the command line: results, and one-line errors for every user mistake."""
import os
import subprocess
import sys

import pytest
import torch

from capsedu.checkpoint import save_checkpoint
from capsedu.cli import main
from capsedu.models import CapsNet
from run_fixtures import one_line_error


def run_cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "capsedu.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


TINY = ("--subset", "--train-limit", "128", "--test-limit", "100", "--batch-size", "64", "--no-progress")


def test_cli_train_and_evaluate_report_the_same_test_accuracy(tmp_path):
    out = tmp_path / "cli"
    r = run_cli("train", *TINY, "--output", str(out))
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and last.endswith("%")
    assert str(out / "last.pt") in r.stdout
    e = run_cli("evaluate", str(out / "last.pt"), "--subset", "--test-limit", "100")
    assert e.returncode == 0, e.stderr
    assert e.stdout.strip().splitlines()[-1] == last


@pytest.mark.parametrize("argv, message", [
    (("--device", "tpu"), "unknown device 'tpu'"),
    (("--device", "cuda:7"), "cuda:7"),
    (("--seed", str(2 ** 70)), "--seed must be an integer in"),
    (("--lr", "0"), "--lr must be a finite number > 0.0, got 0.0"),
    (("--model", "baseline", "--loss", "margin"), "cross-entropy"),
])
def test_bad_training_options_give_one_line_errors(tmp_path, capsys, argv, message):
    err = one_line_error(capsys, "train", *TINY, "--output", str(tmp_path / "o"), *argv)
    assert message in err


@pytest.mark.parametrize("argv", [("--lr", "inf"), ("--lr", "nan"), ("--epochs", "0"), ("--seed", "-1"),
                                  ("--routing-iterations", "x")])
def test_unparseable_options_are_refused_by_the_parser(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["train", *argv])
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


class Payload:  # an arbitrary object in a pickle: never unpickled
    pass


def test_checkpoint_problems_give_one_line_errors(tmp_path, capsys):
    net = CapsNet("small")
    assert "is a directory" in one_line_error(capsys, "evaluate", str(tmp_path))
    assert "not found" in one_line_error(capsys, "evaluate", str(tmp_path / "missing.pt"))
    torch.save({"format": "capsedu-checkpoint-v1", "x": Payload()}, tmp_path / "pickled.pt")
    err = one_line_error(capsys, "evaluate", str(tmp_path / "pickled.pt"))
    assert "unreadable or corrupt" in err and "weights_only" not in err
    save_checkpoint({"model_class": "capsnet", "model_config": net.config.to_dict()}, tmp_path / "nostate.pt")
    assert "lacks 'model_state'" in one_line_error(capsys, "evaluate", str(tmp_path / "nostate.pt"))
    save_checkpoint({"model_class": "capsnet", "model_config": {**net.config.to_dict(), "wings": 2},
                     "model_state": net.state_dict()}, tmp_path / "unknown.pt")
    assert "wings" in one_line_error(capsys, "evaluate", str(tmp_path / "unknown.pt"))
    save_checkpoint({"model_class": "capsnet", "model_config": net.config.to_dict(),
                     "model_state": net.state_dict()}, tmp_path / "weights.pt")
    err = one_line_error(capsys, "train", *TINY, "--output", str(tmp_path / "w"), "--resume", str(tmp_path / "weights.pt"))
    assert "weights only" in err


def test_resuming_a_checkpoint_with_unknown_training_settings_is_refused(tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "1", "--output", str(tmp_path / "r")]) == 0
    path = tmp_path / "r" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["train_config"]["warp_drive"] = True
    torch.save(state, path)
    capsys.readouterr()
    assert "unknown training settings ['warp_drive']" in one_line_error(capsys, "train", "--resume", str(path))


def test_cli_resume_takes_settings_from_the_checkpoint_and_refuses_changed_ones(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", *TINY, "--epochs", "1", "--preset", "small", "--output", out]) == 0
    capsys.readouterr()
    err = one_line_error(capsys, "train", "--resume", "--output", out, "--epochs", "2", "--batch-size", "32")
    assert "--batch-size 32 (checkpoint: 64)" in err
    assert main(["train", "--resume", "--output", out, "--epochs", "2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "resume: using --epochs 2 (checkpoint: 1)" in text and "test accuracy" in text


def test_an_output_that_is_a_file_is_reported_before_training(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert "is a file" in one_line_error(capsys, "train", *TINY, "--output", str(tmp_path / "f"))
