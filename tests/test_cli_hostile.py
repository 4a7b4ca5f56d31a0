"""What a careless or hostile user tries on the command line and the library's entry points: each ends in
one line naming the problem, and nothing is lost or overwritten."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from capsedu.cli import main
from capsedu.data import SUBSET_PATH
from capsedu.teaching.pretrained import PRETRAINED_PATH
from capsedu.training import fit, make_optimizer, train_epoch
from capsedu.training.run_directory import RunDirectoryError
from run_fixtures import one_line_error, quiet, tiny_config


def test_resuming_into_the_output_of_another_run_does_not_overwrite_it(tmp_path):
    a = fit(tiny_config(tmp_path, output=str(tmp_path / "a"), epochs=1), progress=False, log=quiet)
    fit(tiny_config(tmp_path, output=str(tmp_path / "b"), epochs=1, seed=4), progress=False, log=quiet)
    before = {name: (tmp_path / "b" / name).read_bytes() for name in ("last.pt", "history.json")}
    with pytest.raises(RunDirectoryError, match=r"already holds a run .*--resume .*a/last\.pt would write over it"):
        fit(tiny_config(tmp_path, output=str(tmp_path / "b"), epochs=2), resume=a.checkpoint, progress=False,
            log=quiet)
    assert {name: (tmp_path / "b" / name).read_bytes() for name in before} == before


def test_an_empty_output_is_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, "train", "--subset", "--output", "", "--no-progress")
    assert "--output must name a directory, got ''" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command, packaged", [
    (("make-subset", "--n-train", "20", "--n-test", "10"), SUBSET_PATH),
    (("export-pretrained", str(PRETRAINED_PATH)), PRETRAINED_PATH),
])
def test_writing_into_the_package_needs_an_explicit_path_or_flag(capsys, command, packaged):
    before = packaged.stat().st_mtime_ns
    with pytest.raises(SystemExit) as info:
        main(list(command))
    assert info.value.code == 2
    assert "one of the arguments --out --into-package is required" in capsys.readouterr().err
    assert packaged.stat().st_mtime_ns == before


def test_exporting_an_export_reports_its_accuracy_without_crashing(tmp_path, capsys):
    assert main(["export-pretrained", str(PRETRAINED_PATH), "--out", str(tmp_path / "again.pt")]) == 0
    out = capsys.readouterr().out
    assert "exported weights on the subset mnist test set: " in out and "again.json" in out


def test_an_export_into_a_directory_names_the_directory_not_a_temporary_file(tmp_path, capsys):
    err = one_line_error(capsys, "export-pretrained", str(PRETRAINED_PATH), "--out", str(tmp_path))
    assert f"got {tmp_path}, a directory" in err and ".tmp" not in err


def test_the_loop_refuses_no_batches_as_the_evaluator_does():
    net = torch.nn.Linear(4, 2)
    opt, _ = make_optimizer(net)
    with pytest.raises(ValueError, match=r"train_epoch\(\) got no batches"):
        train_epoch(net, [], opt, progress=False)


@pytest.mark.parametrize("settings, message", [
    (dict(decay_steps=0), "decay_steps must be an integer >= 1, got 0"),
    (dict(lr_decay=0.0), "lr_decay must be a finite number in (0.0, 1.0], got 0.0"),
    (dict(lr=float("nan")), "lr must be a finite number > 0.0, got nan"),
])
def test_make_optimizer_refuses_settings_that_would_divide_by_zero_or_poison_the_weights(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")):
        make_optimizer(torch.nn.Linear(2, 2), **settings)


def test_ctrl_c_while_the_command_is_still_starting_ends_in_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "capsedu.cli", "train", "--subset", "--no-progress", "--output",
                             str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    maps = f"/proc/{proc.pid}/maps"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # until torch's libraries start to load
        try:
            with open(maps) as f:
                if "torch" in f.read():
                    break
        except FileNotFoundError:  # no /proc (macOS): give the interpreter time to start instead
            time.sleep(0.5)
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # torch is still loading
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith("interrupted"), err
