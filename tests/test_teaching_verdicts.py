"""capsedu.teaching.verdicts: chapter 8.2's verdicts from records, with their evidence and seed counts."""
from capsedu.records import RowSummary
from capsedu.teaching.verdicts import (
    affine_verdict, chapter_verdicts, data_verdict, lead, mnist_verdict, multimnist_routing_verdict, multimnist_verdict,
    routing_verdict, spread_words,
)


def _rec(errors, seeds=None, extra=None, **key):
    """One record per error (a fraction), seeds 0, 1, ... unless given."""
    seeds = seeds or range(len(errors))
    return [{"run": f"run-seed{s}", "key": {**key, "seed": s}, "seed": s, "test_error": e, "extra": dict(extra or {})}
            for s, e in zip(seeds, errors)]


def test_spread_words_says_inside_outside_or_one_seed():
    a = RowSummary("a", "a", (1.0, 1.2, 1.4), (0, 1, 2))
    assert spread_words(a, RowSummary("b", "b", (1.1, 1.3, 1.5), (0, 1, 2))) == "inside the seed spread"
    assert spread_words(a, RowSummary("c", "c", (3.0, 3.1, 3.2), (0, 1, 2))) == "outside the seed spread"
    assert spread_words(a, RowSummary("d", "d", (3.0,), (0,))) == "one seed so far"


def test_lead_needs_two_seeds_and_a_gap_outside_the_spread_in_the_stated_direction():
    low, high = RowSummary("l", "l", (1.0, 1.1), (0, 1)), RowSummary("h", "h", (2.0, 2.1), (0, 1))
    assert lead(low, high) is True and lead(high, low) is False
    assert lead(low, high, lower_is_better=False) is False
    assert lead(low, RowSummary("x", "x", (1.05, 1.06), (0, 1))) is None
    assert lead(RowSummary("o", "o", (0.1,), (0,)), high) is None


def test_the_mnist_verdict_names_its_rows_and_seeds_and_cannot_settle_inside_the_spread():
    records = _rec([0.010, 0.012, 0.008], row="capsnet-r3-recon") + _rec([0.011, 0.009, 0.010], row="baseline")
    verdict = mnist_verdict(records)
    assert verdict.holds is None and verdict.seeds == 3
    assert "inside the seed spread" in verdict.finding and "mnist_table" in verdict.evidence
    assert "1.00 +- 0.20 %" in verdict.finding


def test_the_routing_verdict_is_contradicted_when_r1_wins_outside_the_spread():
    records = _rec([0.020, 0.021, 0.022], row="capsnet-r3-recon") + _rec([0.010, 0.011, 0.012], row="capsnet-r1-recon")
    assert routing_verdict(records).holds is False


def test_a_verdict_without_its_rows_says_not_yet_recorded_with_no_seeds():
    verdict = multimnist_verdict(_rec([0.2], row="baseline", extra={"multimnist_test_error": 0.2}))
    assert (verdict.finding, verdict.seeds, verdict.holds) == ("not yet recorded", 0, None)


def test_the_affine_verdict_compares_hard_set_accuracy_higher_is_better_and_names_the_set():
    extra = lambda acc: {"affine_test_accuracy": acc, "affine_test": "generated set"}  # noqa: E731
    records = ([r for s, a in enumerate((0.80, 0.82)) for r in _rec([0.01], [s], extra(a), model="capsnet")]
               + [r for s, a in enumerate((0.60, 0.62)) for r in _rec([0.01], [s], extra(a), model="baseline")])
    verdict = affine_verdict(records)
    assert verdict.holds is True and verdict.seeds == 2 and "hard set: generated set" in verdict.evidence
    assert "fixed number of epochs" in verdict.evidence  # no record stopped at a held-out accuracy
    for r in records:
        r["extra"]["until"] = {"name": "held-out accuracy", "level": 0.985, "reached": True}
    assert "trained to one held-out accuracy" in affine_verdict(records).evidence


