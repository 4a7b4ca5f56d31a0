"""Markdown from the JSON results in benchmarks/results/: every record in detail (default), or the README's
performance table (``--readme`` writes it between the README's markers; ``--check`` only compares)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"
MARKERS = ("<!-- benchmarks.summarize -->\n", "<!-- /benchmarks.summarize -->")


def _load(name: str) -> Optional[Dict[str, Any]]:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _where(data: Dict[str, Any]) -> str:
    m = data["machine"]
    bf16 = m.get("cpu_bf16", {})
    native = f", native bf16: {bf16['features']}" if bf16.get("native") else (", no native bf16" if bf16 else "")
    return f"{m['cpu_model']}, {m['torch_threads']} threads{native}, {m['date'][:10]}"


def readme_table() -> str:
    """The README's performance table, one row per recorded benchmark, each with its command and machine."""
    rows: List[str] = ["| benchmark | capsedu | compared with | command; machine |", "|---|---|---|---|"]
    routing = _load("routing_cpu")
    if routing:
        for r_iter in (3, 5):
            by = {r["method"]: r for r in routing["results"] if r["iterations"] == r_iter}
            ours, broad, ein = by["capsedu"], by["broadcast"], by["einsum"]
            rows.append(f"| routing fwd+bwd, u_hat {tuple(routing['shape'])}, r = {r_iter} | "
                        f"{1000 * ours['median_s']:.0f} ms, peak {ours['peak_bytes'] / 2 ** 20:.0f} MiB | "
                        f"broadcast-multiply {1000 * broad['median_s']:.0f} ms "
                        f"(x{broad['median_s'] / ours['median_s']:.2f}); einsum {1000 * ein['median_s']:.0f} ms | "
                        f"`python benchmarks/bench_routing.py`; {_where(routing)} |")
    for preset in ("paper", "small"):
        step = _load(f"train_step_{preset}_b128_cpu")
        if not step:
            continue
        by = {r["variant"]: r for r in step["results"]}
        naive = by["naive"]
        ours = [r for r in step["results"] if r["variant"].startswith("capsedu")]
        fp32 = min((r for r in ours if not r.get("amp")), key=lambda r: r["train_step_median_s"])
        cells = [f"{fp32['train_step_median_s']:.2f} s float32 ({fp32['variant']})"]
        bf16 = [r for r in ours if r.get("amp")]
        if bf16:
            best = min(bf16, key=lambda r: r["train_step_median_s"])
            cells.append(f"{best['train_step_median_s']:.2f} s bf16")
        flag = "" if preset == "paper" else " --preset small"
        rows.append(f"| {preset} CapsNet training step, batch 128 | {'; '.join(cells)} | straightforward PyTorch "
                    f"{naive['train_step_median_s']:.2f} s (x{naive['train_step_median_s'] / fp32['train_step_median_s']:.2f}"
                    f" float32) | `python benchmarks/bench_train_step.py{flag}`; {_where(step)} |")
    peers = _load("peers_train_step_b64_cpu")
    if peers:
        by = {(r["implementation"], r["precision"]): r for r in peers["results"]}
        ours = [f"{1000 * r['step_median_s']:.0f} ms {p}" for (name, p), r in by.items() if name == "capsedu"]
        others = [f"{name} {1000 * r['step_median_s']:.0f} ms {p}" for (name, p), r in by.items() if name != "capsedu"]
        speed = "; ".join(f"{p}: x{v['speedup_vs_fastest_peer_float32']:.2f} the fastest float32 peer"
                          + ("" if p == "float32" else
                             f", x{v['speedup_vs_fastest_peer_same_precision']:.2f} the fastest {p} peer")
                          for p, v in peers["speedups"].items())
        rows.append(f"| paper CapsNet training step, batch {peers['batch_size']}, against public reimplementations "
                    f"(median of {peers['repeats']} alternated repeats) | {', '.join(ours)} ({speed}) | "
                    f"{'; '.join(others)} | `python benchmarks/bench_peers.py --xifengguo DIR --gram-ai DIR`; "
                    f"{_where(peers)} |")
    for tta in filter(None, (_load("time_to_accuracy_cpu"), _load("time_to_accuracy_levers_cpu"),
                                  _load("time_to_accuracy_seeds_cpu"))):
        for r in tta["results"]:
            hits = ", ".join(f"{t} % at {v['wall_s']:.0f} s (epoch {v['epoch']})" if v else f"{t} % not reached"
                             for t, v in r["time_to"].items())
            rows.append(f"| `{r['command'].strip()}`, whole command until the full MNIST test accuracy reaches | {hits}; "
                        f"{100 * r['final_test_accuracy']:.2f} % after {r['total_wall_s']:.0f} s | "
                        f"{r['description']} | `python benchmarks/bench_time_to_accuracy.py --variants {r['variant']}`; "
                        f"{_where(tta)} |")
    bf16 = _load("bf16_accuracy_cpu")
    if bf16:
        pairs = ", ".join(f"seed {r['seed']}: {r['fp32_test_error_pct']:.2f} -> {r['bf16_test_error_pct']:.2f} %"
                          for r in bf16["results"])
        verdict = "within" if bf16["within_fp32_spread"] else "outside"
        rows.append(f"| bf16 autocast's effect on accuracy: MNIST table row {bf16['row']} retrained in bf16 | "
                    f"test error float32 -> bf16, {pairs}; largest change {bf16['largest_difference_points']:.2f} "
                    f"points, {verdict} the float32 seed spread ({bf16['fp32_spread_points']:.2f}) | the recorded "
                    f"float32 runs | `python benchmarks/bench_bf16_accuracy.py`; {_where(bf16)} |")
    epoch = _load("epoch_paper_cpu")
    if epoch and epoch.get("mode") == "extrapolated":
        rows.append(f"| paper CapsNet, one MNIST epoch on the CPU | ~{epoch['epoch_seconds_extrapolated'] / 60:.1f} min "
                    f"(extrapolated from {epoch['timed_steps']} steps) | | `python benchmarks/bench_epoch.py`; "
                    f"{_where(epoch)} |")
    return "\n".join(rows) + "\n"


