"""capsedu.teaching.routing_after_2017: the toy routed by every procedure, and the recorded routing comparison."""
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from capsedu import dynamic_routing
from capsedu.records import RECORD_FORMAT, load_records, record_path, write_record
from capsedu.routings import ROUTINGS
from capsedu.teaching import routing_after_2017
from capsedu.teaching.agreement import toy_votes
from capsedu.teaching.routing_after_2017 import (
    CLAIMS, claims_report, compare,
    PROCEDURES, RECORD_COMMAND, TABLES, comparison_rows, contrasts, coupling_measures, format_comparison, lift_toy, metric_value,
    missing_runs, planned_runs, recorded_runs_report, route_toy, routing_label, routing_procedures_widget,
)
from capsedu.train import TrainConfig


def test_the_chapter_covers_every_registered_procedure():
    assert sorted(PROCEDURES) == sorted(ROUTINGS)


def test_lifting_the_toy_keeps_dot_products_and_dynamic_routing_and_leaves_a_layernorm_only_rescaling():
    u2, _ = toy_votes()
    u16, basis = lift_toy(u2, dim=16, seed=3)
    assert u16.shape == (1, 7, 3, 16) and basis.shape == (2, 16)
    assert torch.allclose(basis @ basis.T, torch.eye(2), atol=1e-6)
    assert torch.allclose(basis.sum(dim=1), torch.zeros(2), atol=1e-6)
    flat, lifted = u2.reshape(-1, 2), u16.reshape(-1, 16)
    assert torch.allclose(flat @ flat.T, lifted @ lifted.T, atol=1e-5)
    assert torch.allclose(dynamic_routing(u2, 3, return_couplings=True)[1],
                          dynamic_routing(u16, 3, return_couplings=True)[1], atol=1e-6)
    x = lifted[:5]                                            # vectors of the plane: zero mean component
    normed = torch.nn.functional.layer_norm(x, (16,), eps=0.0)
    assert torch.allclose(normed, 4.0 * x / x.norm(dim=1, keepdim=True), atol=1e-5)
    assert torch.allclose((u16 @ basis.T), u2, atol=1e-6)     # read back in two dimensions
    with pytest.raises(ValueError, match="2-D votes"):
        lift_toy(u16)


@pytest.mark.parametrize("name", PROCEDURES)
def test_route_toy_returns_one_examples_couplings_and_outputs_and_is_repeatable(name):
    u, _ = lift_toy(toy_votes()[0])
    first, again = route_toy(name, u, 3, seed=1), route_toy(name, u, 3, seed=1)
    assert first["couplings"].shape == (7, 3) and first["outputs"].shape == (3, 16) and first["lengths"].shape == (3,)
    assert torch.allclose(first["couplings"].sum(dim=1), torch.ones(7), atol=1e-5)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert ((first["lengths"] >= 0) & (first["lengths"] <= 1)).all()


