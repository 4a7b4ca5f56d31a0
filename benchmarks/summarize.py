"""Print a Markdown table of the JSON results in benchmarks/results/ (for the README)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
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
    print("\n".join(lines))


if __name__ == "__main__":
    main()
    sys.exit(0)
