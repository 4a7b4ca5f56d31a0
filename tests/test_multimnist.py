"""MultiMNIST (paper section 6): pairs made on the fly, the fixed test set, overlap, training through the one
loop, exact resume, the command line, and the Fig. 5 computations."""

import pytest
import torch
import torch.nn as nn

from capsedu.checkpoint import load_checkpoint
from capsedu.cli import main as cli_main
from capsedu.data import (
    ImageSplit, PairBatches, Pairs, load_mnist, load_split, make_multimnist, pair_test_batches,
)
from capsedu.data.multimnist import TEST_PAIRS, TEST_SEED
from capsedu.models import CapsNet, CapsNetOutput
from capsedu.objectives import PairCrossEntropy, PairMarginLoss, count_correct
from capsedu.teaching.overlap import measure_overlap, pair_overlaps
from capsedu.train import TrainConfig, evaluate, fit, make_optimizer, train_epoch
from run_fixtures import assert_same_weights, quiet, send_sigint_at_optimizer_step, weights

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only costs


@pytest.fixture(scope="module")
def digits() -> ImageSplit:
    return load_mnist("test", subset=True)


def collect(batches):
    """All of a pass's pairs as one batch ``(Pairs, labels)``."""
    pairs = list(batches)
    images = Pairs(*(torch.cat(parts) for parts in zip(*(x for x, _ in pairs))))
    return images, torch.cat([y for _, y in pairs])


def same_pairs(a: Pairs, b: Pairs) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def pair_config(tmp_path, **kw):
    """Two epochs of three 32-pair batches of fresh pairs of subset digits: a run in a few seconds."""
    base = dict(dataset="multimnist", preset="small", epochs=2, batch_size=32, subset=True, train_limit=96,
                test_limit=50, eval_batch_size=50, output=str(tmp_path / "run"), seed=3)
    base.update(kw)
    return TrainConfig(**base)


# ----------------------------------------------------------------------------- pairs made on the fly


def test_fresh_pairs_differ_between_epochs_and_repeat_for_the_same_seed_and_epoch(digits):
    def epochs(seed):
        batches = PairBatches(digits, 96, 32, generator=torch.Generator().manual_seed(seed))
        return [collect(batches) + (batches.pass_seed,) for _ in range(3)]

    first, again, other = epochs(7), epochs(7), epochs(8)
    for (xa, ya, sa), (xb, yb, sb) in zip(first, again):
        assert same_pairs(xa, xb) and torch.equal(ya, yb) and sa == sb
    assert not same_pairs(first[0][0], first[1][0]) and not same_pairs(first[1][0], first[2][0])
    assert not same_pairs(first[0][0], other[0][0])
    # each epoch is exactly make_multimnist with the epoch's seed drawn from the run's generator
    images, targets = make_multimnist(digits, 96, seed=first[1][2]).as_batch()
    assert same_pairs(first[1][0], images) and torch.equal(first[1][1], targets)


def test_a_resumed_pass_yields_the_remaining_batches_of_the_same_pairs(digits):
    g = torch.Generator().manual_seed(5)
    batches = PairBatches(digits, 100, 32, generator=g)
    state = g.get_state()
    whole = list(batches)
    g.set_state(state)
    tail = list(batches.iter_from(2))
    assert len(whole) == 4 and len(tail) == 2 and whole[-1][0].size == 4
    for (xa, ya), (xb, yb) in zip(whole[2:], tail):
        assert same_pairs(xa, xb) and torch.equal(ya, yb)


def test_the_test_set_is_the_same_pairs_every_pass_and_a_limit_keeps_its_first_pairs(digits):
    fixed = pair_test_batches(digits, 64, limit=150)
    assert fixed.num_examples == 150 and fixed.seed == TEST_SEED and fixed.n == TEST_PAIRS
    a, b = collect(fixed), collect(fixed)
    assert same_pairs(a[0], b[0]) and torch.equal(a[1], b[1])
    full = PairBatches(digits, TEST_PAIRS, 1000, seed=TEST_SEED)
    first_batch = next(iter(full))
    assert same_pairs(first_batch[0].select(slice(0, 150)), a[0]) and torch.equal(first_batch[1][:150], a[1])