def test_route_toy_leaves_the_global_random_state_alone():
    u, _ = lift_toy(toy_votes()[0])
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    route_toy("inverted-attention", u, 3, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_coupling_measures_of_uniform_and_one_hot_couplings():
    uniform, one_hot = torch.full((4, 3), 1 / 3), torch.eye(3)[[0, 1, 2, 0]]
    assert coupling_measures(uniform) == pytest.approx({"entropy": 1.0, "polarisation": 0.0})
    assert coupling_measures(one_hot) == pytest.approx({"entropy": 0.0, "polarisation": 1.0}, abs=1e-6)
    votes = torch.zeros(4, 3, 2)
    votes[0] = 1.0                                           # only child 0 votes: the weighted measures are its own
    mixed = torch.cat([one_hot[:1], uniform[1:]])
    m = coupling_measures(mixed, votes)
    assert m["weighted_polarisation"] == pytest.approx(1.0) and m["weighted_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert m["polarisation"] == pytest.approx(0.25)


def test_the_widget_switches_procedure_and_iterations():
    pytest.importorskip("ipywidgets")
    u, basis = lift_toy(toy_votes()[0])
    w = routing_procedures_widget(u, basis, procedure="dynamic", iterations=1)
    assert w.state["measures"]["polarisation"] == pytest.approx(0.0, abs=1e-6)          # r = 1: uniform
    assert w.update(iterations=3)["measures"]["polarisation"] > 0.5
    state = w.update(procedure="em")
    assert state["procedure"] == "em" and torch.equal(state["couplings"], route_toy("em", u, 3)["couplings"])
    assert "em: couplings after r = 3" in w.readout.value
    w.update(procedure="self-attention")
    assert "(ignored)" in w.readout.value
    html = w.static_html()
    assert html.count("<figure>") == 5 and w.current_values() == {"procedure": "self-attention", "iterations": 3}


# ----------------------------------------------------------------------------- recorded runs

def fake_record(model="capsnet", routing="dynamic", seed=0, error=0.02, extra=None, batch_size=100,
                examples=(1000,)):
    """A complete record as the runner writes it for ``routing_comparison``, with a made-up history."""
    history = [{"epoch": i + 1, "train_examples": n, "test_error": error, "seconds": 1.0}
               for i, n in enumerate(examples)]
    return {"format": RECORD_FORMAT, "experiment": "routing_comparison", "run": f"{model}-{routing}-seed{seed}",
            "key": {"model": model, "routing": routing, "seed": seed}, "scale": "cpu",
            "config": asdict(TrainConfig(seed=seed, batch_size=batch_size)), "seed": seed, "epochs": len(history),
            "wall_seconds": 30.0, "train_seconds": 20.0, "device": "cpu", "machine": "m", "torch": "t", "commit": "c",
            "test_error": error, "test_accuracy": 1 - error, "history": history, "labels": {},
            "extra": extra if extra is not None else {}}


def write_fakes(folder, records):
    for r in records:
        write_record(record_path(folder, "routing_comparison", "cpu", r["run"]), r)
    return load_records("routing_comparison", "cpu", folder)


def test_comparison_rows_pool_seeds_per_model_and_routing_in_the_chapters_order(tmp_path):
    extra = lambda e, a, p, s: {"affine_test_error": a, "parameters": p, "seconds_per_step": s,
                                "coupling_entropy": e, "coupling_polarisation": 1 - e}
    records = write_fakes(tmp_path, [
        fake_record("efficient-capsnet", "self-attention", 0, 0.01, extra(0.5, 0.20, 161824, 0.1)),
        fake_record("capsnet", "em", 0, 0.05, extra(0.1, 0.30, 100, 1.0)),
        fake_record("capsnet", "dynamic", 1, 0.03, extra(0.9, 0.12, 100, 0.4)),
        fake_record("capsnet", "dynamic", 0, 0.01, extra(0.7, 0.10, 100, 0.2)),
    ])
    rows = comparison_rows(records)
    assert [(r.model, r.routing, r.seeds) for r in rows] == [
        ("capsnet", "dynamic", (0, 1)), ("capsnet", "em", (0,)), ("efficient-capsnet", "self-attention", (0,))]
    dynamic = rows[0]
    assert dynamic.mean("error") == pytest.approx(2.0) and dynamic.std("error") == pytest.approx(2 ** 0.5)
    assert dynamic.mean("affine_error") == pytest.approx(11.0) and dynamic.mean("entropy") == pytest.approx(0.8)
    assert dynamic.mean("polarisation") == pytest.approx(0.2) and dynamic.mean("seconds_per_step") == pytest.approx(0.3)
    assert dynamic.cell("error") == "2.00 +- 1.41" and rows[1].cell("error") == "5.00"     # one seed: no spread
    assert rows[2].cell("parameters") == "161,824" and dynamic.cell("parameters") == "100"      # a count that does not vary
    table = format_comparison(rows)
    assert table.splitlines()[0].split()[:3] == ["model", "routing", "seeds"] and "0,1" in table
    assert len(table.splitlines()) == 2 + len(rows)
    costs = format_comparison(rows, TABLES[1], seeds=False)
    assert costs.splitlines()[0].split() == ["model", "routing", "parameters", "s", "/", "step", "entropy", "polarisation"]


def test_a_variant_of_the_shared_protocol_is_a_row_of_its_own_named_by_its_change(tmp_path):
    variant = fake_record("capsnet", "em", 0, 0.04)
    variant["key"] = {"model": "capsnet", "routing": "em", "lr": 1e-4, "seed": 0}
    variant["run"] = "capsnet-em-lr0.0001-seed0"
    records = write_fakes(tmp_path, [fake_record("capsnet", "em", 0, 0.9), variant,
                                     fake_record("capsnet", "em", 1, 0.9)])
    rows = comparison_rows(records)
    assert [(r.routing, r.seeds, r.mean("error")) for r in rows] == [("em", (0, 1), pytest.approx(90.0)),
                                                                     ("em, lr 0.0001", (0,), pytest.approx(4.0))]
    assert routing_label({"model": "capsnet", "routing": "dynamic", "seed": 3}) == "dynamic"


def test_metrics_missing_from_a_record_are_left_out_not_invented(tmp_path):
    records = write_fakes(tmp_path, [fake_record(seed=0, extra={"affine_test_accuracy": 0.9}),
                                     fake_record(seed=1, extra={})])
    assert metric_value(records[0], "affine_error") == pytest.approx(10.0)
    assert metric_value(records[1], "affine_error") is None and metric_value(records[0], "entropy") is None
    row = comparison_rows(records)[0]
    assert row.values["affine_error"] == (pytest.approx(10.0), None)
    assert row.cell("affine_error") == "10.00" and row.cell("entropy") == "-" and row.cell("polarisation") == "-"


def test_seconds_per_step_falls_back_to_training_seconds_over_optimizer_steps(tmp_path):
    record = write_fakes(tmp_path, [fake_record(batch_size=100, examples=(1000, 950))])[0]   # 10 + 10 steps, 20 s
    assert metric_value(record, "seconds_per_step") == pytest.approx(1.0)
    record["extra"]["seconds_per_step"] = 0.25
    assert metric_value(record, "seconds_per_step") == 0.25


def test_missing_runs_are_the_planned_keys_without_a_record(tmp_path):
    records = write_fakes(tmp_path, [fake_record("capsnet", "dynamic", 0)])
    planned = [{"model": "capsnet", "routing": "dynamic", "seed": 0}, {"model": "capsnet", "routing": "em", "seed": 0},
               {"model": "capsnet", "routing": "dynamic", "seed": 1}]
    assert missing_runs(records, planned) == planned[1:]
    assert missing_runs([], planned) == planned


def test_the_report_without_records_names_the_missing_runs_and_the_command_and_prints_no_number(tmp_path):
    planned = [{"model": "capsnet", "routing": r, "seed": 0} for r in ("dynamic", "em")]
    text = recorded_runs_report(load_records("routing_comparison", "cpu", tmp_path), planned)
    assert "No recorded run of routing_comparison" in text and "2 of 2 planned run(s) have no record yet" in text
    assert "model=capsnet, routing=em, seed=0" in text and text.rstrip().endswith(RECORD_COMMAND)
    assert "%" not in text and "+-" not in text
    unknown = recorded_runs_report([], None)
    assert "not available here" in unknown and unknown.rstrip().endswith(RECORD_COMMAND)
    pairs = recorded_runs_report([], planned, experiment="routing_multimnist")
    assert "No recorded run of routing_multimnist" in pairs
    assert pairs.rstrip().endswith("python -m experiments.run routing_multimnist --scale cpu")


def _routing_and_no_routing(tmp_path, *more):
    """Two seeds each of dynamic routing and uniform couplings: as good on clean digits, uniform ten points worse
    on the affNIST-like set; then ``more``."""
    return write_fakes(tmp_path, [
        fake_record("capsnet", "dynamic", 0, 0.010, {"affine_test_error": 0.10}),
        fake_record("capsnet", "dynamic", 1, 0.012, {"affine_test_error": 0.12}),
        fake_record("capsnet", "uniform", 0, 0.011, {"affine_test_error": 0.20}),
        fake_record("capsnet", "uniform", 1, 0.013, {"affine_test_error": 0.22}), *more])


def test_contrasts_say_whether_each_difference_from_dynamic_routing_is_inside_the_seed_spread(tmp_path):
    records = _routing_and_no_routing(tmp_path, fake_record("capsnet", "em", 0, 0.050))
    lines = contrasts(comparison_rows(records))
    assert lines == [
        "  capsnet uniform: clean error % 1.20 against 1.10, +0.10 (inside the seed spread 0.28: no difference shown); "
        "affine error % 21.00 against 11.00, +10.00 (outside the seed spread 2.83: higher over seeds 0,1 and 0,1)",
        "  capsnet em: clean error % 5.00 against 1.10, +3.90 (a single seed cannot separate them); "
        "affine error % not recorded"]
    assert contrasts(comparison_rows(records[2:])) == []                  # no dynamic-routing row to compare with


def test_the_report_with_some_records_tables_them_and_lists_the_rest(tmp_path):
    records = write_fakes(tmp_path, [fake_record("capsnet", "dynamic", s, 0.01 * (s + 1)) for s in (0, 1)])
    planned = [dict(r["key"]) for r in records] + [{"model": "capsnet", "routing": "em", "seed": 0}]
    text = recorded_runs_report(records, planned)
    assert "2 recorded run(s)" in text and "1.50 +- 0.71" in text and "Against capsnet" not in text   # nothing to compare
    assert "1 of 3 planned run(s) have no record yet" in text and RECORD_COMMAND in text
    complete = recorded_runs_report(records, planned[:2])
    assert "All 2 planned runs are recorded." in complete and RECORD_COMMAND not in complete


def test_planned_runs_falls_back_to_this_checkout_when_the_records_live_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    monkeypatch.setenv("CAPSEDU_RESULTS", str(tmp_path / "results"))
    checkout = Path(routing_after_2017.__file__).resolve().parents[2]
    assert planned_runs("cpu") == planned_runs("cpu", root=checkout)


def test_planned_runs_reads_the_experiments_plan_or_says_none(tmp_path):
    assert planned_runs("cpu", root=tmp_path) is None                     # no experiments/ there
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "__init__.py").write_text("")
    (tmp_path / "experiments" / "routing_comparison.py").write_text(
        "class R:\n    def __init__(self, key): self.key = key\n"
        "def runs(scale):\n    return [R({'model': 'capsnet', 'routing': 'dynamic', 'seed': s}) for s in (0, 1)]\n")
    import sys
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "experiments" or k.startswith("experiments.")}
    try:
        assert planned_runs("cpu", root=tmp_path) == [{"model": "capsnet", "routing": "dynamic", "seed": s}
                                                      for s in (0, 1)]
        assert str(tmp_path) not in sys.path
    finally:
        for k in [k for k in sys.modules if k == "experiments" or k.startswith("experiments.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def test_the_report_of_the_first_seed_only_prints_its_numbers_and_claims_no_routing_ahead(tmp_path):
    """Seed 0 of efficient-capsnet, uniform, dynamic and self-attention, as they may be recorded first."""
    first = [("capsnet", "dynamic", 0.011, 0.30), ("capsnet", "uniform", 0.012, 0.20),
             ("capsnet", "self-attention", 0.015, 0.45), ("efficient-capsnet", "self-attention", 0.030, 0.60)]
    records = write_fakes(tmp_path, [fake_record(m, r, 0, e, {"affine_test_error": a}) for m, r, e, a in first])
    planned = planned_runs("cpu")
    text = recorded_runs_report(records, planned)
    assert "4 recorded run(s)" in text and "10 of 14 planned run(s) have no record yet" in text
    assert "model=capsnet, routing=em, seeds=0,1" in text and "model=capsnet, routing=dynamic, seed=1" in text
    assert "model=capsnet, routing=em, lr=0.0001, seeds=0,1" in text
    assert text.count("routing=em") == 2                  # one line per run key, its missing seeds after it
    assert text.rstrip().endswith(RECORD_COMMAND)
    for model, routing, error, affine in first:        # every recorded number is in the table, as recorded
        row = next(line for line in text.splitlines() if line.split()[:2] == [model, routing])
        assert row.split()[2:5] == ["0", f"{100 * error:.2f}", f"{100 * affine:.2f}"], row
    assert text.count("a single seed cannot separate them") == 2 * 3
    assert "these records cannot say that one routing is ahead of another" in text
    for claim in ("outside the seed spread", "lower", "higher", "inside the seed spread"):
        assert claim not in text, claim


def test_the_reports_two_halves_are_its_tables_and_the_rest(tmp_path):
    records = write_fakes(tmp_path, [fake_record("capsnet", "dynamic", 0, 0.01, {"affine_test_error": 0.2}),
                                     fake_record("capsnet", "uniform", 0, 0.02, {"affine_test_error": 0.3})])
    planned = planned_runs("cpu")
    whole, tables, rest = (recorded_runs_report(records, planned, part=p) for p in ("all", "tables", "rest"))
    assert whole == tables + "\n\n" + rest and "capsnet" in tables and "Against capsnet" in rest
    assert "Against" not in tables and "have no record yet" not in tables
    assert recorded_runs_report([], planned, part="tables") == ""
    with pytest.raises(ValueError, match="part"):
        recorded_runs_report(records, planned, part="middle")


def test_the_report_says_when_there_is_no_dynamic_routing_row_to_compare_with(tmp_path):
    records = write_fakes(tmp_path, [fake_record("capsnet", "uniform", 0), fake_record("efficient-capsnet",
                                                                                       "self-attention", 0)])
    text = recorded_runs_report(records, [dict(r["key"]) for r in records])
    assert "No record of capsnet with dynamic routing yet" in text and "against" not in text


def test_the_report_compares_two_seeds_only_where_both_rows_have_them(tmp_path):
    records = write_fakes(tmp_path, [fake_record("capsnet", "dynamic", s, 0.010 + 0.001 * s) for s in (0, 1)]
                          + [fake_record("capsnet", "uniform", s, 0.030 + 0.001 * s) for s in (0, 1)]
                          + [fake_record("capsnet", "em", 0, 0.050)])
    text = recorded_runs_report(records, [dict(r["key"]) for r in records])
    uniform = next(line for line in text.splitlines() if line.startswith("  capsnet uniform:"))
    assert "clean error % 3.05 against 1.05, +2.00 (outside the seed spread 0.14: higher over seeds 0,1 and 0,1)" \
        in uniform
    assert "capsnet em: clean error % 5.00 against 1.05, +3.95 (a single seed cannot separate them)" in text
    assert "cannot say that one routing is ahead" not in text


def test_compare_needs_two_seeds_a_side_before_it_names_the_lower_row(tmp_path):
    records = write_fakes(tmp_path, [
        fake_record("capsnet", "dynamic", 0, 0.010), fake_record("capsnet", "dynamic", 1, 0.012),
        fake_record("capsnet", "uniform", 0, 0.011), fake_record("capsnet", "uniform", 1, 0.013),
        fake_record("capsnet", "inverted-attention", 0, 0.030), fake_record("capsnet", "inverted-attention", 1, 0.031),
        fake_record("capsnet", "em", 0, 0.001),
    ])
    dynamic, uniform, inverted, em = comparison_rows(records)
    assert compare(uniform, dynamic, "error") == (pytest.approx(0.1), "inside")
    assert compare(inverted, dynamic, "error") == (pytest.approx(1.95), "higher")
    assert compare(dynamic, inverted, "error") == (pytest.approx(-1.95), "lower")
    assert compare(em, dynamic, "error") == (pytest.approx(-1.0), "single seed")     # far lower, but one seed
    assert compare(uniform, dynamic, "entropy") is None                               # not in these records


def test_each_papers_claim_gets_the_verdict_its_two_rows_allow_and_no_verdict_without_them(tmp_path):
    records = _routing_and_no_routing(tmp_path, fake_record("capsnet", "inverted-attention", 0, 0.030))
    lines = claims_report(comparison_rows(records))
    assert len(lines) == len(CLAIMS)
    paik, gu_clean, gu_affine, gu_harm, tsai, sabour, mazzia = lines
    assert paik.endswith("(+0.10) -> consistent (no difference shown)")
    assert gu_clean.endswith("-> consistent (no difference shown)")
    assert gu_affine.endswith("(+10.00) -> disagrees: routing is better")     # uniform's affine error far higher
    assert gu_harm.endswith("(-10.00) -> disagrees: routing helps here")
    assert tsai.endswith("-> cannot tell: fewer than two seeds on a side")
    assert mazzia == ("Mazzia et al. 2021, Efficient-CapsNet, a fraction of the parameters, matches the CapsNet: "
                      "efficient-capsnet self-attention not recorded yet")
    assert sabour.endswith("capsnet uniform and capsnet dynamic not recorded yet")     # no MultiMNIST rows given
    assert claims_report([]) and all("not recorded yet" in line for line in claims_report([]))
    pairs = write_fakes(tmp_path / "pairs", [
        fake_record("capsnet", routing, seed, error, {"multimnist_test_error": error})
        for routing, errors in (("dynamic", (0.30, 0.31)), ("uniform", (0.40, 0.41))) for seed, error in enumerate(errors)])
    sabour = claims_report(comparison_rows(records), comparison_rows(pairs))[5]
    assert sabour.startswith("Sabour et al. 2017") and sabour.endswith("(+10.00) -> agrees: routing is better")
    report = recorded_runs_report(pairs, None, experiment="routing_multimnist")
    assert "4 recorded run(s) of routing_multimnist" in report and "pair error %" in report
    assert "pair error % 40.50 against 30.50, +10.00 (outside the seed spread" in report
    assert "affine" not in report and "clean error" not in report

