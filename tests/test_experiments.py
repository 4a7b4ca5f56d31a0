"""The experiments runner (experiments/): every experiment runs at a tiny scale, resumes, and every
committed record is valid."""
import json

import pytest
import torch

from capsedu.checkpoint import load_checkpoint
from capsedu.train import TrainConfig, fit
from experiments import data_efficiency, mnist_table
from experiments.run import EXPERIMENTS, main
from experiments.runner import REPO, Run, execute, load_records, record_path, validate_record
from run_fixtures import quiet


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_runs_at_tiny_scale_and_writes_valid_records(tmp_path, name):
    module = EXPERIMENTS[name]
    first = module.runs("tiny", seeds=(0,))[0]
    assert main([name, "--scale", "tiny", "--seeds", "0", "--only", first.name, "--results", str(tmp_path / "r"),
                 "--runs", str(tmp_path / "c")]) == 0
    record = json.loads(record_path(first, tmp_path / "r").read_text())
    validate_record(record)
    assert record["run"] == first.name and record["scale"] == "tiny" and record["config"]["seed"] == 0


def test_a_finished_run_is_skipped_and_an_interrupted_one_resumes(tmp_path, monkeypatch):
    run = mnist_table.runs("tiny", seeds=(0,))[1]
    run.config.epochs = 2
    fit(TrainConfig(**{**run.config.__dict__, "epochs": 1, "output": str(tmp_path / "c" / run.experiment / "tiny" /
                                                                         run.name)}), progress=False, log=quiet)
    logs = []
    record = execute(run, tmp_path / "r", tmp_path / "c", log=logs.append)
    assert any("resuming" in line for line in logs) and record["epochs"] == 2
    monkeypatch.setattr("experiments.runner.fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert execute(run, tmp_path / "r", tmp_path / "c", log=quiet) == record


def test_the_data_efficiency_budget_is_the_same_number_of_steps_for_every_size():
    for run in data_efficiency.runs("cpu"):
        c = run.config
        per_epoch = -(-c.train_limit * c.train_repeat // c.batch_size)
        assert per_epoch * c.epochs >= data_efficiency.STEPS["cpu"]
        assert per_epoch * c.epochs < data_efficiency.STEPS["cpu"] + 1 + 60000 // 128


def test_the_mnist_table_has_the_papers_five_rows_and_three_seeds():
    runs = mnist_table.runs("cpu")
    assert len(runs) == 15 and len({r.name for r in runs}) == 15
    assert sorted({r.labels["paper_error"] for r in runs}) == [0.25, 0.29, 0.34, 0.35, 0.39]


def test_a_small_training_set_is_repeated_within_an_epoch(tmp_path):
    config = TrainConfig(preset="small", subset=True, train_limit=32, train_repeat=3, batch_size=32, epochs=1,
                         test_limit=50, output=str(tmp_path / "o"))
    result = fit(config, progress=False, log=quiet)
    assert result.history[0]["train_examples"] == 96  # 32 digits, three times, in one epoch
    state = load_checkpoint(result.checkpoint)
    assert state["data"]["examples"] == 32  # the fingerprint is of the distinct examples


def test_every_committed_record_is_valid():
    records = list((REPO / "experiments" / "results").rglob("*.json"))
    for path in records:
        record = json.loads(path.read_text())
        validate_record(record)
        assert path.stem == record["run"] and path.parent.name == record["scale"]
        assert path.parent.parent.name == record["experiment"]
