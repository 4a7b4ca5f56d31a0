"""The benchmark scripts run end to end on tiny sizes (--quick) and write the JSON they promise."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

# the scripts set torch's thread count for their process (--quick: one thread); here they run inside pytest's
pytestmark = pytest.mark.usefixtures("one_thread")


def _load(name):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _machine_ok(machine):
    for key in ("cpu_model", "cpu_count", "torch_version", "torch_threads", "device"):
        assert machine[key] not in (None, ""), key
    assert machine["cpu_count"] > 0 and machine["torch_threads"] > 0


def _read(payload, out):
    assert Path(payload["path"]) == out
    data = json.loads(out.read_text())
    assert data["quick"] is True
    _machine_ok(data["machine"])
    return data


def test_routing_benchmark_times_every_method_and_checks_they_agree(tmp_path):
    out = tmp_path / "routing.json"
    data = _read(_load("bench_routing").main(["--quick", "--iterations", "1", "3", "--out", str(out)]), out)
    rows = data["results"]
    assert {r["method"] for r in rows} == {"capsedu", "capsedu-autograd", "broadcast", "einsum", "literal"}
    assert {r["iterations"] for r in rows} == {1, 3}
    for r in rows:
        assert r["median_s"] > 0
        if r["method"] != "literal":
            assert r["peak_bytes"] > 0 and r["saved_bytes"] >= 0
            assert r["max_abs_diff_vs_broadcast"] < 1e-5
        else:
            assert "extrapolated" in r["measured"] and r["max_abs_diff_vs_capsedu"] < 1e-5
    assert all(p["median_s"] > 0 and p["max_abs_diff_vs_capsedu"] < 1e-5 for p in data["predictions"])


def test_train_step_benchmark_compares_naive_and_capsedu(tmp_path):
    out = tmp_path / "train.json"
    data = _read(_load("bench_train_step").main(["--quick", "--out", str(out)]), out)
    names = [r["variant"] for r in data["results"]]
    assert names[:2] == ["naive", "capsedu"] and "baseline-cnn" in names
    from capsedu.fast import resolve_amp

    # bf16 rows where capsedu train would use bf16, for the CapsNet and the CNN alike
    assert ("capsedu+amp" in names) == ("baseline-cnn+amp" in names) == resolve_amp("auto", "cpu")
    assert data["macs_per_image"]["baseline_cnn"] > data["macs_per_image"]["capsnet"] > 0
    assert data["max_abs_diff_naive_vs_capsedu"] < 1e-5  # the two formulations compute the same function
    for r in data["results"]:
        assert r["train_step_median_s"] > 0 and r["train_images_per_s"] > 0 and r["inference_images_per_s"] > 0
        assert r["train_speedup_vs_naive"] > 0


def test_epoch_benchmark_extrapolates_on_the_cpu_and_says_so(tmp_path):
    out = tmp_path / "epoch.json"
    data = _read(_load("bench_epoch").main(["--quick", "--device", "cpu", "--out", str(out)]), out)
    assert data["mode"] == "extrapolated" and "extrapolated" in data["note"]
    assert data["steps_per_epoch"] > 0 and data["timed_steps"] >= 1
    assert data["step_median_s"] > 0 and data["epoch_seconds_extrapolated"] > data["step_median_s"]


def test_epoch_benchmark_measured_mode_times_whole_epochs_and_stops_at_the_target(tmp_path):
    # the path a GPU takes, on a few CPU digits: warm-up on every batch shape, timed epochs, test accuracy
    out = tmp_path / "epoch_measured.json"
    data = _read(_load("bench_epoch").main(["--quick", "--measure", "--device", "cpu", "--train-limit", "20",
                                            "--max-epochs", "2", "--target", "1.01", "--out", str(out)]), out)
    assert data["mode"] == "measured" and data["train_examples"] == 20 and data["steps_per_epoch"] == 3
    assert data["warmup_s"] > 0 and len(data["history"]) == 2  # a target above 100 % is never reached
    assert data["time_to_target_s"] is None
    for h in data["history"]:
        assert h["epoch_seconds"] > 0 and 0.0 <= h["test_accuracy"] <= 1.0
    assert data["history"][1]["elapsed_s"] > data["history"][0]["elapsed_s"]


def test_cpu_peak_memory_counts_new_storages_but_not_views_of_existing_ones():
    import torch

    common = _load("_common")
    cpu = torch.device("cpu")
    existing = torch.zeros(1000, 1000)  # 4 MB made before the call
    assert common.peak_memory(lambda: existing.view(100, 10000), cpu) == 0
    assert common.peak_memory(lambda: existing.add_(1.0), cpu) == 0  # in place: no new memory

    def two_temporaries():
        a = existing * 2.0     # 4 MB
        b = a + 1.0            # 4 MB more, both alive
        del a
        return b.sum()

    assert common.peak_memory(two_temporaries, cpu) == 2 * 4_000_000  # a and b, before a is freed


def test_machine_descriptions_say_whether_the_cpu_has_native_bf16(tmp_path):
    import torch

    from capsedu.fast import cpu_bf16

    machine = _load("_common").machine_info(torch.device("cpu"))
    assert machine["cpu_bf16"] == {"native": cpu_bf16().native, "features": cpu_bf16().features,
                                   "amp_auto": cpu_bf16().auto}


def test_time_to_accuracy_benchmark_times_the_whole_command_per_epoch(tmp_path):
    out = tmp_path / "tta.json"
    data = _read(_load("bench_time_to_accuracy").main(["--quick", "--variants", "quick", "--targets", "0.0", "1.01",
                                                       "--out", str(out)]), out)
    (row,) = data["results"]
    assert row["command"].startswith("capsedu train") and len(row["epochs"]) == 1
    epoch = row["epochs"][0]
    assert 0 < epoch["wall_s"] <= row["total_wall_s"] and 0.0 <= epoch["test_accuracy"] <= 1.0
    assert row["time_to"]["0.0"] == {"wall_s": epoch["wall_s"], "epoch": 1}  # any accuracy reaches 0 %
    assert row["time_to"]["101.0"] is None                                   # none reaches 101 %


def test_bf16_accuracy_benchmark_retrains_a_recorded_float32_run_in_bf16(tmp_path):
    out = tmp_path / "bf16.json"
    data = _read(_load("bench_bf16_accuracy").main(["--quick", "--seeds", "0", "--out", str(out)]), out)
    (row,) = data["results"]
    assert row["fp32_record"] == "capsnet-r3-recon-seed0" and row["bf16_history"][0]["train_examples"] == 256
    assert row["difference_points"] == row["bf16_test_error_pct"] - row["fp32_test_error_pct"]
    assert data["within_fp32_spread"] is None  # a quick run is not a verdict


def test_peer_benchmark_times_capsedu_in_both_precisions_without_peer_folders(tmp_path):
    out = tmp_path / "peers.json"
    data = _read(_load("bench_peers").main(["--quick", "--out", str(out)]), out)
    assert [(r["implementation"], r["precision"]) for r in data["results"]] == [("capsedu", "float32"),
                                                                                ("capsedu", "bf16")]
    assert all(r["step_median_s"] > 0 and r["parameters"] == 8_215_568 for r in data["results"])
    assert data["speedups"] == {}


def test_the_readmes_performance_table_is_the_summary_of_the_recorded_results():
    summarize = _load("summarize")
    assert summarize.readme_block_matches(), "refresh it: python benchmarks/summarize.py --readme"
    table = summarize.readme_table()
    assert table.count("\n") > 5 and "bench_time_to_accuracy.py" in table and "bench_peers.py" in table
