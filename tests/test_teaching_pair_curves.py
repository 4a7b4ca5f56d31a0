"""capsedu.teaching.pair_curves: the MultiMNIST runs' curves, where they cross, which run ends ahead."""
import matplotlib

matplotlib.use("Agg")

from capsedu.teaching.pair_curves import crossings, curves_report, lead_sentence, pair_curves, plot_pair_curves


def _record(row, errors, final, seed=0, reached=True, paper=None, pairs=55000):
    return {"key": {"row": row, "seed": seed}, "seed": seed, "run": f"{row}-seed{seed}",
            "labels": {"row": row, "label": row.upper(), "paper_error": paper},
            "history": [{"epoch": i + 1, "train_examples": pairs, "test_error": e} for i, e in enumerate(errors)],
            "test_error": errors[-1],
            "extra": {"multimnist_test_error": final, "until": {"reached": reached, "trace": []}}}


def test_a_curve_counts_the_pairs_seen_and_keeps_the_float32_final_error_apart_from_the_history():
    (curve,) = pair_curves([_record("capsnet-r3-recon", [0.5, 0.3, 0.2], 0.201, reached=False, paper=5.2)])
    assert curve.pairs == (55000, 110000, 165000) and curve.epochs == 3
    assert curve.errors == (50.0, 30.0, 20.0) and abs(curve.final - 20.1) < 1e-9
    assert curve.plateau is False and curve.paper == 5.2


def test_curves_come_in_the_given_row_order_then_by_seed():
    records = [_record("baseline-small", [0.3], 0.3, seed=1), _record("capsnet-r3-recon", [0.4], 0.4),
               _record("baseline-small", [0.3], 0.3, seed=0)]
    got = [(c.row, c.seed) for c in pair_curves(records, order=("capsnet-r3-recon", "baseline-small"))]
    assert got == [("capsnet-r3-recon", 0), ("baseline-small", 0), ("baseline-small", 1)]


def test_crossings_are_the_epochs_after_which_the_lead_changes_hands_ties_aside():
    a, b = pair_curves([_record("a", [0.5, 0.3, 0.30, 0.2, 0.25], 0.25), _record("b", [0.4, 0.35, 0.30, 0.25, 0.2], 0.2)])
    assert crossings(a, b) == [2, 5]        # b leads, a leads after 2 (tie at 3 changes nothing), b again after 5
    c, d = pair_curves([_record("c", [0.5, 0.4], 0.4), _record("d", [0.3, 0.2, 0.1], 0.1)])
    assert crossings(c, d) == []            # only the common epochs count


def test_the_report_says_why_each_run_stopped_and_where_or_whether_the_curves_cross():
    curves = pair_curves([_record("capsnet-r3-recon", [0.5, 0.3, 0.2], 0.2, reached=False, paper=5.2),
                          _record("baseline-small", [0.4, 0.35], 0.35)], order=("capsnet-r3-recon", "baseline-small"))
    lines = curves_report(curves, [("capsnet-r3-recon", "baseline-small")])
    assert lines[0] == "capsnet-r3-recon, seed 0: 20.00 % after 3 epochs, 165,000 pairs (epoch cap); paper 5.2 %"
    assert lines[1].endswith("(held-out plateau); not in the paper")
    assert lines[2] == ("capsnet-r3-recon and baseline-small (seed 0): the curves cross after epoch 2 (110,000 pairs; "
                        "capsnet-r3-recon lower from there)")
    never = curves_report(pair_curves([_record("x", [0.3, 0.2], 0.2), _record("y", [0.4, 0.3], 0.3)]), [("x", "y")])
    assert never[-1] == "x and y (seed 0): the curves do not cross in the 2 epochs both trained; x is lower throughout"
    assert len(curves_report(curves, [("capsnet-r3-recon", "capsnet-r1-recon")])) == 2    # no r = 1 run: no line


def test_the_lead_sentence_names_the_lower_final_error_even_the_cnn_and_needs_two_seeds_for_a_spread():
    one = [_record("capsnet-r3-recon", [0.3], 0.30), _record("baseline-small", [0.3], 0.25)]
    text = lead_sentence(one, "capsnet-r3-recon", "baseline-small", ("the CapsNet", "the CNN"))
    assert text.startswith("the CNN is ahead by 5.00 points") and "one seed on a side: no spread" in text
    two = one + [_record("capsnet-r3-recon", [0.3], 0.31, seed=1), _record("baseline-small", [0.3], 0.26, seed=1)]
    assert "outside the seed spread" in lead_sentence(two, "capsnet-r3-recon", "baseline-small", ("the CapsNet", "the CNN"))
    assert lead_sentence(one, "capsnet-r3-recon", "capsnet-r1-recon", ("r = 3", "r = 1")) is None


def test_the_plot_draws_one_line_per_run_and_the_papers_number():
    ax = plot_pair_curves(pair_curves([_record("a", [0.5, 0.3], 0.3, paper=5.2), _record("b", [0.4, 0.35], 0.35)]))
    assert len(ax.get_lines()) == 4                 # two runs, the paper's line, its legend entry
    assert list(ax.get_lines()[0].get_xdata()) == [55, 110]
    import matplotlib.pyplot as plt
    plt.close(ax.figure)