def test_the_data_verdict_judges_each_size_by_its_own_spread_and_reports_the_model_without_decoder():
    records = (_rec([0.10, 0.11, 0.12], model="capsnet", train_size=100)
               + _rec([0.20, 0.21, 0.22], model="baseline", train_size=100)
               + _rec([0.15, 0.16, 0.17], model="capsnet-no-decoder", train_size=100)
               + _rec([0.030, 0.040, 0.020], model="capsnet", train_size=1000)
               + _rec([0.031, 0.041, 0.021], model="baseline", train_size=1000))
    verdict = data_verdict(records)
    assert verdict.finding.startswith("at equal data, CapsNet ahead outside the spread at 1 of 2 sizes, behind at 0")
    assert "without decoder 16.00 +- 1.00 %" in verdict.finding
    # ahead at equal data, but on 100 digits (11 %) far behind the CNN on 1,000 (3.1 %): the claim fails
    assert "CapsNet on 100 11.00 +- 1.00 % vs CNN on 1,000 3.10 +- 1.00 %" in verdict.finding
    assert verdict.holds is False and verdict.seeds == 3


def test_the_data_verdict_holds_when_a_tenth_of_the_data_matches_the_cnn():
    records = (_rec([0.10, 0.11, 0.12], model="capsnet", train_size=100)
               + _rec([0.20, 0.21, 0.22], model="baseline", train_size=100)
               + _rec([0.09, 0.10, 0.11], model="capsnet", train_size=1000)
               + _rec([0.12, 0.13, 0.14], model="baseline", train_size=1000))
    verdict = data_verdict(records)
    assert verdict.holds is True and "with a tenth of the CNN's digits" in verdict.finding


def test_chapter_verdicts_reads_every_experiment_of_a_results_folder(tmp_path):
    verdicts = chapter_verdicts("cpu", tmp_path)
    assert len(verdicts) == 6 and all(v.finding == "not yet recorded" for v in verdicts)
    assert str(verdicts[0]).startswith("* MNIST: CapsNet beats a CNN: not settled")


def test_the_committed_mnist_table_gives_three_seed_verdicts():
    verdicts = chapter_verdicts("cpu")
    assert verdicts[0].seeds == 3 and verdicts[1].seeds == 3


def test_a_verdict_names_the_model_ahead_even_when_it_is_the_cnn_and_with_one_seed():
    extra = lambda e: {"multimnist_test_error": e}  # noqa: E731
    records = (_rec([0.27], extra=extra(0.27), row="capsnet-r3-recon")
               + _rec([0.24], extra=extra(0.24), row="baseline-small"))
    verdict = multimnist_verdict(records)
    assert "CNN ahead (one seed so far" in verdict.finding and verdict.holds is None
    affine = affine_verdict(_rec([0.01], extra={"affine_test_accuracy": 0.8, "affine_test": "s"}, model="capsnet")
                            + _rec([0.01], extra={"affine_test_accuracy": 0.7, "affine_test": "s"}, model="baseline"))
    assert "CapsNet ahead" in affine.finding         # higher accuracy is ahead


def test_the_affine_verdict_leaves_out_a_run_that_never_reached_the_stopping_level():
    def rec(model, seed, acc, reached=True):
        until = {"reached": reached, "level": 0.985}
        return _rec([0.01], [seed], {"affine_test_accuracy": acc, "affine_test": "s", "until": until}, model=model)

    records = (rec("capsnet", 0, 0.80) + rec("capsnet", 1, 0.81) + rec("baseline", 0, 0.70) + rec("baseline", 1, 0.71)
               + rec("baseline", 2, 0.10, reached=False))
    verdict = affine_verdict(records)
    assert verdict.seeds == 2 and "70.50 +- 0.71 %" in verdict.finding


def test_the_multimnist_routing_verdict_compares_r3_with_r1_on_the_float32_pair_error():
    extra = lambda e: {"multimnist_test_error": e}  # noqa: E731
    records = [r for row, errors in (("capsnet-r3-recon", (0.20, 0.21)), ("capsnet-r1-recon", (0.25, 0.26)))
               for seed, e in enumerate(errors) for r in _rec([0.30], [seed], extra(e), row=row)]
    verdict = multimnist_routing_verdict(records)
    assert verdict.holds is True and verdict.seeds == 2 and "r = 3 ahead (outside the seed spread" in verdict.finding