def test_the_two_digits_of_every_pair_have_different_classes(digits):
    batches = PairBatches(digits, 500, 250, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        _, targets = collect(batches)
        assert (targets[:, 0] != targets[:, 1]).all()
        assert targets.min() >= 0 and targets.max() <= 9
    few = ImageSplit(digits.images[:40], torch.arange(40) % 2, 10, "toy", "generated", "two classes")
    _, targets = collect(PairBatches(few, 50, 50, seed=1))
    assert (targets.sort(dim=1).values == torch.tensor([0, 1])).all()


def test_the_overlay_is_the_clipped_sum_of_the_two_digits(digits):
    images, _ = collect(PairBatches(digits, 64, 64, seed=2))
    overlay, first, second = images
    assert all(t.shape == (64, 1, 36, 36) and t.dtype == torch.float32 for t in images)
    assert torch.equal(overlay, torch.clamp(first + second, max=1.0))
    assert (overlay >= torch.maximum(first, second)).all() and overlay.max() <= 1.0


def test_pair_batches_refuse_bad_settings_in_one_line(digits):
    with pytest.raises(ValueError, match="exactly one of generator .* and seed"):
        PairBatches(digits, 10, 5)
    with pytest.raises(ValueError, match="exactly one of"):
        PairBatches(digits, 10, 5, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        PairBatches(digits, 0, 5, seed=0)
    one_class = ImageSplit(digits.images[:4], torch.zeros(4, dtype=torch.long), 10, "toy", "generated", "one")
    with pytest.raises(ValueError, match="at least two classes"):
        PairBatches(one_class, 10, 5, seed=0)
    with pytest.raises(ValueError, match="multimnist is made of pairs on the fly"):
        load_split("multimnist", "test")


# ----------------------------------------------------------------------------- overlap


def boxes(*rects, size=20):
    """Canvases (N, 1, size, size) with one filled rectangle (top, left, bottom, right) each, or none."""
    out = torch.zeros(len(rects), 1, size, size)
    for k, r in enumerate(rects):
        if r is not None:
            out[k, 0, r[0]:r[2], r[1]:r[3]] = 0.7
    return out


def test_overlap_of_constructed_digits_is_the_known_box_overlap():
    # A 10x10 box; the other: shifted by 5 px (half covered), a 4x4 box inside it, far away, missing
    first = boxes((0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10))
    second = boxes((0, 5, 10, 15), (3, 3, 7, 7), (12, 12, 18, 18), None)
    smaller = pair_overlaps(first, second, "smaller")
    union = pair_overlaps(first, second, "union")
    torch.testing.assert_close(smaller, torch.tensor([0.5, 1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(union, torch.tensor([50 / 150, 16 / 100, 0.0, 0.0], dtype=torch.float64))
    # strokes, not filled boxes: only the ink's extent matters
    ring = boxes((0, 0, 10, 10))
    ring[0, 0, 1:9, 1:9] = 0
    assert float(pair_overlaps(ring, boxes((0, 5, 10, 15)))[0]) == 0.5
    with pytest.raises(ValueError, match="relative_to must be one of"):
        pair_overlaps(first, second, "mean")


def test_measure_overlap_reads_pair_batches_and_multimnist_alike(digits):
    pairs = make_multimnist(digits, 300, seed=4)
    from_batches = measure_overlap(PairBatches(digits, 300, 64, seed=4))
    assert from_batches == pytest.approx(measure_overlap(pairs), abs=1e-12)
    # shifts of up to 4 px on both digits: close to (1 - (80/27) / 20) ** 2 = 0.726 for 20x20 boxes
    assert 0.65 < from_batches < 0.8
    assert measure_overlap(pairs, "union") < from_batches
    with pytest.raises(ValueError, match="at least one pair"):
        measure_overlap([])


# ----------------------------------------------------------------------------- the evaluation rule


class FixedScores(nn.Module):
    """A stand-in model that returns given scores, as logits or as capsule lengths."""

    def __init__(self, scores, capsules):
        super().__init__()
        self.scores, self.capsules = scores, capsules
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, images):
        s = self.scores + 0 * self.weight
        return CapsNetOutput(s, torch.zeros(*s.shape, 16), None) if self.capsules else s


def test_a_pair_is_right_only_when_the_two_longest_capsules_are_its_two_labels():
    lengths = torch.tensor([
        [0.9, 0.8, 0.1, 0.1, 0.0],    # top two: 0, 1
        [0.8, 0.9, 0.1, 0.1, 0.0],    # top two: 1, 0 (order does not matter)
        [0.9, 0.3, 0.5, 0.1, 0.0],    # top two: 0, 2; label 1 only third
        [0.2, 0.3, 0.1, 0.95, 0.9],   # top two: 3, 4; neither label
        [0.6, 0.1, 0.1, 0.1, 0.7],    # top two: 4, 0
    ])
    labels = torch.tensor([[0, 1], [0, 1], [0, 1], [0, 1], [0, 4]])
    both = torch.zeros(5, 5).scatter_(1, labels, 1.0)
    assert int(count_correct(lengths, both)) == 3
    images = Pairs(*torch.zeros(3, 5, 1, 8, 8))
    assert int(PairMarginLoss(reconstruction_weight=0)(FixedScores(lengths, True), images, labels).correct) == 3
    assert int(PairCrossEntropy()(FixedScores(lengths.logit(eps=1e-3), False), images, labels).correct) == 3


def test_pair_objectives_check_the_model_kind_and_the_batch():
    images, labels = Pairs(*torch.zeros(3, 2, 1, 8, 8)), torch.tensor([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="pair-bce reads logits"):
        PairCrossEntropy()(FixedScores(torch.rand(2, 5), True), images, labels)
    with pytest.raises(ValueError, match="train a logits model on pairs with pair-bce"):
        PairMarginLoss()(FixedScores(torch.rand(2, 5), False), images, labels)
    with pytest.raises(ValueError, match="overlay and each digit alone"):
        PairCrossEntropy()(FixedScores(torch.rand(2, 5), False), images.overlay, labels)
    logits = torch.tensor([[3.0, -2.0, 1.0], [0.0, 0.5, -1.0]])
    both = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    expected = nn.functional.binary_cross_entropy_with_logits(logits, both, reduction="sum") / 2
    result = PairCrossEntropy()(FixedScores(logits, False), Pairs(*torch.zeros(3, 2, 1, 4, 4)),
                                torch.tensor([[0, 2], [1, 2]]))
    torch.testing.assert_close(result.loss, expected)


# ----------------------------------------------------------------------------- training through the one loop


@pytest.mark.parametrize("model", ["capsnet", "baseline"])
def test_a_few_training_steps_on_fresh_pairs_reduce_the_loss(digits, model):
    config = TrainConfig(dataset="multimnist", model=model, preset="small")
    torch.manual_seed(0)
    net = config.build_model((1, 36, 36), 10)
    objective = config.build_objective()
    assert objective.name == {"capsnet": "pair-margin", "baseline": "pair-bce"}[model]
    held_out = pair_test_batches(digits, 64, limit=64)
    before = evaluate(net, held_out, objective)["loss"]
    optimizer, scheduler = make_optimizer(net, lr=2e-3)
    train = PairBatches(digits, 8 * 32, 32, generator=torch.Generator().manual_seed(1))
    train_epoch(net, train, optimizer, scheduler, objective, progress=False)
    after = evaluate(net, held_out, objective)["loss"]
    assert after < 0.9 * before, (before, after)


def test_multimnist_settings_are_checked_and_pick_the_pair_objectives():
    assert TrainConfig(dataset="multimnist").validate().build_objective().name == "pair-margin"
    assert TrainConfig(dataset="multimnist", model="baseline").validate().build_objective().name == "pair-bce"
    weighted = TrainConfig(dataset="multimnist", loss="pair-margin", reconstruction_weight=0.001).build_objective()
    assert weighted.settings()["reconstruction_weight"] == 0.001
    assert TrainConfig(dataset="multimnist").resolved_preset() == "small"
    for bad, message in [
        (dict(dataset="multimnist", loss="margin"), "multimnist trains on pairs of digits: use --loss pair-margin"),
        (dict(dataset="multimnist", model="baseline", loss="cross-entropy"), "use --loss pair-bce"),
        (dict(dataset="multimnist", augment="shift"), "--augment shift does not apply to multimnist"),
        (dict(dataset="multimnist", augment="crop", crop_size=24), "--augment crop does not apply"),
        (dict(loss="pair-margin"), "add --dataset multimnist"),
        (dict(dataset="multimnist", model="baseline", loss="pair-margin"), "--loss pair-margin is for the capsnet"),
        (dict(dataset="multimnist", loss="pair-bce"), "--loss pair-bce is for the baseline"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**bad).validate()


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_resume_of_a_multimnist_run_mid_epoch_ends_bit_identical(tmp_path):
    straight = fit(pair_config(tmp_path / "straight"), progress=False, log=quiet)
    assert straight.history[0]["train_examples"] == 96
    handle = send_sigint_at_optimizer_step(5)  # inside the second step of the second epoch
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(pair_config(tmp_path), progress=False, log=quiet)
    finally:
        handle.remove()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)  # saved right after that step
    assert state["data"]["dataset"] == "multimnist" and state["objective"]["name"] == "pair-margin"
    resumed = fit(pair_config(tmp_path), resume=tmp_path / "run" / "last.pt", progress=False, log=quiet)
    assert_same_weights(weights(straight.model), weights(resumed.model), exact=True)
    assert without_seconds(resumed.history) == without_seconds(straight.history)


# ----------------------------------------------------------------------------- command line


def test_capsedu_train_and_evaluate_on_multimnist_agree(tmp_path, capsys):
    out = tmp_path / "cli"
    tiny = ("--subset", "--test-limit", "60", "--batch-size", "60")
    assert cli_main(["train", "--dataset", "multimnist", "--model", "baseline", "--train-limit", "120", *tiny,
                     "--no-progress", "--output", str(out)]) == 0
    trained = capsys.readouterr().out.strip().splitlines()[-1]
    assert trained.startswith("test accuracy: ")
    assert cli_main(["evaluate", str(out / "last.pt"), *tiny]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == trained and "60 subset multimnist test examples" in lines[-2]


@pytest.mark.parametrize("argv, message", [
    (("--dataset", "multimnist", "--augment", "crop"), "--augment crop does not apply to multimnist"),
    (("--dataset", "multimnist", "--loss", "cross-entropy"), "use --loss pair-margin"),
    (("--loss", "pair-bce", "--model", "baseline"), "add --dataset multimnist"),
])
def test_bad_multimnist_options_give_one_line_errors(tmp_path, capsys, argv, message):
    code = cli_main(["train", "--subset", "--no-progress", "--output", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert message in err


# ----------------------------------------------------------------------------- Fig. 5 computations


@pytest.fixture(scope="module")
def pair_net():
    torch.manual_seed(0)
    return CapsNet("small", image_size=36).eval()


def test_read_pairs_decodes_each_digit_from_its_own_capsule(digits, pair_net):
    from capsedu.teaching.multimnist import read_pairs

    pairs = make_multimnist(digits, 8, seed=3)
    reading = read_pairs(pair_net, pairs)
    out = pair_net(pairs.images)
    for k, label in enumerate((pairs.first_label, pairs.second_label)):
        torch.testing.assert_close(reading.from_labels[:, k], pair_net.reconstruct(out.poses, label)[:, 0])
    top2 = out.lengths.topk(2, dim=1).indices
    assert torch.equal(reading.predicted.sort(dim=1).values, top2.sort(dim=1).values)
    assert torch.equal(reading.correct, (top2.sort(dim=1).values == reading.labels.sort(dim=1).values).all(dim=1))
    for i in range(8):
        in_play = set(reading.labels[i].tolist()) | set(reading.predicted[i].tolist())
        assert int(reading.absent[i]) not in in_play
        for k in (0, 1):  # a predicted class that is a label sits in that label's place
            if int(reading.predicted[i, k]) in reading.labels[i].tolist():
                assert int(reading.predicted[i, k]) == int(reading.labels[i, k])
    torch.testing.assert_close(reading.from_absent[:, 1], pair_net.reconstruct(out.poses, reading.absent)[:, 0])
    assert reading.overlay.shape == (8, 36, 36) and reading.from_prediction.shape == (8, 2, 36, 36)


def test_a_right_prediction_is_decoded_from_the_labels_and_the_figure_has_the_papers_columns(digits, pair_net):
    from matplotlib.figure import Figure

    from capsedu.teaching.multimnist import draw_pairs, figure_columns, read_pairs

    pairs = make_multimnist(digits, 10, seed=4)
    images, labels = pairs.as_batch()
    top2 = pair_net(pairs.images).lengths.topk(2, dim=1).indices
    labels[:6] = top2[:6]  # make the first six pairs "right" for the untrained network
    reading = read_pairs(pair_net, (images, labels))
    assert reading.correct[:6].all() and reading.error == pytest.approx(1 - reading.correct.float().mean().item())
    right = reading.correct.nonzero().flatten()
    torch.testing.assert_close(reading.from_prediction[right], reading.from_labels[right])
    columns = figure_columns(reading, n_right=3, n_forced=2, n_wrong=1)
    assert [c.kind for c in columns] == ["R", "R", "R", "*", "*", "R", "P"][:len(columns)]
    assert columns[0].caption == f"R:({columns[0].labels[0]}, {columns[0].labels[1]})"
    forced = columns[3]
    assert forced.caption.startswith("*R:(") and forced.classes[0] == forced.labels[0]
    if not reading.correct.all():
        wrong = columns[-1]
        assert wrong.caption == f"R:P:({wrong.classes[0]}, {wrong.classes[1]})" and wrong.classes != wrong.labels
    fig = draw_pairs(columns)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * len(columns)
    texts = {ax.get_title() for ax in fig.axes} | {ax.get_xlabel() for ax in fig.axes}
    assert {c.caption for c in columns} <= texts and {c.label_caption for c in columns} <= texts
    colour = fig.axes[len(columns)].get_images()[0].get_array()
    assert colour.shape == (36, 36, 3) and float(colour[..., 2].max()) == 0.0  # red and green only
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_read_pairs_refuses_a_model_without_a_decoder_and_a_forced_class_in_play(digits, pair_net):
    from capsedu.teaching.multimnist import read_pairs

    pairs = make_multimnist(digits, 4, seed=5)
    with pytest.raises(ValueError, match="CapsNet with a decoder"):
        read_pairs(CapsNet("small", image_size=36, reconstruction=False), pairs)
    with pytest.raises(ValueError, match="is a label or a prediction of pair 0"):
        read_pairs(pair_net, pairs, absent=int(pairs.first_label[0]))
