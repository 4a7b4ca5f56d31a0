"""``python -m experiments.summary [--scale cpu]``: every recorded experiment as Markdown tables.

Reads only the JSON records in ``experiments/results`` (the same ones chapter 7 reads) and prints, per
experiment, one row per run (mean +- sample standard deviation over the recorded seeds), the paper's
number beside it, and the training time the records hold. ``--readme`` writes the same tables into the
README (a test checks that they agree with the records).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from capsedu.records import RecordError, format_percent, group_of, load_records, summarize
from capsedu.teaching.routing_after_2017 import routing_label

from .runner import REPO

#: the paper's affine-robustness numbers (section 5.2), which the records do not carry
PAPER_AFFINE = {"capsnet": "79 %", "baseline": "66 %"}


def _name(row) -> str:
    """The row's key (the run's key without the seed) as the one value it holds, e.g. ``"capsnet-r1"``."""
    return ", ".join(str(v) for _, v in row.key)


def _seeds(row) -> str:
    return ", ".join(str(s) for s in row.seeds)


def mnist_table(records: List[Dict[str, Any]]) -> List[str]:
    lines = ["| row | test error, ours | seeds | paper |", "|---|---|---|---|"]
    for row in summarize(records, label=lambda r: r["labels"]["label"]):
        paper = f"{row.paper:.2f}" + (f" +- {row.paper_std:.3f}" if row.paper_std else "") + " %"
        lines.append(f"| {row.label} | {format_percent(row)} | {_seeds(row)} | {paper} |")
    return lines


def _epochs(records: List[Dict[str, Any]], row) -> str:
    return ", ".join(str(r["epochs"]) for r in sorted(records, key=lambda r: r["seed"]) if group_of(r) == row.key)


def _stops(records: List[Dict[str, Any]], row) -> str:
    return ", ".join("plateau" if r["extra"].get("until", {}).get("reached") else "epoch cap"
                     for r in sorted(records, key=lambda r: r["seed"]) if group_of(r) == row.key)


def multimnist(records: List[Dict[str, Any]]) -> List[str]:
    lines = ["| run | pairs wrong, ours | epochs | stopped at | seeds | mean overlap | paper |",
             "|---|---|---|---|---|---|---|"]
    for row in summarize(records, label=lambda r: r["labels"]["label"],
                         value=lambda r: r["extra"]["multimnist_test_error"]):
        overlap = next(r["extra"]["mean_overlap"] for r in records if group_of(r) == row.key)
        paper = "-" if row.paper is None else f"{row.paper} %"
        lines.append(f"| {row.label} | {format_percent(row)} | {_epochs(records, row)} | {_stops(records, row)} | "
                     f"{_seeds(row)} | {100 * overlap:.1f} % | {paper} |")
    from . import multimnist as mm

    scale = records[0]["scale"]
    lines += ["", f"Each run stops at the held-out plateau ({mm.PATIENCE[scale]} epochs gaining under "
                  f"{100 * mm.MIN_GAIN:.1f} points on {mm.HELD_OUT_PAIRS[scale]:,} pairs of held-out training digits) "
                  f"or at the epoch cap ({mm.SCALES[scale]['epochs']}); pairs wrong: the paper's rule on the fixed test "
                  "pairs, measured in float32 after training."]
    return lines


def affine_robustness(records: List[Dict[str, Any]]) -> List[str]:
    """The runs that reached the stopping level, compared at equal clean accuracy; any that never did are named
    below the table, not averaged in (their hard-set accuracy would measure a network that did not train)."""
    lines = ["| run | epochs | held-out accuracy at the stop | clean test accuracy | hard-set accuracy | seeds | "
             "paper (affNIST) |", "|---|---|---|---|---|---|---|"]
    compared = [r for r in records if r["extra"]["until"]["reached"]]
    held = {row.key: row for row in summarize(compared, value=lambda r: r["extra"]["until"]["trace"][-1]["value"])}
    clean = {row.key: row for row in summarize(compared, value=lambda r: r["test_accuracy"])}
    for row in summarize(compared, value=lambda r: r["extra"]["affine_test_accuracy"]):
        lines.append(f"| {_name(row)} | {_epochs(compared, row)} | {format_percent(held[row.key])} | "
                     f"{format_percent(clean[row.key])} | {format_percent(row)} | {_seeds(row)} | "
                     f"{PAPER_AFFINE.get(_name(row), '-')} |")
    targets = sorted({(r["extra"]["until"]["level"], r["extra"]["until"]["name"]) for r in records})
    sets = sorted({r["extra"]["affine_test"] for r in records})
    lines.append("")
    lines.append("Each run stopped at the first epoch whose " + "; ".join(f"{name} reached {100 * level:.2f} %"
                                                                     for level, name in targets)
                 + f". Hard set: {'; '.join(sets)}.")
    for r in sorted((r for r in records if not r["extra"]["until"]["reached"]), key=lambda r: r["run"]):
        lines.append(f"Not in the table: {r['run']} never reached the level (held-out "
                     f"{100 * r['extra']['until']['trace'][-1]['value']:.2f} % after {r['epochs']} epochs).")
    return lines


def data_efficiency(records: List[Dict[str, Any]]) -> List[str]:
    models = ("capsnet", "capsnet-no-decoder", "baseline")
    rows = {row.key: row for row in summarize(records, key=lambda r: (r["key"]["model"], r["key"]["train_size"]))}
    lines = ["| training digits | CapsNet test error | CapsNet without decoder | baseline test error | seeds | "
             "optimizer steps |", "|---|---|---|---|---|---|"]
    for n in sorted({n for _, n in rows}):
        cells = [format_percent(rows[(m, n)]) if (m, n) in rows else "-" for m in models]
        seeds = sorted({s for (m, k), row in rows.items() if k == n for s in row.seeds})
        steps = next(r["labels"]["steps"] for r in records if r["key"]["train_size"] == n)
        lines.append(f"| {n:,} | {' | '.join(cells)} | {', '.join(map(str, seeds))} | {steps:,} |")
    return lines


def _plain(row, digits: int) -> str:
    """``"mean +- std"`` of a row summarised from ``value / 100`` (``summarize`` reports percent), ``"mean"`` for one
    seed or a count that does not vary."""
    if row.n < 2 or (digits == 0 and row.std == 0):
        return f"{row.mean:,.{digits}f}"
    return f"{row.mean:,.{digits}f} +- {row.std:,.{digits}f}"


def _routing_table(records: List[Dict[str, Any]], experiment, columns: Dict[str, Any], headings: List[str],
                   note: str) -> List[str]:
    """One row per model and routing of ``experiment`` (a module with ``MODELS``, ``runs`` and ``steps``), the
    ``columns`` (name -> (value of a record, digits; ``None``: a percentage)), then how many planned runs are
    recorded and ``note``."""
    scale = records[0]["scale"]
    order = [(("model", m), ("routing", r)) for m, r in experiment.MODELS]
    rows = {name: summarize(records, value=value, order=order) for name, (value, _) in columns.items()}
    lines = ["| model | routing | " + " | ".join(headings) + " | seeds |",
             "|---|---|" + "---|" * len(headings) + "---|"]
    for i, row in enumerate(rows[next(iter(columns))]):
        key = dict(row.key)
        model, routing = key["model"], routing_label(key)
        cells = [format_percent(rows[n][i]) if digits is None else _plain(rows[n][i], digits)
                 for n, (_, digits) in columns.items()]
        lines.append(f"| {model} | {routing} | {' | '.join(cells)} | {_seeds(row)} |")
    planned = experiment.runs(scale)
    done = {r["run"] for r in records}
    missing = [r.name for r in planned if r.name not in done]
    lines.append("")
    lines.append(f"{len(planned) - len(missing)} of the {len(planned)} planned runs are recorded"
                 + (f"; missing: {', '.join(missing)}." if missing else ".")
                 + f" Every run trains {experiment.steps(scale):,} steps on the same data; " + note)
    return lines


# summarize gives percent of a fraction: the measures that are not fractions go in divided by 100
_COSTS = {"entropy": (lambda r: r["extra"]["coupling_entropy"] / 100, 3),
          "step": (lambda r: r["extra"]["seconds_per_step"] / 100, 3),
          "parameters": (lambda r: r["extra"]["parameters"] / 100, 0)}


def routing_comparison(records: List[Dict[str, Any]]) -> List[str]:
    from . import routing_comparison as rc

    columns = {"clean": (lambda r: r["test_error"], None), "affine": (lambda r: r["extra"]["affine_test_error"], None),
               **_COSTS}
    return _routing_table(records, rc, columns, ["clean test error", "affNIST-like error", "coupling entropy",
                                                 "s / step", "parameters"],
                          "affNIST-like: the generated set (capsedu.data.make_affine_test with AFFNIST_LIKE, seed 0); "
                          "coupling entropy of the model's own routing on clean test digits (1 uniform, 0 all to one "
                          "parent); s / step: wall-clock, which depends on what else the machine ran.")


def routing_multimnist(records: List[Dict[str, Any]]) -> List[str]:
    from . import routing_multimnist as rm

    # the error measured after training in float32, as the chapter reads it (the history's last test error may
    # come from a bf16-autocast pass and differ in the last digits)
    columns = {"pairs": (lambda r: r["extra"]["multimnist_test_error"], None), **_COSTS}
    return _routing_table(records, rm, columns, ["MultiMNIST pair error", "coupling entropy", "s / step",
                                                 "parameters"],
                          "error by the paper's rule on 10,000 fixed test pairs, measured after training in float32 "
                          "(both classes must be the two longest capsules); coupling entropy of the model's own routing on test pairs (1 uniform, 0 all to "
                          "one parent); s / step: wall-clock, which depends on what else the machine ran.")


TABLES = {"mnist_table": mnist_table, "multimnist": multimnist, "affine_robustness": affine_robustness,
          "data_efficiency": data_efficiency, "routing_comparison": routing_comparison,
          "routing_multimnist": routing_multimnist}


def summary(scale: str = "cpu", results: Path = REPO / "experiments" / "results") -> str:
    """The Markdown summary of every experiment recorded at ``scale``."""
    out, total = [], 0.0
    for name, table in TABLES.items():
        records = load_records(name, scale, results)
        out.append(f"### {name} ({scale} scale)\n")
        if not records:
            out.append(f"not recorded yet: `python -m experiments.run {name} --scale {scale}`\n")
            continue
        seconds = sum(r["train_seconds"] for r in records)
        total += seconds
        machines = sorted({f"{r['device']}, {r['machine']}, torch {r['torch']}" for r in records})
        out += table(records)
        out.append(f"\n{len(records)} runs, {seconds / 3600:.2f} h of training; {'; '.join(machines)}; "
                   f"`python -m experiments.run {name} --scale {scale}`\n")
    out.append(f"Training time in all the records above: {total / 3600:.2f} h.")
    return "\n".join(out)


README = REPO / "README.md"
MARKERS = ("<!-- experiments.summary -->", "<!-- /experiments.summary -->")


def readme_block(text: str) -> str:
    """The summary as the README holds it, between ``MARKERS`` (headings one level down)."""
    return "\n" + re.sub(r"^### ", "#### ", text, flags=re.MULTILINE) + "\n"


def block_span(content: str) -> Tuple[int, int]:
    """Where the README's block between ``MARKERS`` starts and ends."""
    return content.index(MARKERS[0]) + len(MARKERS[0]), content.index(MARKERS[1])


def update_readme(text: str, readme: Path = README) -> None:
    """Replace the README's block between ``MARKERS`` with ``text``."""
    content = readme.read_text()
    start, end = block_span(content)
    readme.write_text(content[:start] + readme_block(text) + content[end:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.summary", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["tiny", "cpu", "paper"], default="cpu")
    parser.add_argument("--results", default=str(REPO / "experiments" / "results"))
    parser.add_argument("--readme", action="store_true", help="also write the tables into README.md")
    args = parser.parse_args(argv)
    try:
        text = summary(args.scale, Path(args.results))
    except RecordError as exc:
        print(f"experiments.summary: error: {exc}", file=sys.stderr)
        return 2
    print(text)
    if args.readme:
        update_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
