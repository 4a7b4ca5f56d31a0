"""capsedu.teaching.records: reading recorded runs and summarising them per row."""
import json
import math
from dataclasses import asdict

import pytest

from capsedu.records import RECORD_FORMAT, RecordError, find_results, group_of, record_path, write_record
from capsedu.teaching.records import (
    RowSummary, examples_seen, format_percent, inside_spread, load_records, summarize,
)
from capsedu.train import TrainConfig


def _record(run, seed, error, row="a", **labels):
    return {"run": f"{run}-seed{seed}", "seed": seed, "test_error": error, "labels": {"row": row, **labels}}


def valid_record(run="a", seed=0, error=0.25, examples=(100, 100), **key):
    """A complete record as the runner writes it, with a made-up history of ``len(examples)`` epochs."""
    history = [{"epoch": i + 1, "train_examples": n, "test_error": error, "seconds": 1.0}
               for i, n in enumerate(examples)]
    return {"format": RECORD_FORMAT, "experiment": "exp", "run": run, "key": {**key, "seed": seed}, "scale": "cpu",
            "config": asdict(TrainConfig(seed=seed)), "seed": seed, "epochs": len(history), "wall_seconds": 2.0,
            "train_seconds": 2.0, "device": "cpu", "machine": "m", "torch": "t", "commit": "c",
            "test_error": error, "test_accuracy": 1 - error, "history": history, "labels": {}, "extra": {}}


def test_load_records_reads_one_experiment_and_scale_sorted_by_run_name(tmp_path):
    for name in ("b", "a"):
        write_record(record_path(tmp_path, "exp", "cpu", name), valid_record(name))
    write_record(record_path(tmp_path, "exp", "tiny", "c"), valid_record("c"))
    assert [r["run"] for r in load_records("exp", "cpu", tmp_path)] == ["a", "b"]
    assert load_records("absent", "cpu", tmp_path) == []


@pytest.mark.parametrize("change, problem", [
    (lambda r: r.clear(), "record lacks"),
    (lambda r: r.update(format="capsedu-experiment-record-v1"), "unknown record format"),
    (lambda r: r.update(key={"model": "x"}), "seed is the record's"),
    (lambda r: r.update(test_accuracy=0.5), "disagree"),
    (lambda r: r.update(epochs=3), "epochs does not match"),
    (lambda r: r["config"].update(batch_size=0), "config is not a valid training configuration"),
])
def test_a_malformed_record_is_refused_on_writing_and_on_reading_naming_the_file(tmp_path, change, problem):
    record = valid_record()
    change(record)
    path = record_path(tmp_path, "exp", "cpu", "a")
    with pytest.raises(RecordError, match=problem):
        write_record(path, record)
    assert not path.exists()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError, match=f"^{path}: .*{problem}"):
        load_records("exp", "cpu", tmp_path)


def test_a_truncated_record_is_an_error_naming_its_file(tmp_path):
    path = record_path(tmp_path, "exp", "cpu", "a")
    write_record(path, valid_record())
    path.write_text(path.read_text()[:50])
    with pytest.raises(RecordError, match=f"^{path}: cannot read the record"):
        load_records("exp", "cpu", tmp_path)


def test_examples_seen_sums_the_training_examples_of_every_epoch():
    assert examples_seen(valid_record(examples=(128, 128, 64))) == 320


def test_group_of_is_the_key_without_the_seed():
    assert group_of(valid_record(seed=2, model="capsnet", train_size=100)) == (("model", "capsnet"),
                                                                               ("train_size", 100))


def test_find_results_prefers_the_environment_then_the_nearest_checkout_above(tmp_path, monkeypatch):
    (tmp_path / "experiments" / "results").mkdir(parents=True)
    (tmp_path / "book").mkdir()
    monkeypatch.delenv("CAPSEDU_RESULTS", raising=False)
    assert find_results(tmp_path / "book") == tmp_path / "experiments" / "results"
    monkeypatch.setenv("CAPSEDU_RESULTS", str(tmp_path / "elsewhere"))
    assert find_results(tmp_path / "book") == tmp_path / "elsewhere"


def test_summarize_groups_by_row_in_percent_with_the_sample_std_and_the_papers_numbers():
    records = [_record("x", 1, 0.012, paper_error=0.3, paper_std=0.01), _record("x", 0, 0.010, paper_error=0.3),
               _record("x", 2, 0.014), _record("y", 0, 0.02, row="b")]
    rows = summarize(records, key=lambda r: r["labels"]["row"], order=["b", "a"])
    assert [r.key for r in rows] == ["b", "a"]
    a = rows[1]
    assert a.seeds == (0, 1, 2) and a.errors == pytest.approx((1.0, 1.2, 1.4))
    assert a.mean == pytest.approx(1.2) and a.std == pytest.approx(0.2)      # n - 1 in the denominator
    assert a.paper == 0.3
    assert rows[0].n == 1 and rows[0].std == 0.0


def test_inside_spread_compares_the_difference_of_means_with_the_summed_stds():
    a = RowSummary("a", "a", (1.0, 1.2, 1.4), (0, 1, 2))
    near = RowSummary("b", "b", (1.2, 1.4, 1.6), (0, 1, 2))
    far = RowSummary("c", "c", (2.0, 2.1, 2.2), (0, 1, 2))
    assert inside_spread(a, near) and not inside_spread(a, far)
    assert inside_spread(a, RowSummary("d", "d", (9.0,), (0,)))   # one seed: no spread to judge by


def test_format_percent_shows_the_spread_only_with_several_seeds():
    assert format_percent(RowSummary("a", "a", (1.0, 1.2, 1.4), (0, 1, 2))) == "1.20 +- 0.20 %"
    assert format_percent(RowSummary("a", "a", (0.5,), (0,))) == "0.50 %"
    assert math.isclose(RowSummary("a", "a", (0.5, 0.5), (0, 1)).std, 0.0)
