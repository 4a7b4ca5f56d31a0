"""capsedu.teaching.records: reading recorded runs and summarising them per row."""
import json
import math

import pytest

from capsedu.teaching.records import RowSummary, format_percent, inside_spread, load_records, summarize


def _record(run, seed, error, row="a", **labels):
    return {"run": f"{run}-seed{seed}", "seed": seed, "test_error": error, "labels": {"row": row, **labels}}


def test_load_records_reads_one_experiment_and_scale_sorted_by_run_name(tmp_path):
    folder = tmp_path / "exp" / "cpu"
    folder.mkdir(parents=True)
    for name in ("b", "a"):
        (folder / f"{name}.json").write_text(json.dumps({"run": name}))
    (tmp_path / "exp" / "tiny").mkdir()
    (tmp_path / "exp" / "tiny" / "c.json").write_text(json.dumps({"run": "c"}))
    assert [r["run"] for r in load_records("exp", "cpu", tmp_path)] == ["a", "b"]
    assert load_records("absent", "cpu", tmp_path) == []


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
