"""Chapter 7.3: the MultiMNIST runs' test-error curves against the pairs seen, where two curves cross, and
which run ends ahead.

The runs are ``experiments/multimnist.py``'s: each trains epoch by epoch on fresh pairs until its accuracy on
held-out pairs stops rising (a plateau) or it reaches the scale's epoch cap, and its record holds the test error
after every epoch (its history, measured in the training precision: bf16 autocast where the CPU has it) and the
error measured in float32 after the last epoch (``extra["multimnist_test_error"]``, the number tables quote).

Computing: :func:`pair_curves` reads the records into :class:`PairCurve` (one per run), :func:`crossings` finds
the epochs after which the lead between two runs changes hands, :func:`lead_sentence` says which row ends ahead
and :func:`curves_report` says it all in lines.
Drawing: :func:`plot_pair_curves`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ..records import format_percent, inside_spread, summarize

__all__ = ["PairCurve", "pair_curves", "crossings", "lead_sentence", "curves_report", "plot_pair_curves"]


@dataclass(frozen=True)
class PairCurve:
    """One MultiMNIST run, as its record holds it.

    Attributes:
        row: the run's row (``"capsnet-r3-recon"``, ``"baseline-small"``, ...).
        seed: the run's seed.
        pairs: training pairs seen after each epoch (cumulative).
        errors: test error (%) after each epoch, in the training precision.
        final: test error (%) measured in float32 after training: the number the tables quote.
        plateau: ``True`` the run stopped because held-out accuracy stopped rising, ``False`` at the epoch cap.
        paper: the paper's error (%) for this row, if it reports one.
    """

    row: str
    seed: int
    pairs: Tuple[int, ...]
    errors: Tuple[float, ...]
    final: float
    plateau: bool
    paper: Optional[float] = None

    @property
    def epochs(self) -> int:
        return len(self.errors)


def pair_curves(records: Iterable[Dict[str, Any]], order: Sequence[str] = ()) -> List[PairCurve]:
    """One :class:`PairCurve` per record, rows in ``order`` first (the others after, by name), then by seed."""
    curves = []
    for r in records:
        seen, pairs = 0, []
        for epoch in r["history"]:
            seen += int(epoch["train_examples"])
            pairs.append(seen)
        until = r["extra"].get("until", {})
        curves.append(PairCurve(r["key"]["row"], r["seed"], tuple(pairs),
                                tuple(100 * e["test_error"] for e in r["history"]),
                                100 * r["extra"]["multimnist_test_error"], bool(until.get("reached", False)),
                                r["labels"].get("paper_error")))
    rank = {row: i for i, row in enumerate(order)}
    return sorted(curves, key=lambda c: (rank.get(c.row, len(rank)), c.row, c.seed))


def crossings(a: PairCurve, b: PairCurve) -> List[int]:
    """The epochs after which the run with the lower test error is not the one it was after the epoch before
    (a tie leads nobody and changes nothing), over the epochs both runs trained. Both runs see the same number
    of pairs per epoch, so an epoch is a point on the same pairs-seen axis."""
    out, leader = [], 0
    for epoch, (x, y) in enumerate(zip(a.errors, b.errors), start=1):
        now = (x > y) - (x < y)          # -1: a lower, 1: b lower, 0: tie
        if now and leader and now != leader:
            out.append(epoch)
        leader = now or leader
    return out


def lead_sentence(records: Iterable[Dict[str, Any]], a: str, b: str, names: Tuple[str, str]) -> Optional[str]:
    """One sentence: which of rows ``a`` and ``b`` has the lower final error (float32), by how much, over how
    many seeds, and whether that is outside the seed spread; ``None`` when either row is not recorded."""
    rows = {row.key: row for row in summarize(records, key=lambda r: r["key"]["row"],
                                              value=lambda r: r["extra"]["multimnist_test_error"])}
    if a not in rows or b not in rows:
        return None
    x, y = rows[a], rows[b]
    if x.mean == y.mean:
        lead = f"{names[0]} and {names[1]} are level"
    else:
        first = names[0] if x.mean < y.mean else names[1]
        lead = f"{first} is ahead by {abs(x.mean - y.mean):.2f} points"
    if min(x.n, y.n) < 2:
        spread = "one seed on a side: no spread to judge it by"
    else:
        spread = f"{'inside' if inside_spread(x, y) else 'outside'} the seed spread"
    return (f"{lead} ({names[0]} {format_percent(x)} of test pairs wrong, {names[1]} {format_percent(y)}; "
            f"{spread})")


def curves_report(curves: Sequence[PairCurve], compared: Sequence[Tuple[str, str]] = ()) -> List[str]:
    """Lines: per run (by row name) its final error, epochs, pairs seen and why it stopped, the paper's number; then, for
    each pair of rows in ``compared`` (seed by seed), where their curves cross."""
    lines = []
    for c in curves:
        stop = "held-out plateau" if c.plateau else "epoch cap"
        paper = f"paper {c.paper:.1f} %" if c.paper is not None else "not in the paper"
        lines.append(f"{c.row}, seed {c.seed}: {c.final:.2f} % after {c.epochs} epochs, {c.pairs[-1]:,} pairs "
                     f"({stop}); {paper}")
    by_key = {(c.row, c.seed): c for c in curves}
    for a, b in compared:
        for seed in sorted({s for r, s in by_key if r == a} & {s for r, s in by_key if r == b}):
            x, y = by_key[(a, seed)], by_key[(b, seed)]
            common = min(x.epochs, y.epochs)
            points = crossings(x, y)
            if points:
                where = ", ".join(f"after epoch {e} ({x.pairs[e - 1]:,} pairs; "
                                  f"{a if x.errors[e - 1] < y.errors[e - 1] else b} lower from there)" for e in points)
                lines.append(f"{a} and {b} (seed {seed}): the curves cross {where}")
            else:
                signs = {(p > q) - (p < q) for p, q in zip(x.errors, y.errors)} - {0}
                lower = "neither: level" if not signs else (a if signs == {-1} else b) + " is lower"
                lines.append(f"{a} and {b} (seed {seed}): the curves do not cross in the {common} epochs both "
                             f"trained; {lower} throughout")
    return lines


# ----------------------------------------------------------------------------- drawing

def plot_pair_curves(curves: Sequence[PairCurve], ax=None):
    """Test error (%) against pairs seen, one line per run, the paper's number as a dotted line in the same
    colour where it reports one. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.6))
    papers = False
    for c in curves:
        (line,) = ax.plot([p / 1000 for p in c.pairs], c.errors, marker="o", ms=3, label=f"{c.row}, seed {c.seed}")
        if c.paper is not None:
            ax.axhline(c.paper, color=line.get_color(), ls=":", lw=1)
            papers = True
    if papers:
        ax.plot([], [], color="grey", ls=":", lw=1, label="the paper's error, same colour")
    ax.set_xlabel("training pairs seen (thousands)"), ax.set_ylabel("test pairs wrong (%)")
    ax.set_ylim(0, None), ax.grid(alpha=0.3), ax.legend(fontsize=7)
    return ax
