"""Chapter 10: the routing procedures that came after 2017, on one toy and in recorded training runs.

* :func:`lift_toy`: chapter 3's 2-D toy votes (:func:`~capsedu.teaching.agreement.toy_votes`) written in
  ``dim`` dimensions without changing a single dot product or length, so that procedures that need more than
  two dimensions (the LayerNorm of inverted dot-product attention, EM routing's 4x4 poses) route the same
  votes as dynamic routing.
* :func:`route_toy`: one procedure of :data:`capsedu.routings.ROUTINGS` on those votes, freshly built with its
  initial parameters: couplings, outputs and lengths of one example.
* :func:`coupling_measures`: chapter 7.6's entropy and polarisation of a set of couplings
  (:mod:`capsedu.teaching.couplings`), plain and weighted by each child's total vote length.
* :func:`plot_couplings_row`, :func:`routing_procedures_widget`: the couplings side by side, and the widget
  that switches procedure and iterations on one input.
* :func:`em_first_steps`: the small CapsNet's first Adam steps with EM routing, and what its class activations
  are made of at each (section 10.5, ``python -m experiments.em_first_steps``).
* :func:`comparison_rows`, :func:`format_comparison`, :func:`contrasts`, :func:`missing_runs`,
  :func:`recorded_runs_report`: the recorded runs of the experiment ``routing_comparison``
  (``experiments/results/routing_comparison/<scale>/``), summarised per model and routing as mean +- std over
  seeds, each row against dynamic routing beside the seed spread, and what is still missing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..functional import capsule_length
from ..routings import ROUTINGS, build_routing
from ..routings.em import EMRouting, em_routing, inverse_temperature
from .agreement import _couplings_html, plot_couplings, plot_votes
from .couplings import entropy, polarisation, weighted_mean

__all__ = ["PROCEDURES", "PAPERS", "lift_toy", "route_toy", "coupling_measures", "plot_couplings_row",
           "routing_procedures_widget", "EXPERIMENT", "SCALE", "RECORD_COMMAND", "METRICS", "metric_value",
           "ComparisonRow", "comparison_rows", "TABLES", "format_comparison", "contrasts", "planned_runs",
           "missing_runs", "recorded_runs_report", "em_first_steps", "routing_label"]

#: the procedures of :data:`capsedu.routings.ROUTINGS`, in the chapter's order
PROCEDURES: Tuple[str, ...] = ("dynamic", "uniform", "self-attention", "inverted-attention", "em")

#: where each procedure comes from
PAPERS: Dict[str, str] = {
    "dynamic": "Sabour, Frosst & Hinton (NIPS 2017), Procedure 1",
    "uniform": "no routing: c_ij = 1 / n_out (Procedure 1 stopped after one iteration)",
    "self-attention": "Mazzia, Salvetti & Chiaberge (2021), Efficient-CapsNet",
    "inverted-attention": "Tsai, Srivastava, Goh & Salakhutdinov (ICLR 2020), Procedure 1",
    "em": "Hinton, Sabour & Frosst (ICLR 2018), Procedure 1",
}


# ----------------------------------------------------------------------------- the toy, routed five ways

def lift_toy(u_hat: torch.Tensor, dim: int = 16, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Write 2-D votes ``u_hat (batch, n_in, n_out, 2)`` in ``dim`` dimensions: ``(u_hat @ basis, basis)``.

    ``basis (2, dim)`` has orthonormal rows, so every dot product and every length of the votes is unchanged
    (dynamic routing gives the very same couplings), and each row sums to zero, so a vector of the plane has
    mean component 0: a LayerNorm without its learned shift only rescales it, and ``v @ basis.T`` reads any
    output of the plane back in two dimensions. The plane itself is random (``seed``).
    """
    if u_hat.shape[-1] != 2 or dim < 3:
        raise ValueError(f"lift_toy lifts 2-D votes into dim >= 3 dimensions, got votes {tuple(u_hat.shape)} "
                         f"and dim {dim}")
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(dim, 3, generator=g, dtype=torch.float64)
    m[:, 0] = 1.0                                   # Gram-Schmidt from the all-ones direction ...
    q, _ = torch.linalg.qr(m)
    basis = q[:, 1:3].T.to(u_hat.dtype)             # ... keeps two directions orthogonal to it: (2, dim)
    return u_hat @ basis, basis