def _block_span(content: str):
    return content.index(MARKERS[0]) + len(MARKERS[0]), content.index(MARKERS[1])


def readme_block_matches(readme: Path = README) -> bool:
    content = readme.read_text()
    start, end = _block_span(content)
    return content[start:end] == readme_table()


def update_readme(readme: Path = README) -> None:
    content = readme.read_text()
    start, end = _block_span(content)
    readme.write_text(content[:start] + readme_table() + content[end:])


def details() -> str:
    lines = []
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("quick"):
            continue
        m = data["machine"]
        lines.append(f"**{path.name}**: {m['cpu_model']}, {m['cpu_count']} cores, {m['torch_threads']} torch threads, "
                     f"torch {m['torch_version']}, device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}, "
                     f"1-min load {m.get('load_average_1m', '?')} at the end, {m['date']}\n")
        if data["benchmark"] == "routing":
            lines.append("| r | method | fwd+bwd (median) | vs broadcast | peak memory | saved for backward |")
            lines.append("|---|---|---|---|---|---|")
            for r in data["results"]:
                peak = f"{r['peak_bytes'] / 2 ** 20:.0f} MiB" if r.get("peak_bytes") else "-"
                saved = f"{r['saved_bytes'] / 2 ** 20:.0f} MiB" if r.get("saved_bytes") is not None else "-"
                name = r["method"] + (" (extrapolated)" if r["method"] == "literal" else "")
                lines.append(f"| {r['iterations']} | {name} | {r['median_s'] * 1000:.0f} ms | "
                             f"x{r.get('speedup_vs_broadcast') or 0:.2f} | {peak} | {saved} |")
            lines.append("")
            lines.append("| DigitCaps.predictions | fwd+bwd | peak memory |")
            lines.append("|---|---|---|")
            for p in data["predictions"]:
                lines.append(f"| {p['method']} | {p['median_s'] * 1000:.0f} ms | {p['peak_bytes'] / 2 ** 20:.0f} MiB |")
        elif data["benchmark"] == "train_step":
            lines.append("| variant | train step (median) | train img/s | vs naive | inference img/s | vs naive |")
            lines.append("|---|---|---|---|---|---|")
            for r in data["results"]:
                lines.append(f"| {r['variant']} | {r['train_step_median_s']:.2f} s | {r['train_images_per_s']:.1f} | "
                             f"x{r['train_speedup_vs_naive']:.2f} | {r.get('inference_images_per_s', 0):.1f} | "
                             f"x{r.get('inference_speedup_vs_naive', 0):.2f} |")
            macs = data.get("macs_per_image", {})
            if "baseline_cnn" in macs:
                lines.append("")
                lines.append(f"Multiply-adds per image: CapsNet '{data['preset']}' {macs['capsnet'] / 1e6:.0f}M, "
                             f"baseline CNN {macs['baseline_cnn'] / 1e6:.0f}M (a different network, timed for context).")
        elif data["benchmark"] == "epoch":
            if data["mode"] == "extrapolated":
                lines.append(f"CapsNet '{data['preset']}', batch {data['batch_size']}: median step "
                             f"{data['step_median_s']:.2f} s ({data['images_per_s']:.1f} img/s) -> one epoch of "
                             f"{data['steps_per_epoch']} steps ~ {data['epoch_seconds_extrapolated'] / 60:.0f} min "
                             f"(**extrapolated** from {data['timed_steps']} steps, not measured)")
            else:
                lines.append(f"epoch {data['epoch_seconds']:.1f} s; time to {100 * data['target_accuracy']:.1f}%: "
                             f"{data['time_to_target_s']} s; best {100 * data['best_test_accuracy']:.2f}%; "
                             f"warm-up (compile) {data.get('warmup_s', 0):.0f} s, not counted")
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readme", action="store_true", help="write the performance table into README.md")
    p.add_argument("--check", action="store_true", help="exit 1 if README.md's table differs from the records")
    args = p.parse_args(argv)
    if args.check:
        same = readme_block_matches()
        print("README.md's performance table matches the records" if same else
              "README.md's performance table differs from the records: run python benchmarks/summarize.py --readme")
        return 0 if same else 1
    if args.readme:
        update_readme()
        print(readme_table())
        return 0
    print(details())
    return 0


if __name__ == "__main__":
    sys.exit(main())
