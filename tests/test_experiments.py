"""The experiments runner (experiments/): every experiment runs at a tiny scale, resumes, and every
committed record is valid."""
import json
from dataclasses import asdict

import pytest

from capsedu.checkpoint import load_checkpoint
from capsedu.train import TrainConfig, fit
from experiments import data_efficiency, mnist_table
from experiments.run import EXPERIMENTS, main
from experiments.runner import REPO, execute, record_path, validate_record
from run_fixtures import quiet


def _optimizer_steps(config: dict) -> int:
    """Steps a training configuration takes: batches per epoch (the last one partial) times epochs."""
    return -(-config["train_limit"] * config["train_repeat"] // config["batch_size"]) * config["epochs"]


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


@pytest.mark.parametrize("scale", ["tiny", "cpu", "paper"])
def test_the_data_efficiency_budget_is_the_same_number_of_steps_for_every_size(scale):
    for run in data_efficiency.runs(scale):
        assert _optimizer_steps(asdict(run.config)) == data_efficiency.steps(scale) == run.labels["steps"], run.name
    assert data_efficiency.steps("cpu") == 1407, "the chapter states 1,407 steps (3 epochs of 60,000 digits)"


def test_every_recorded_data_efficiency_run_trained_the_steps_its_label_states():
    paths = sorted((REPO / "experiments" / "results" / "data_efficiency").glob("*/*.json"))
    assert paths, "no data-efficiency records committed"
    for path in paths:
        record = json.loads(path.read_text())
        assert _optimizer_steps(record["config"]) == record["labels"]["steps"], path.name


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


def test_the_multimnist_experiment_at_tiny_scale_records_the_papers_rule_overlap_and_numbers(tmp_path):
    from experiments import multimnist

    runs = multimnist.runs("tiny")
    assert [r.name for r in runs] == ["capsnet-r3-recon-seed0", "capsnet-r1-recon-seed0", "baseline-seed0"]
    assert [r.labels["paper_error"] for r in runs] == [5.2, 7.5, 8.1]
    assert [r.labels["loss"] for r in runs] == ["pair-margin", "pair-margin", "pair-bce"]
    assert main(["multimnist", "--scale", "tiny", "--only", "baseline-seed0", "--results", str(tmp_path / "r"),
                 "--runs", str(tmp_path / "c")]) == 0
    record = json.loads(record_path(runs[2], tmp_path / "r").read_text())
    validate_record(record)
    extra = record["extra"]
    assert extra["multimnist_test_error"] == pytest.approx(record["test_error"])  # the history's test is the rule's
    assert extra["multimnist_test_pairs"] == 100 and 0.6 < extra["mean_overlap"] < 0.85
    assert extra["paper_error_percent"] == {"capsnet-r3-recon": 5.2, "capsnet-r1-recon": 7.5, "baseline": 8.1}
    assert record["config"]["dataset"] == "multimnist" and record["config"]["model"] == "baseline"


def test_the_multimnist_cpu_scale_trains_five_epochs_of_60000_fresh_pairs():
    from experiments import multimnist

    for run in multimnist.runs("cpu"):
        c = run.config.validate()
        assert (c.dataset, c.preset, c.epochs, c.batch_size, c.train_repeat, c.train_limit) == \
            ("multimnist", "small", 5, 128, 1, None)
    paper = multimnist.runs("paper")[0].config
    assert paper.epochs * paper.train_repeat * 60000 == 60_000_000  # the paper's 60M training pairs


def test_the_affine_baseline_has_about_as_many_parameters_as_the_capsnet_as_in_section_5_2():
    from capsedu.models import count_parameters
    from experiments import affine_robustness

    runs = {r.name: r for r in affine_robustness.runs("cpu")}
    counts = {name: count_parameters(run.config.build_model((1, 40, 40)))
              for name, run in runs.items() if name in ("capsnet-seed0", "baseline-seed0")}
    assert abs(counts["baseline-seed0"] / counts["capsnet-seed0"] - 1) < 0.01, counts
    assert runs["capsnet-r1-seed0"].config.routing_iterations == 1


def test_the_summary_has_a_row_for_every_committed_cpu_run_and_their_total_training_time():
    from experiments.summary import summary

    text = summary("cpu")
    records = [json.loads(p.read_text()) for p in (REPO / "experiments" / "results").glob("*/cpu/*.json")]
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for r in records:
        labels = r["labels"]
        name = (f"| {labels['train_size']:,} |" if r["experiment"] == "data_efficiency"
                else f"| {labels['label']} |" if "label" in labels else f"| {r['run'].rsplit('-seed', 1)[0]} |")
        assert any(row.startswith(name) for row in rows), (r["run"], name)
    total = sum(r["train_seconds"] for r in records) / 3600
    assert text.splitlines()[-1] == f"Training time in all the records above: {total:.2f} h."


def test_the_summary_of_an_empty_results_folder_names_each_experiments_command(tmp_path):
    from experiments.summary import summary

    text = summary("cpu", tmp_path)
    for name in EXPERIMENTS:
        assert f"not recorded yet: `python -m experiments.run {name} --scale cpu`" in text


def test_the_readmes_experiment_tables_are_the_summary_of_the_committed_records():
    from experiments.summary import README, block_span, readme_block, summary

    content = README.read_text()
    start, end = block_span(content)
    assert content[start:end] == readme_block(summary("cpu")), "refresh it: python -m experiments.summary --readme"