def route_toy(name: str, u_hat: torch.Tensor, iterations: int = 3, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Route one example's votes ``u_hat (1, n_in, n_out, dim)`` with procedure ``name``, built fresh with its
    initial parameters (``seed`` fixes the one random initialisation, inverted attention's class score).

    Returns ``couplings (n_in, n_out)`` (the c, r or R of the last pass), ``outputs (n_out, dim)`` and their
    ``lengths (n_out,)``. EM routing sees every child as present (``a_i = 1``).
    """
    _, n_in, n_out, dim = u_hat.shape
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        routing = build_routing(name, n_in, n_out, dim)
    with torch.no_grad():
        v, c = routing(u_hat, iterations, return_couplings=True)
    return {"couplings": c[0], "outputs": v[0], "lengths": v[0].norm(dim=-1)}


def coupling_measures(couplings: torch.Tensor, u_hat: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Chapter 7.6's measures of ``couplings (..., n_in, n_out)``: mean over children of the normalised
    ``entropy`` (1 uniform, 0 all to one parent) and of the ``polarisation`` (0 uniform, 1 all to one parent);
    with the votes ``u_hat (..., n_in, n_out, d)`` also both weighted by each child's total vote length."""
    h, p = entropy(couplings), polarisation(couplings)          # (..., n_in)
    out = {"entropy": float(h.mean()), "polarisation": float(p.mean())}
    if u_hat is not None:
        weight = u_hat.norm(dim=-1).sum(dim=-1).reshape(h.shape)  # (..., n_in)
        out["weighted_entropy"] = weighted_mean(h, weight)
        out["weighted_polarisation"] = weighted_mean(p, weight)
    return out


def plot_couplings_row(axes, couplings: Mapping[str, torch.Tensor]) -> list:
    """One coupling heat map per procedure: ``couplings`` maps a title to ``(n_in, n_out)``; ``axes`` is a row
    or a grid (filled row by row, the axes left over switched off; a grid of two rows keeps the book's figure
    narrow enough for its numbers to stay readable). Returns the images."""
    axes = np.atleast_1d(axes).ravel()
    images = []
    for ax, (title, c) in zip(axes, couplings.items()):
        ax.clear()
        images.append(plot_couplings(ax, c))
        ax.set_title(title, fontsize=10)
        spec = ax.get_subplotspec()
        if (not spec.is_first_col()) if spec is not None else ax is not axes[0]:
            ax.set_ylabel("")
    for ax in axes[len(couplings):]:
        ax.axis("off")
    return images


def routing_procedures_widget(u_hat: torch.Tensor, basis: torch.Tensor, procedure: str = "dynamic",
                              iterations: int = 3, max_iterations: int = 10, seed: int = 0,
                              snapshots: Sequence[Mapping[str, Any]] = (
                                  {"procedure": "dynamic", "iterations": 3}, {"procedure": "uniform"},
                                  {"procedure": "self-attention"}, {"procedure": "inverted-attention", "iterations": 3},
                                  {"procedure": "em", "iterations": 3})):
    """Chapter 10: a procedure menu and an iterations slider on one input.

    ``u_hat (1, n_in, n_out, dim)`` are the lifted votes and ``basis (2, dim)`` the plane of
    :func:`lift_toy`: the votes and outputs are drawn in that plane as in chapter 3 (arrow width and opacity:
    the coupling), beside the coupling heat map; the readout prints the couplings, their entropy and
    polarisation. Non-iterative procedures ignore the slider (the caption says so).
    ``state``: ``couplings``, ``outputs``, ``lengths`` (from :func:`route_toy`), ``measures``, ``procedure``,
    ``iterations``.
    """
    import ipywidgets as W

    from .interactive import InteractiveFigure, control_row, new_figure

    n_out = u_hat.shape[2]
    controls = {"procedure": W.Dropdown(options=list(PROCEDURES), value=procedure, description="procedure"),
                "iterations": W.IntSlider(iterations, 1, max_iterations, description="iterations r")}
    fig, axes = new_figure(n_out + 1, 2.4 * (n_out + 1), 3.0)    # 11+ px text where the book shows it
    fig.subplots_adjust(wspace=0.4)
    out, readout = W.Output(), W.HTML()
    flat = u_hat[0] @ basis.T                                   # (n_in, n_out, 2): the votes in the toy's plane

    def compute(v):
        state = route_toy(v["procedure"], u_hat, v["iterations"], seed)
        c = state["couplings"]
        plot_votes(axes[:n_out], flat, c, state["outputs"] @ basis.T)
        axes[-1].clear()
        plot_couplings(axes[-1], c)
        measures = coupling_measures(c, u_hat[0])
        iterative = ROUTINGS[v["procedure"]].iterative
        readout.value = (_couplings_html(c, v["iterations"]).replace(
            "couplings after", f"{v['procedure']}: couplings after" + ("" if iterative else " (ignored)"))
            + f"<p>entropy {measures['entropy']:.3f}, polarisation {measures['polarisation']:.3f}</p>")
        return {**state, "measures": measures, **v}

    def describe(v, state):
        r = f"r = {v['iterations']}" if ROUTINGS[v["procedure"]].iterative else "one pass"
        return (f"{v['procedure']} ({r}): entropy {state['measures']['entropy']:.2f}, polarisation "
                f"{state['measures']['polarisation']:.2f}")

    box = InteractiveFigure([control_row(list(controls.values())), out, readout], compute, controls, figure=fig,
                            output=out, snapshots=snapshots, describe=describe)
    box.readout = readout
    box.update()
    return box


# ----------------------------------------------------------------------------- EM routing's first training steps

def _em_internals(model, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
    """What the activation of the model's EM routing is made of on ``images`` (means over batch and parents); for
    another procedure only the class scores and the primary capsules' length."""
    routing = model.digits.routing
    with torch.no_grad():
        u = model.primary_capsules(images)                     # (batch, n_in, in_dim)
        a_in = capsule_length(u)                               # children's activations a_i
        if not isinstance(routing, EMRouting):
            lengths = model(images).lengths
            true = lengths.gather(1, labels[:, None]).squeeze(1)
            others = (lengths.sum(dim=1) - true) / (lengths.shape[1] - 1)
            return {"a_true": float(true.mean()), "a_others": float(others.mean()), "child_length": float(a_in.mean())}
        votes = model.digits.predictions(u)                    # (batch, n_in, n_out, dim)
        r = model.digits.iterations
        result = em_routing(votes, a_in, routing.beta_u, routing.beta_a, r, routing.final_lambda)
        weighted = result.assignments * a_in.unsqueeze(-1)     # the last M-step's R_ij a_i
        mass = weighted.sum(dim=1)                             # (batch, n_out)
        mean = torch.einsum("bij,bijh->bjh", weighted / mass.unsqueeze(1), votes)
        variance = torch.einsum("bij,bijh->bjh", weighted / mass.unsqueeze(1), (votes - mean.unsqueeze(1)) ** 2) + 1e-9
        log_sigma = 0.5 * variance.log().sum(dim=-1)           # sum_h log sigma_j^h, (batch, n_out)
        cost = routing.beta_u * variance.shape[-1] * mass + log_sigma * mass
        argument = inverse_temperature(r, routing.final_lambda) * (routing.beta_a - cost)
        true = result.activations.gather(1, labels[:, None]).squeeze(1)
        others = (result.activations.sum(dim=1) - true) / (result.activations.shape[1] - 1)
    return {"a_true": float(true.mean()), "a_others": float(others.mean()), "child_length": float(a_in.mean()),
            "mass": float(mass.mean()), "sum_log_sigma": float(log_sigma.mean()), "argument": float(argument.mean())}


def em_first_steps(lr: float, steps: int = 4, examples: int = 64, seed: int = 0,
                   routing: str = "em") -> List[Dict[str, float]]:
    """The small CapsNet with ``routing`` (seed ``seed``), ``steps`` Adam steps at ``lr`` on the first ``examples``
    digits of the shipped subset, on one torch thread (``python -m experiments.em_first_steps``, section 10.5).

    Returns one dict per step 0..``steps`` (step 0: before any update): ``loss`` (margin + reconstruction, the
    trainer's objective), ``accuracy`` on the batch, the means of :func:`_em_internals` (``a_true``, ``a_others``,
    ``child_length``; for EM also ``mass``, ``sum_log_sigma``, ``argument``) and from step 1 ``turn``, the mean
    cosine of each primary capsule with itself before the step."""
    from ..data import Batches, load_split
    from ..training.config import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images, labels = next(iter(Batches(load_split("mnist", "train", subset=True), examples, limit=examples)))
        config = TrainConfig(preset="small", routing=routing, seed=seed).validate()
        torch.manual_seed(seed)
        model = config.build_model(tuple(images.shape[1:]))
        objective = config.build_objective()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        out, before = [], None
        for step in range(steps + 1):
            model.train()
            output = model(images, labels)
            loss = sum(objective.loss(output, images, labels).values())
            accuracy = float((output.lengths.argmax(1) == labels).float().mean())
            row = {"step": step, "loss": loss.item(), "accuracy": accuracy, **_em_internals(model, images, labels)}
            with torch.no_grad():
                u = model.primary_capsules(images)
            if before is not None:
                row["turn"] = float(torch.nn.functional.cosine_similarity(u, before, dim=-1).mean())
            before = u
            out.append(row)
            if step < steps:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return out
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the recorded runs

#: the experiments whose records section "Trained side by side" reads (single digits placed on a canvas, and
#: MultiMNIST pairs), their scale, and the command that makes the first one's
EXPERIMENT = "routing_comparison"
PAIRS_EXPERIMENT = "routing_multimnist"
SCALE = "cpu"
RECORD_COMMAND = f"python -m experiments.run {EXPERIMENT} --scale {SCALE}"


def _first(mapping: Mapping[str, Any], names: Sequence[str]) -> Optional[float]:
    for name in names:
        value = mapping.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def _affine_error(record: Dict[str, Any]) -> Optional[float]:
    extra = record.get("extra", {})
    error = _first(extra, ("affine_test_error",))
    if error is None:
        accuracy = _first(extra, ("affine_test_accuracy",))
        error = None if accuracy is None else 1.0 - accuracy
    return None if error is None else 100.0 * error


def _seconds_per_step(record: Dict[str, Any]) -> Optional[float]:
    recorded = _first(record.get("extra", {}), ("seconds_per_step", "train_seconds_per_step"))
    if recorded is not None:
        return recorded
    batch = record.get("config", {}).get("batch_size")
    steps = sum(math.ceil(int(e.get("train_examples", 0)) / batch) for e in record.get("history", [])) if batch else 0
    return record["train_seconds"] / steps if steps and record.get("train_seconds") else None


def _extra(*names: str) -> Callable[[Dict[str, Any]], Optional[float]]:
    return lambda record: _first({**record.get("labels", {}), **record.get("extra", {})}, names)


#: column -> (heading, how it is read from a record, digits); ``None`` when the record lacks it. Errors are in
#: percent; the seconds per step are the record's own (``extra["seconds_per_step"]``) or its training seconds
#: over its optimizer steps.
METRICS: Dict[str, Tuple[str, Callable[[Dict[str, Any]], Optional[float]], int]] = {
    "error": ("clean error %", lambda r: 100.0 * r["test_error"], 2),
    "affine_error": ("affine error %", _affine_error, 2),
    "parameters": ("parameters", _extra("parameters", "n_parameters"), 0),
    "seconds_per_step": ("s / step", _seconds_per_step, 3),
    "entropy": ("entropy", _extra("coupling_entropy", "entropy"), 3),
    "polarisation": ("polarisation", _extra("coupling_polarisation", "coupling_polarization", "polarisation"), 3),
    "pair_error": ("pair error %", lambda r: _percent(_extra("multimnist_test_error")(r)), 2),
}


def _percent(fraction: Optional[float]) -> Optional[float]:
    return None if fraction is None else 100.0 * fraction


def metric_value(record: Dict[str, Any], metric: str) -> Optional[float]:
    """The value of column ``metric`` (a key of :data:`METRICS`) in ``record``, or ``None`` if it lacks it."""
    return METRICS[metric][1](record)


@dataclass(frozen=True)
class ComparisonRow:
    """One model and routing procedure over its seeds: each metric's values in seed order (``None`` where a
    record lacks it)."""

    model: str
    routing: str
    seeds: Tuple[int, ...]
    values: Dict[str, Tuple[Optional[float], ...]]

    @property
    def n(self) -> int:
        return len(self.seeds)

    def present(self, metric: str) -> List[float]:
        return [v for v in self.values[metric] if v is not None]

    def mean(self, metric: str) -> Optional[float]:
        values = self.present(metric)
        return sum(values) / len(values) if values else None

    def std(self, metric: str) -> Optional[float]:
        """Sample standard deviation (n - 1) over the seeds that have the metric; ``None`` under two seeds."""
        values = self.present(metric)
        if len(values) < 2:
            return None
        m = sum(values) / len(values)
        return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))

    def cell(self, metric: str) -> str:
        """``"mean +- std"`` (``"mean"`` for one seed or a count that does not vary, ``"-"`` when no record has it)."""
        digits = METRICS[metric][2]
        mean, std = self.mean(metric), self.std(metric)
        if mean is None:
            return "-"
        text = f"{mean:,.{digits}f}"
        return text if std is None or (digits == 0 and std == 0) else f"{text} +- {std:,.{digits}f}"


def routing_label(key: Mapping[str, Any]) -> str:
    """The routing column of a run key: its ``routing`` and, for a variant of the shared protocol (a key with more
    than model, routing and seed), each changed setting: ``"em"``, ``"em, lr 0.0001"``."""
    changes = [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in key.items()
               if k not in ("model", "routing", "seed")]
    return ", ".join([str(key.get("routing", "dynamic"))] + changes)


def _routing_of(record: Dict[str, Any]) -> str:
    key = record["key"]
    if "routing" not in key:
        key = {**key, "routing": record.get("config", {}).get("routing", "dynamic")}
    return routing_label(key)


def comparison_rows(records: Iterable[Dict[str, Any]], metrics: Sequence[str] = tuple(METRICS)) -> List[ComparisonRow]:
    """Group ``records`` by their key's ``model`` and ``routing`` and collect each metric per seed.

    Rows come in the order of the models (``capsnet`` first) and of :data:`PROCEDURES`; unknown names follow,
    sorted.
    """
    groups: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((str(record["key"].get("model", "?")), _routing_of(record)), []).append(record)

    def order(k: Tuple[str, str]):
        model, routing = k
        return ({"capsnet": 0, "efficient-capsnet": 1}.get(model, 2), model,
                PROCEDURES.index(routing) if routing in PROCEDURES else len(PROCEDURES), routing)

    rows = []
    for k in sorted(groups, key=order):
        members = sorted(groups[k], key=lambda r: r["seed"])
        rows.append(ComparisonRow(k[0], k[1], tuple(r["seed"] for r in members),
                                  {m: tuple(metric_value(r, m) for r in members) for m in metrics}))
    return rows


#: the two tables the report prints: what the runs reached, and what they cost and how they route
TABLES = (("error", "affine_error"), ("parameters", "seconds_per_step", "entropy", "polarisation"))
#: per experiment: its two tables and the metrics each row is compared on with dynamic routing's
REPORTS = {EXPERIMENT: (TABLES, ("error", "affine_error")),
           PAIRS_EXPERIMENT: ((("pair_error",), TABLES[1]), ("pair_error",))}


def format_comparison(rows: Sequence[ComparisonRow], metrics: Sequence[str] = tuple(METRICS), seeds: bool = True) -> str:
    """The rows as a text table: model, routing, seeds (if ``seeds``), then ``mean +- std`` of each metric."""
    head = ["model", "routing"] + ["seeds"] * seeds + [METRICS[m][0] for m in metrics]
    body = [[r.model, r.routing] + [",".join(str(s) for s in r.seeds)] * seeds + [r.cell(m) for m in metrics]
            for r in rows]
    widths = [max(len(line[i]) for line in [head] + body) for i in range(len(head))]
    lines = ["  ".join(text.ljust(w) for text, w in zip(line, widths)).rstrip() for line in [head] + body]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def compare(row: ComparisonRow, base: ComparisonRow, metric: str) -> Optional[Tuple[float, str]]:
    """``(difference, verdict)`` of ``row``'s mean ``metric`` minus ``base``'s: ``"single seed"`` when either row has
    fewer than two seeds with it, ``"inside"`` when the difference is smaller than the two rows' standard deviations
    added (the yardstick of :func:`capsedu.records.inside_spread`), else ``"lower"`` or ``"higher"``. ``None`` when
    either row lacks the metric."""
    a, b = row.mean(metric), base.mean(metric)
    if a is None or b is None:
        return None
    sa, sb = row.std(metric), base.std(metric)
    if sa is None or sb is None:
        return a - b, "single seed"
    if abs(a - b) < sa + sb:
        return a - b, "inside"
    return a - b, "lower" if a < b else "higher"


def contrasts(rows: Sequence[ComparisonRow], metrics: Sequence[str] = ("error", "affine_error"),
              reference: Tuple[str, str] = ("capsnet", "dynamic")) -> List[str]:
    """Each row against the ``reference`` row (model, routing), one line per row, per metric: both means, their
    difference, and what the seeds allow to say about it (:func:`compare`): whether the difference is inside the
    seed-to-seed spread, and only outside it which one is lower; with a single seed in either row, that one seed
    cannot separate them. ``[]`` without the reference row."""
    base = _row(rows, reference)
    if base is None:
        return []
    lines = []
    for row in rows:
        if row is base:
            continue
        parts = []
        for metric in metrics:
            heading, digits = METRICS[metric][0], METRICS[metric][2]
            found = compare(row, base, metric)
            if found is None:
                parts.append(f"{heading} not recorded")
                continue
            difference, verdict = found
            text = (f"{heading} {row.mean(metric):.{digits}f} against {base.mean(metric):.{digits}f}, "
                    f"{difference:+.{digits}f}")
            spread = f"{(row.std(metric) or 0.0) + (base.std(metric) or 0.0):.{digits}f}"
            if verdict == "single seed":
                parts.append(f"{text} (a single seed cannot separate them)")
            elif verdict == "inside":
                parts.append(f"{text} (inside the seed spread {spread}: no difference shown)")
            else:
                parts.append(f"{text} (outside the seed spread {spread}: {verdict} over seeds {_seed_list(row)} "
                             f"and {_seed_list(base)})")
        lines.append(f"  {row.model} {row.routing}: " + "; ".join(parts))
    return lines


def _row(rows: Sequence[ComparisonRow], key: Tuple[str, str]) -> Optional[ComparisonRow]:
    return next((r for r in rows if (r.model, r.routing) == tuple(key)), None)


#: the abstracts' claims (10.9) that the runs of 10.10 can speak to: (who, the claim in short, the row compared,
#: the row it is compared with, the metric, the verdict word for each outcome of :func:`compare` of the first row
#: against the second: what a lower and a higher mean, and a difference inside the seed spread, say of the claim)
CLAIMS = (
    ("Paik et al. 2019", "routing is no better than uniform couplings", ("capsnet", "uniform"),
     ("capsnet", "dynamic"), "error", {"inside": "consistent (no difference shown)",
                                       "lower": "agrees: uniform couplings are even better",
                                       "higher": "disagrees: routing is better"}),
    ("Gu & Tresp 2020", "routing adds nothing to generalisation", ("capsnet", "uniform"), ("capsnet", "dynamic"),
     "error", {"inside": "consistent (no difference shown)", "lower": "agrees: no routing is even better",
               "higher": "disagrees: routing is better"}),
    ("Gu & Tresp 2020", "routing adds nothing to affine robustness", ("capsnet", "uniform"), ("capsnet", "dynamic"),
     "affine_error", {"inside": "consistent (no difference shown)", "lower": "agrees: no routing is even better",
                      "higher": "disagrees: routing is better"}),
    ("Gu, Tresp & Hu 2021", "dynamic routing can harm robustness", ("capsnet", "dynamic"), ("capsnet", "uniform"),
     "affine_error", {"inside": "not shown (no difference)", "lower": "disagrees: routing helps here",
                      "higher": "agrees: routing harms here"}),
    ("Tsai et al. 2020", "inverted attention beats earlier routing", ("capsnet", "inverted-attention"),
     ("capsnet", "dynamic"), "error", {"inside": "not shown (no difference)", "lower": "agrees",
                                       "higher": "disagrees: dynamic routing is better"}),
    ("Sabour et al. 2017", "routing separates overlapping digits (MultiMNIST: r = 3 5.2 %, r = 1 7.5 %)",
     ("capsnet", "uniform"), ("capsnet", "dynamic"), "pair_error",
     {"inside": "not shown (no difference)", "lower": "disagrees: uniform couplings are better",
      "higher": "agrees: routing is better"}),
    ("Mazzia et al. 2021", "Efficient-CapsNet, a fraction of the parameters, matches the CapsNet",
     ("efficient-capsnet", "self-attention"), ("capsnet", "dynamic"), "error",
     {"inside": "consistent (no difference shown)", "lower": "agrees: it is even better",
      "higher": "disagrees at this budget: the CapsNet is better"}),
)


def claims_report(rows: Sequence[ComparisonRow], pair_rows: Sequence[ComparisonRow] = ()) -> List[str]:
    """One line per claim of :data:`CLAIMS`: the two rows' means and the verdict the seeds allow (a single seed, or a
    row not recorded yet, gives none). The claims on the pair error read ``pair_rows`` (the MultiMNIST runs), the
    others ``rows`` (the single digits). On MNIST digits at this chapter's CPU budget, not on the papers' data."""
    lines = []
    for who, claim, first, second, metric, words in CLAIMS:
        source = pair_rows if metric == "pair_error" else rows
        a, b = _row(source, first), _row(source, second)
        heading, digits = METRICS[metric][0], METRICS[metric][2]
        if a is None or b is None:
            missing = " and ".join(" ".join(k) for k, r in ((first, a), (second, b)) if r is None)
            lines.append(f"{who}, {claim}: {missing} not recorded yet")
            continue
        found = compare(a, b, metric)
        if found is None:
            lines.append(f"{who}, {claim}: {heading} not recorded")
            continue
        difference, verdict = found
        said = ("cannot tell: fewer than two seeds on a side" if verdict == "single seed" else words[verdict])
        lines.append(f"{who}, {claim}: {' '.join(first)} {a.mean(metric):.{digits}f} against {' '.join(second)} "
                     f"{b.mean(metric):.{digits}f} {heading} ({difference:+.{digits}f}) -> {said}")
    return lines


def _seed_list(row: ComparisonRow) -> str:
    return ",".join(str(s) for s in row.seeds)


def planned_runs(scale: str = SCALE, root: Optional[str] = None,
                 experiment: str = EXPERIMENT) -> Optional[List[Dict[str, Any]]]:
    """The keys of the runs ``experiments/<experiment>.py`` plans at ``scale`` (its ``runs(scale)``), or ``None``
    when there is no such module or it cannot be imported.

    ``root`` is the checkout holding ``experiments/``; by default the one whose ``experiments/results`` the records
    come from (:func:`capsedu.records.find_results`), else the source checkout this package runs from. It is on
    ``sys.path`` only while importing.
    """
    import importlib
    import sys

    from ..records import RecordError, find_results

    if root is not None:
        folders = [Path(root)]
    else:
        folders = []
        try:
            folders.append(find_results().resolve().parents[1])
        except (RecordError, IndexError):
            pass
        folders.append(Path(__file__).resolve().parents[2])
    folder = next((f for f in folders if (f / "experiments" / f"{experiment}.py").is_file()), None)
    if folder is None:
        return None
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(f"experiments.{experiment}")
        return [dict(run.key) for run in module.runs(scale)]
    except Exception:  # noqa: BLE001 - a module being written may not import yet: the report says the list is missing
        return None
    finally:
        sys.path.remove(str(folder))


def missing_runs(records: Iterable[Dict[str, Any]], planned: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The ``planned`` run keys that no record in ``records`` has, in the planned order."""
    have = {tuple(sorted(r["key"].items())) for r in records}
    return [dict(k) for k in planned if tuple(sorted(k.items())) not in have]


def _by_seed(keys: Sequence[Mapping[str, Any]]) -> List[str]:
    """One line per run key without its seed, the seeds it lacks listed after it (``..., seeds=0,1``), in the
    order the keys first appear: the list of missing runs stays short enough for a slide."""
    groups: Dict[tuple, List[Any]] = {}
    for key in keys:
        rest = tuple((k, v) for k, v in key.items() if k != "seed")
        groups.setdefault(rest, []).append(key.get("seed"))
    lines = []
    for rest, seeds in groups.items():
        named = [s for s in seeds if s is not None]
        seed_part = ([f"seed={named[0]}"] if len(named) == 1
                     else [f"seeds={','.join(str(s) for s in named)}"] if named else [])
        lines.append(", ".join([f"{k}={v}" for k, v in rest] + seed_part))
    return lines


def recorded_runs_report(records: Sequence[Dict[str, Any]], planned: Optional[Sequence[Mapping[str, Any]]],
                         command: Optional[str] = None, where: str = "", experiment: str = EXPERIMENT,
                         part: str = "all") -> str:
    """What section "Trained side by side" prints for ``experiment`` (a key of :data:`REPORTS`): the tables of the
    recorded runs (if any), then each row against dynamic routing's, which planned runs have no record and the
    command that records them (``python -m experiments.run <experiment> --scale cpu`` unless ``command`` says
    otherwise). Nothing is estimated or filled in. ``part``: ``"all"``, or ``"tables"`` and ``"rest"``, the two
    halves, so that a slide can show each."""
    if part not in ("all", "tables", "rest"):
        raise ValueError(f"part must be 'all', 'tables' or 'rest', not {part!r}")
    tables, compared = REPORTS[experiment]
    command = command or f"python -m experiments.run {experiment} --scale {SCALE}"
    lines = []
    head: List[str] = []
    if records:
        rows = comparison_rows(records)
        head = [f"{len(records)} recorded run(s) of {experiment}{where}, mean +- std over seeds:", "",
                format_comparison(rows, tables[0]), "", format_comparison(rows, tables[1], seeds=False)]
        against = contrasts(rows, compared)
        if against:
            base = next(r for r in rows if (r.model, r.routing) == ("capsnet", "dynamic"))
            spread = base.n >= 2 and any(r.n >= 2 for r in rows if r is not base)
            lines += ["", "Against capsnet with dynamic routing (the means and their difference" + (
                "; inside the seed spread when it is smaller than the two rows' standard deviations added):"
                if spread else "):")] + against
            if not spread:
                lines += ["", "No comparison above has two seeds on both sides: these records cannot say that one "
                              "routing is ahead of another."]
        elif len(rows) > 1:
            lines += ["", "No record of capsnet with dynamic routing yet: no row to compare the others with."]
    else:
        lines.append(f"No recorded run of {experiment}{where} yet: there is nothing to tabulate.")
    if planned is None:
        lines += ["", f"The list of planned runs (experiments/{experiment}.py) is not available here."]
        missing: List[Dict[str, Any]] = []
    else:
        missing = missing_runs(records, planned)
        if missing:
            lines += ["", f"{len(missing)} of {len(planned)} planned run(s) have no record yet:"]
            lines += ["  " + line for line in _by_seed(missing)]
        else:
            lines += ["", f"All {len(planned)} planned runs are recorded."]
    if missing or planned is None or not records:
        lines += ["", f"Record them with: {command}"]
    if part == "tables":
        return "\n".join(head)
    if part == "rest":
        return "\n".join(lines[1:] if lines[:1] == [""] else lines)
    return "\n".join(head + lines)
