"""The experiments runner (experiments/): every experiment runs at a tiny scale, resumes, and every
committed record is valid."""
import json
from collections import Counter
from dataclasses import asdict

import pytest
import torch

from capsedu.checkpoint import load_checkpoint
from capsedu.records import RecordError, examples_seen, read_record, validate_record
from capsedu.train import TrainConfig, fit
from experiments import data_efficiency, mnist_table
from experiments.run import EXPERIMENTS, main
from experiments.runner import REPO, execute, record_path
from run_fixtures import quiet


def _optimizer_steps(config: dict) -> int:
    """Steps a training configuration takes: batches per epoch (the last one partial) times epochs."""
    return -(-config["train_limit"] * config["train_repeat"] // config["batch_size"]) * config["epochs"]


def _finish_without_record(run, tmp_path):
    """Train ``run`` to its end outside the runner, as if the process had stopped before writing the record."""
    out = tmp_path / "c" / run.experiment / run.scale / run.name
    fit(TrainConfig(**{**run.config.__dict__, "output": str(out)}), progress=False, log=quiet)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_runs_at_tiny_scale_and_writes_valid_records(tmp_path, name):
    module = EXPERIMENTS[name]
    first = module.runs("tiny", seeds=(0,))[0]
    assert main([name, "--scale", "tiny", "--seeds", "0", "--only", first.name, "--results", str(tmp_path / "r"),
                 "--runs", str(tmp_path / "c")]) == 0
    record = json.loads(record_path(first, tmp_path / "r").read_text())
    validate_record(record)
    assert record["run"] == first.name and record["scale"] == "tiny" and record["config"]["seed"] == 0
    from experiments.summary import summary

    table = summary("tiny", tmp_path / "r").split(f"### {name} (tiny scale)")[1].split("###")[0]
    if name == "affine_robustness" and not record["extra"]["until"]["reached"]:
        assert f"Not in the table: {first.name} never reached the level" in table     # a few tiny steps rarely do
    else:
        assert " | 0 |" in table     # the summary's table has the run's row, its seeds column naming seed 0


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


def test_data_efficiency_draws_a_balanced_subset_per_seed_below_the_full_set_for_three_models():
    runs = data_efficiency.runs("cpu")
    assert Counter(r.key["model"] for r in runs) == {"capsnet": 12, "capsnet-no-decoder": 12, "baseline": 12}
    for run in runs:
        full = run.key["train_size"] == 60000
        assert run.key["subset_seed"] == (None if full else run.key["seed"]) == run.config.train_subset_seed
        assert run.config.reconstruction == (run.key["model"] == "capsnet") or run.key["model"] == "baseline"
    assert [r.key["train_size"] for r in runs] == sorted(r.key["train_size"] for r in runs)  # small sizes first
    assert len({r.name for r in runs}) == len(runs) == len({tuple(sorted(r.key.items())) for r in runs})


def test_a_data_efficiency_run_trains_on_as_many_examples_as_its_budget(tmp_path):
    run = data_efficiency.runs("tiny", seeds=(1,))[0]
    record = execute(run, tmp_path / "r", tmp_path / "c", log=quiet)
    assert examples_seen(record) == data_efficiency.EXAMPLES["tiny"] == run.config.train_limit * run.config.train_repeat
    assert record["key"] == {"model": "capsnet", "train_size": 64, "subset_seed": 1, "seed": 1}
    state = load_checkpoint(tmp_path / "c" / "data_efficiency" / "tiny" / run.name / "last.pt")
    assert state["data"]["examples"] == 64   # the 64 distinct digits of the subset, repeated four times


def test_every_recorded_data_efficiency_run_trained_the_examples_of_its_budget():
    for path in sorted((REPO / "experiments" / "results" / "data_efficiency").glob("*/*.json")):
        record = read_record(path)
        assert examples_seen(record) == record["labels"]["examples"], path.name
        assert record["labels"]["examples"] == data_efficiency.EXAMPLES[record["scale"]], path.name


def test_only_takes_shell_wildcards_and_names_a_pattern_that_matches_nothing(tmp_path, capsys):
    from experiments.runner import select

    runs = data_efficiency.runs("cpu")
    chosen = select(runs, ["*-n100-seed0", "baseline-n1000-*"])
    assert [r.name for r in chosen] == ["capsnet-n100-seed0", "capsnet-no-decoder-n100-seed0", "baseline-n100-seed0",
                                        "baseline-n1000-seed0", "baseline-n1000-seed1", "baseline-n1000-seed2"]
    with pytest.raises(SystemExit) as exc:
        main(["data_efficiency", "--only", "capsnet-n7-*", "--results", str(tmp_path)])
    assert exc.value.code == 2 and "--only capsnet-n7-* matches no run" in capsys.readouterr().err


def test_a_finished_run_without_its_record_gets_the_record_from_its_checkpoint(tmp_path, monkeypatch):
    run = mnist_table.runs("tiny", seeds=(0,))[0]
    _finish_without_record(run, tmp_path)
    monkeypatch.setattr("experiments.runner.fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    record = execute(run, tmp_path / "r", tmp_path / "c", log=quiet)
    assert record == read_record(record_path(run, tmp_path / "r")) and record["epochs"] == 1


def test_an_unwritable_results_folder_is_reported_before_training_and_a_later_run_writes_the_record(tmp_path,
                                                                                                  capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    run = mnist_table.runs("tiny", seeds=(0,))[0]
    args = ["mnist_table", "--scale", "tiny", "--only", run.name, "--runs", str(tmp_path / "c")]
    assert main(args + ["--results", str(blocked)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("experiments.run: error: cannot write records to") and str(blocked) in err
    assert err.count("\n") == 1 and not (tmp_path / "c").exists()
    _finish_without_record(run, tmp_path)    # e.g. a kill between the last checkpoint and the record
    assert main(args + ["--results", str(tmp_path / "r")]) == 0
    validate_record(json.loads(record_path(run, tmp_path / "r").read_text()))


@pytest.mark.parametrize("content", ["{}", '{"format": "capsedu-exp', "[]"])
def test_a_malformed_record_is_not_done_and_both_commands_name_its_file_in_one_line(tmp_path, capsys, content):
    from experiments.summary import main as summary_main

    run = mnist_table.runs("tiny", seeds=(0,))[0]
    path = record_path(run, tmp_path / "r")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(RecordError, match=str(path)):
        execute(run, tmp_path / "r", tmp_path / "c", log=quiet)
    assert main(["mnist_table", "--scale", "tiny", "--only", run.name, "--results", str(tmp_path / "r"),
                 "--runs", str(tmp_path / "c")]) == 2
    assert summary_main(["--scale", "tiny", "--results", str(tmp_path / "r")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(str(path) in line for line in errors)
    assert errors[0].startswith("experiments.run: error:") and errors[1].startswith("experiments.summary: error:")


def test_the_runner_refuses_to_write_a_record_that_does_not_validate(tmp_path):
    run = mnist_table.runs("tiny", seeds=(0,))[0]
    run.measure = lambda model, config: {}
    run.key = {"row": "baseline", "seed": 7}    # disagrees with the run's seed
    with pytest.raises(RecordError, match="seed is the record's"):
        execute(run, tmp_path / "r", tmp_path / "c", log=quiet)
    assert not record_path(run, tmp_path / "r").exists()


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
        record = read_record(path)
        assert path.stem == record["run"] and path.parent.name == record["scale"]
        assert path.parent.parent.name == record["experiment"]


def test_the_multimnist_experiment_at_tiny_scale_records_the_papers_rule_overlap_and_numbers(tmp_path):
    from experiments import multimnist

    runs = multimnist.runs("tiny")
    assert [r.name for r in runs] == ["capsnet-r3-recon-seed0", "baseline-small-seed0", "capsnet-r1-recon-seed0",
                                      "capsnet-r3-authors-weight-seed0", "baseline-paper-seed0"]
    assert [r.labels["paper_error"] for r in runs] == [5.2, 8.1, 7.5, None, 8.1]
    assert [r.labels["loss"] for r in runs] == ["pair-margin", "pair-bce", "pair-margin", "pair-margin", "pair-bce"]
    assert main(["multimnist", "--scale", "tiny", "--only", "baseline-small-seed0", "--results", str(tmp_path / "r"),
                 "--runs", str(tmp_path / "c")]) == 0
    record = json.loads(record_path(runs[1], tmp_path / "r").read_text())
    validate_record(record)
    extra = record["extra"]
    assert extra["multimnist_test_error"] == pytest.approx(record["test_error"])  # the history's test is the rule's
    assert extra["multimnist_test_pairs"] == 100 and 0.6 < extra["mean_overlap"] < 0.85
    assert extra["paper_error_percent"] == {"capsnet-r3-recon": 5.2, "baseline-small": 8.1,
                                            "capsnet-r1-recon": 7.5, "baseline-paper": 8.1}
    assert record["config"]["preset"] == "multimnist-small" and extra["until"]["patience"] == 1
    assert [t["epoch"] for t in extra["until"]["trace"]] == list(range(1, record["epochs"] + 1))
    from experiments.summary import summary                       # the README's table says where the run stopped
    row = summary("tiny", tmp_path / "r").split("### multimnist (tiny scale)")[1].splitlines()[4]
    stop = "plateau" if extra["until"]["reached"] else "epoch cap"
    assert row.startswith("| Baseline CNN") and f"| {record['epochs']} | {stop} | 0 |" in row


def test_the_multimnist_cpu_runs_train_on_held_in_digits_until_a_plateau_with_the_libraries_schedule():
    from experiments import multimnist

    runs = {r.name: r for r in multimnist.runs("cpu")}
    for run in runs.values():
        c = run.config.validate()
        assert (c.dataset, c.epochs, c.batch_size, c.train_limit, c.lr, c.lr_decay, c.decay_steps) == \
            ("multimnist", 15, 128, 55000, 1e-3, 0.96, 2000)
        assert c.train_limit + multimnist.HELD_OUT["cpu"] == 60000 and run.until.patience == 3
    assert runs["capsnet-r3-authors-weight-seed0"].config.reconstruction_weight == 0.0005 * 20
    assert runs["baseline-paper-seed0"].config.preset == "multimnist-paper"
    paper = multimnist.runs("paper")[0].config
    assert paper.epochs * paper.train_repeat * 55000 >= 60_000_000  # the paper's 60M training pairs


def test_the_multimnist_baselines_match_the_papers_size_and_the_capsnets_compute():
    from capsedu.models import BaselineCNN, CapsNet, count_parameters
    from capsedu.teaching.architecture import conv_linear_macs, layer_table

    paper, small = BaselineCNN("multimnist-paper", image_size=36), BaselineCNN("multimnist-small", image_size=36)
    assert count_parameters(paper) == 24_535_306        # the paper: 24.56M
    capsnet = sum(row.macs for row in layer_table(CapsNet("small", image_size=36)) if row.name != "decoder")
    assert abs(conv_linear_macs(small, (1, 36, 36)) / capsnet - 1) < 0.01
    assert [type(m).__name__ for m in small.features] == ["Conv2d", "ReLU", "MaxPool2d"] * 2


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
        if r["experiment"] == "affine_robustness" and not r["extra"]["until"]["reached"]:
            assert f"Not in the table: {r['run']} never reached the level" in text
            continue
        labels = r["labels"]
        name = (f"| {r['key']['train_size']:,} |" if r["experiment"] == "data_efficiency"
                else f"| {labels['label']} |" if "label" in labels else f"| {r['key']['model']} |")
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


def _until_run(level, values, epochs=4):
    """A tiny run that trains until a fake measure, returning ``values`` epoch after epoch, reaches ``level``."""
    from experiments.runner import Target

    calls = []

    def measure(model, config):
        calls.append(1)
        return values[len(calls) - 1]

    run = mnist_table.runs("tiny", seeds=(0,))[0]
    run.config.epochs = epochs
    run.until = Target(measure, "fake held-out accuracy", level=level)
    return run, calls


def test_a_run_with_a_target_stops_at_the_first_epoch_that_reaches_it(tmp_path):
    run, calls = _until_run(0.8, [0.3, 0.9, 0.95])
    record = execute(run, tmp_path / "r", tmp_path / "c", log=quiet)
    assert record["epochs"] == 2 and len(calls) == 2 and examples_seen(record) == 2 * 256
    assert record["extra"]["until"] == {"name": "fake held-out accuracy", "level": 0.8, "patience": None,
                                        "min_gain": 0.0, "reached": True,
                                        "trace": [{"epoch": 1, "value": 0.3}, {"epoch": 2, "value": 0.9}]}


def test_a_target_never_reached_stops_at_the_epoch_limit_and_says_so(tmp_path):
    run, calls = _until_run(2.0, [0.1, 0.2], epochs=2)
    record = execute(run, tmp_path / "r", tmp_path / "c", log=quiet)
    assert record["epochs"] == 2 and record["extra"]["until"]["reached"] is False


def test_a_targeted_run_that_stopped_before_its_record_is_recorded_without_training_or_measuring_again(
        tmp_path, monkeypatch):
    run, calls = _until_run(0.8, [0.3, 0.9])
    first = execute(run, tmp_path / "r", tmp_path / "c", log=quiet)
    record_path(run, tmp_path / "r").unlink()
    monkeypatch.setattr("experiments.runner.fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = execute(run, tmp_path / "r", tmp_path / "c", log=quiet)
    assert len(calls) == 2 and again["extra"]["until"] == first["extra"]["until"]
    assert again["history"] == first["history"]


def test_the_affine_protocol_stops_both_models_at_the_same_held_out_level_on_digits_never_trained_on():
    from experiments import affine_robustness as a

    runs = a.runs("cpu")
    assert [r.name for r in runs] == ["capsnet-seed0", "baseline-seed0", "capsnet-seed1", "baseline-seed1",
                                      "capsnet-r1-seed0", "capsnet-r1-seed1"]
    assert {r.until.level for r in runs} == {a.TARGET["cpu"]} and {r.until for r in runs} == {runs[0].until}
    assert all(r.config.train_limit + a.HELD_OUT["cpu"] == 60000 for r in runs)   # disjoint from the trained digits


def test_retest_affine_measures_both_shipped_models_on_every_set(tmp_path):
    from experiments.retest_affine import main as retest_main

    assert retest_main(["--subset", "--n", "40", "--out", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    for name in ("capsnet", "baseline"):
        assert result["models"][name]["examples"] == {"clean": 40, "generated-v1": 40, "calibrated": 40}
        assert result["models"][name]["accuracy"]["clean"] > 0.9       # the shipped models read centred digits


def test_a_plateau_target_stops_once_the_best_of_the_last_epochs_gains_too_little():
    from experiments.runner import Target

    plateau = Target(lambda m, c: 0.0, "held-out accuracy", patience=2, min_gain=0.01)
    assert not plateau.reached([0.5, 0.6]) and not plateau.reached([0.5, 0.6, 0.7])
    assert not plateau.reached([0.5, 0.6, 0.605, 0.62]) and plateau.reached([0.5, 0.6, 0.605, 0.608])
    with pytest.raises(ValueError, match="either a level or a patience"):
        Target(lambda m, c: 0.0, "x")


def test_the_committed_retest_of_the_shipped_affine_models_covers_every_set_at_full_size():
    from experiments.retest_affine import OUT

    committed = json.loads(OUT.read_text())
    assert committed["command"] == "python -m experiments.retest_affine"
    assert set(committed["sets"]) >= {"clean", "generated-v1", "calibrated"}
    for model in committed["models"].values():
        assert set(model["examples"].values()) == {10000}
        # the calibrated set moves digits beyond the training placement: harder than the first generated set
        assert model["accuracy"]["calibrated"] < model["accuracy"]["generated-v1"] < model["accuracy"]["clean"]


def test_analyse_multimnist_reports_every_analysis_of_the_shipped_model(tmp_path):
    from experiments.analyse_multimnist import main as analyse_main

    assert analyse_main(["--subset", "--n", "40", "--out", str(tmp_path / "a.json")]) == 0
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["pairs"] == 40 and sum(row["pairs"] for row in result["error_by_overlap"]) == 40
    assert set(result["routing_sweep"]) == {"1", "2", "3", "5"} and result["trained_with_iterations"] == 3
    assert result["routing_sweep"]["3"] == pytest.approx(result["error"])
    assert 1 - result["error"] <= result["at_least_one_right"] <= 1



def test_the_committed_multimnist_analysis_is_of_all_test_pairs_and_agrees_with_the_shipped_record():
    from experiments.analyse_multimnist import OUT

    committed = json.loads(OUT.read_text())
    shipped = json.loads((REPO / "capsedu" / "assets" / "multimnist_capsnet_small.json").read_text())
    assert committed["pairs"] == 10000 and committed["command"] == "python -m experiments.analyse_multimnist"
    assert 1 - committed["error"] == pytest.approx(shipped["test_accuracy_shipped"]["full"]["accuracy"])


def test_the_routing_comparison_gives_every_routing_the_same_data_and_step_budget():
    from experiments import routing_comparison as rc
    from capsedu.routings import ROUTINGS

    runs = rc.runs("cpu")
    assert len(runs) == 2 * (len(ROUTINGS) + 1 + len(rc.VARIANTS)) and len({r.name for r in runs}) == len(runs)
    assert {(r.key["model"], r.key["routing"]) for r in runs} == {("capsnet", name) for name in ROUTINGS} | {
        ("efficient-capsnet", "self-attention")}
    shared = {k: v for k, v in asdict(runs[0].config).items() if k not in ("model", "preset", "routing", "seed")}
    for r in runs:
        config = asdict(r.config)
        changed = {k: v for k, v in r.key.items() if k not in ("model", "routing", "seed")}   # a variant's changes
        assert {k: config[k] for k in shared} == {**shared, **changed}, r.name
        assert config["routing"] == r.key["routing"] and config["seed"] == r.key["seed"]
    assert shared["augment"] == "place" and shared["canvas_size"] == 40 and shared["train_limit"] == 55000
    assert _optimizer_steps(shared) == rc.steps("cpu") == 860 == runs[0].labels["steps"]


def test_the_em_variant_of_the_routing_comparison_changes_only_the_learning_rate():
    from experiments import routing_comparison as rc

    runs = {r.name: r for r in rc.runs("cpu", seeds=(1,))}
    variant, shared = runs["capsnet-em-lr0.0001-seed1"], runs["capsnet-em-seed1"]
    assert variant.key == {"model": "capsnet", "routing": "em", "lr": 1e-4, "seed": 1}
    assert asdict(variant.config) == {**asdict(shared.config), "lr": 1e-4}
    assert variant.labels == shared.labels


def test_the_routing_comparison_at_tiny_scale_records_errors_parameters_speed_and_couplings(tmp_path):
    from experiments import routing_comparison as rc

    names = ["capsnet-dynamic-seed0", "capsnet-uniform-seed0", "efficient-capsnet-seed0"]
    assert main(["routing_comparison", "--scale", "tiny", "--seeds", "0", "--only", *names,
                 "--results", str(tmp_path / "r"), "--runs", str(tmp_path / "c")]) == 0
    runs = {r.name: r for r in rc.runs("tiny", seeds=(0,))}
    records = {name: read_record(record_path(runs[name], tmp_path / "r")) for name in names}
    for name, record in records.items():
        extra = record["extra"]
        assert record["key"] == runs[name].key and examples_seen(record) == rc.TRAIN_DIGITS["tiny"]
        assert 0 <= extra["affine_test_error"] <= 1 and extra["affine_test_examples"] == rc.AFFINE_EXAMPLES["tiny"]
        assert extra["seconds_per_step"] > 0 and extra["coupling_examples"] == rc.COUPLING_EXAMPLES["tiny"]
        assert 0 < extra["parameters_without_decoder"] < extra["parameters"]
        for measure in ("entropy", "weighted_entropy", "polarisation", "weighted_polarisation"):
            assert 0 <= extra[f"coupling_{measure}"] <= 1 + 1e-6, (name, measure)
    uniform = records["capsnet-uniform-seed0"]["extra"]
    assert uniform["coupling_entropy"] == pytest.approx(1.0)
    assert uniform["coupling_polarisation"] == pytest.approx(0.0, abs=1e-6)
    # the paper's 161,824 at 28x28; on the 40x40 canvas each of the 128 depthwise kernels covers a 15x15 map, not 9x9
    assert records["efficient-capsnet-seed0"]["extra"]["parameters_without_decoder"] == 161824 + 128 * (15 ** 2 - 9 ** 2)


def test_the_routing_multimnist_runs_are_the_routing_comparisons_models_on_pairs_with_one_budget():
    from experiments import routing_comparison as rc
    from experiments import routing_multimnist as rm

    runs = rm.runs("cpu")
    assert [(r.name, r.key) for r in runs] == [(r.name, r.key) for r in rc.runs("cpu")]   # the same models, seeds
    shared = {k: v for k, v in asdict(runs[0].config).items() if k not in ("model", "preset", "routing", "seed")}
    for r in runs:
        config = asdict(r.config)
        changed = {k: v for k, v in r.key.items() if k not in ("model", "routing", "seed")}   # a variant's changes
        assert {k: config[k] for k in shared} == {**shared, **changed}, r.name
        assert r.labels["loss"] == "pair-margin" and r.labels["steps"] == rm.steps("cpu") == 860
    assert (shared["dataset"], shared["train_limit"], shared["reconstruction"]) == ("multimnist", 55000, True)
    assert _optimizer_steps(shared) == 860


def test_the_routing_multimnist_at_tiny_scale_records_the_papers_pair_error_and_the_couplings_on_pairs(tmp_path):
    from experiments import routing_multimnist as rm

    names = ["capsnet-dynamic-seed0", "capsnet-uniform-seed0", "efficient-capsnet-seed0"]
    assert main(["routing_multimnist", "--scale", "tiny", "--seeds", "0", "--only", *names,
                 "--results", str(tmp_path / "r"), "--runs", str(tmp_path / "c")]) == 0
    runs = {r.name: r for r in rm.runs("tiny", seeds=(0,))}
    for name in names:
        record = read_record(record_path(runs[name], tmp_path / "r"))
        extra = record["extra"]
        assert record["key"] == runs[name].key and examples_seen(record) == rm.TRAIN_DIGITS["tiny"]
        assert extra["multimnist_test_error"] == pytest.approx(record["test_error"])
        assert extra["multimnist_test_pairs"] == 100 and 0.6 < extra["mean_overlap"] < 0.85
        assert extra["coupling_examples"] == rm.COUPLING_EXAMPLES["tiny"] and extra["seconds_per_step"] > 0
        assert 0 < extra["parameters_without_decoder"] < extra["parameters"]
        if name == "capsnet-uniform-seed0":
            assert extra["coupling_entropy"] == pytest.approx(1.0)


def test_an_experiment_without_the_scale_asked_for_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["routing_comparison", "--scale", "paper"])
    assert info.value.code == 2
    assert "routing_comparison has the scales ['cpu', 'tiny'], not 'paper'" in capsys.readouterr().err


def test_the_routing_comparisons_coupling_measures_are_chapter_7_6s_for_dynamic_routing(one_thread):
    from capsedu.data import Batches, load_split
    from capsedu.teaching.couplings import coupling_statistics
    from capsedu.teaching.pretrained import load_pretrained
    from experiments.routing_comparison import coupling_summary

    model = load_pretrained()
    batches = Batches(load_split("mnist", "test", subset=True), 25, limit=50)
    images = torch.cat([x for x, _ in batches])
    chapter = coupling_statistics(model, images, iterations=model.routing_iterations)
    ours = coupling_summary(model, batches)
    for name in ("entropy", "weighted_entropy", "polarisation", "weighted_polarisation"):
        assert ours[f"coupling_{name}"] == pytest.approx(float(chapter[name][-1]), rel=1e-4), name
    assert ours["coupling_entropy"] < 1 - 1e-4  # a trained model's couplings have left uniform


def _routing_record(tmp_path, model, routing, seed, error, affine, entropy, step, parameters, rc=None):
    """A ``routing_comparison`` record (or one of experiment module ``rc``) as the runner writes it, with made-up
    numbers, in ``tmp_path``."""
    from capsedu.records import RECORD_FORMAT, write_record
    if rc is None:
        from experiments import routing_comparison as rc

    run = next(r for r in rc.runs("cpu", seeds=(seed,)) if r.key["model"] == model and r.key["routing"] == routing)
    extra = {"affine_test_error": affine, "coupling_entropy": entropy, "seconds_per_step": step,
             "parameters": parameters}
    if rc.NAME == "routing_multimnist":
        # the float32 measure after training; the history's test pass (bf16 autocast) may differ a little
        extra = {**extra, "multimnist_test_error": error}
        error = error + 0.0005
    record = {"format": RECORD_FORMAT, "experiment": rc.NAME, "run": run.name, "key": run.key, "scale": "cpu",
              "labels": run.labels, "config": run.config.to_dict(), "seed": seed, "epochs": 1, "wall_seconds": 10.0,
              "train_seconds": 3600.0, "device": "cpu", "machine": "m", "torch": "t", "commit": "c",
              "test_error": error, "test_accuracy": 1 - error,
              "history": [{"epoch": 1, "train_examples": 55000, "test_error": error, "test_accuracy": 1 - error,
                           "seconds": 3600.0}],
              "extra": extra}
    write_record(record_path(run, tmp_path), record)


def test_the_routing_comparison_table_has_one_row_per_model_and_routing_and_counts_the_planned_runs(tmp_path):
    from experiments.summary import summary

    _routing_record(tmp_path, "efficient-capsnet", "self-attention", 0, 0.030, 0.40, 0.5, 0.3, 186000)
    _routing_record(tmp_path, "capsnet", "dynamic", 1, 0.012, 0.22, 0.9, 1.2, 5865792)
    _routing_record(tmp_path, "capsnet", "dynamic", 0, 0.010, 0.20, 0.7, 1.0, 5865792)
    _routing_record(tmp_path, "capsnet", "uniform", 0, 0.011, 0.25, 1.0, 0.5, 5865792)
    text = summary("cpu", tmp_path).split("### routing_comparison (cpu scale)")[1]
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[1:] == [
        "| capsnet | dynamic | 1.10 +- 0.14 % | 21.00 +- 1.41 % | 0.800 +- 0.141 | 1.100 +- 0.141 | 5,865,792 | 0, 1 |",
        "| capsnet | uniform | 1.10 % | 25.00 % | 1.000 | 0.500 | 5,865,792 | 0 |",
        "| efficient-capsnet | self-attention | 3.00 % | 40.00 % | 0.500 | 0.300 | 186,000 | 0 |"]
    assert "4 of the 14 planned runs are recorded; missing: capsnet-self-attention-seed0," in text
    assert "capsnet-em-lr0.0001-seed1." in text and "`python -m experiments.run routing_comparison --scale cpu`" in text


def test_the_routing_multimnist_table_gives_the_float32_pair_error_per_model_and_routing(tmp_path):
    from experiments import routing_multimnist as rm
    from experiments.summary import summary

    _routing_record(tmp_path, "capsnet", "dynamic", 0, 0.30, None, 0.9, 1.0, 4653072, rc=rm)
    _routing_record(tmp_path, "capsnet", "uniform", 0, 0.32, None, 1.0, 0.7, 4653072, rc=rm)
    text = summary("cpu", tmp_path).split("### routing_multimnist (cpu scale)")[1]
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model | routing | MultiMNIST pair error |")
    assert rows[1:] == ["| capsnet | dynamic | 30.00 % | 0.900 | 1.000 | 4,653,072 | 0 |",
                        "| capsnet | uniform | 32.00 % | 1.000 | 0.700 | 4,653,072 | 0 |"]
    assert "2 of the 14 planned runs are recorded" in text and "by the paper's rule on 10,000 fixed test pairs" in text


def test_em_routings_first_adam_step_at_the_papers_rate_lifts_every_activation_and_a_tenth_of_it_does_not():
    from capsedu.teaching.routing_after_2017 import em_first_steps as first_steps

    paper = first_steps(1e-3, steps=1)           # capsedu.routings.em's docstring and chapter 10.5 quote these
    assert paper[0]["loss"] == pytest.approx(1.639, abs=0.01) and paper[0]["argument"] > 0   # every parent above 0.5
    assert paper[1]["loss"] > 2 * paper[0]["loss"] and min(paper[1]["a_true"], paper[1]["a_others"]) > 0.9
    assert paper[1]["child_length"] > 5 * paper[0]["child_length"] and paper[1]["turn"] < 0  # swung round, 6x longer
    assert paper[1]["mass"] > 5 * paper[0]["mass"]
    slow = first_steps(1e-4, steps=2)
    assert slow[2]["loss"] < slow[1]["loss"] < slow[0]["loss"] and slow[1]["child_length"] < slow[0]["child_length"]


def test_the_affine_table_leaves_a_run_that_never_reached_the_level_out_of_the_means_and_names_it():
    from experiments.summary import affine_robustness

    def record(model, seed, hard, reached=True, held=0.986):
        until = {"name": "held-out accuracy", "level": 0.985, "reached": reached, "trace": [{"epoch": 1, "value": held}]}
        return {"run": f"{model}-seed{seed}", "key": {"model": model, "seed": seed}, "seed": seed, "epochs": 3,
                "test_accuracy": 0.985, "labels": {},
                "extra": {"affine_test_accuracy": hard, "affine_test": "generated set", "until": until}}

    lines = affine_robustness([record("baseline", 0, 0.77), record("baseline", 1, 0.76),
                               record("baseline", 2, 0.10, reached=False, held=0.106), record("capsnet", 0, 0.78)])
    baseline = next(line for line in lines if line.startswith("| baseline |"))
    assert "76.50 +- 0.71 %" in baseline and "| 0, 1 |" in baseline
    assert "Not in the table: baseline-seed2 never reached the level (held-out 10.60 % after 3 epochs)." in lines


def test_timing_a_training_step_reports_cpu_seconds_and_leaves_threads_and_rng_as_they_were():
    from experiments import step_cost

    config = TrainConfig(preset="small", batch_size=4, subset=True)
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(4, 1, 28, 28, generator=g), torch.randint(0, 10, (4,), generator=g))
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    wall, cpu = step_cost.time_steps(config, batch, (1, 28, 28), steps=1, threads=1)
    assert wall > 0 and cpu > 0
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    with pytest.raises(ValueError, match="at least 1"):
        step_cost.time_steps(config, batch, (1, 28, 28), steps=0)
