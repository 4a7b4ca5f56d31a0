"""One CapsNet training step (forward, loss, backward, Adam) and inference throughput:
the straightforward PyTorch formulation against capsedu's CapsNet with its fast options.

    python benchmarks/bench_train_step.py                    # paper CapsNet, batch 128
    python benchmarks/bench_train_step.py --preset small --batch-size 64
    python benchmarks/bench_train_step.py --compile          # also time torch.compile (slow to build on CPU)
    python benchmarks/bench_train_step.py --quick            # smoke run

Variants:

* ``naive``                 ``reference.NaiveCapsNet``: W (1, 1152, 10, 16, 8) applied by a broadcast
                            matmul, broadcast-multiply routing (same parameters and function)
* ``capsedu``               ``capsedu.CapsNet`` as constructed (bmm predictions, routing with a
                            hand-written backward)
* ``capsedu+channels_last`` convolutions in NHWC (``capsedu.fast.optimize(channels_last=True)``)
* ``capsedu+compile``       ``torch.compile`` (with ``--compile``, or by default on CUDA)
* ``capsedu+amp``           bf16 autocast (CUDA, and CPUs with native bf16; routing and squash stay float32)
* ``capsedu+compile+amp``   both, as ``capsedu train`` runs on a GPU by default
* ``baseline-cnn(+amp)``    the paper's baseline CNN (``capsedu.BaselineCNN``, 35.4M parameters, float32, and
                            under bf16 autocast where capsedu's CapsNet gets it;
                            cross-entropy), with the device's default fast options: a different
                            network, timed as context for the slides' "capsules are much slower
                            than other modern models" (``--no-baseline`` skips it)
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional

import _common
from _common import machine_info, peak_memory, pick_device, time_fn, finish

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from capsedu import BaselineCNN, CapsNet, capsule_loss  # noqa: E402
from capsedu.fast import autocast, optimize, resolve_amp  # noqa: E402
from capsedu.teaching.architecture import conv_linear_macs, layer_table, totals  # noqa: E402
from reference import NaiveCapsNet, naive_loss  # noqa: E402


def make_variants(preset: str, device, want_compile: bool, want_amp: bool, want_baseline: bool = True):
    torch.manual_seed(0)
    base = CapsNet(preset)
    cfg = base.config
    variants = {"naive": ("naive", NaiveCapsNet(cfg.conv_channels, cfg.primary_types).load_from_capsedu(base), False)}
    variants["capsedu"] = ("capsedu", base, False)
    cl = CapsNet(preset)
    cl.load_state_dict(base.state_dict())
    variants["capsedu+channels_last"] = ("capsedu", optimize(cl, channels_last=True, compile=False), False)
    if want_compile:
        comp = CapsNet(preset)
        comp.load_state_dict(base.state_dict())
        variants["capsedu+compile"] = ("capsedu", optimize(comp, channels_last="auto", compile=True), False)
    if want_amp:
        amp = CapsNet(preset)
        amp.load_state_dict(base.state_dict())
        variants["capsedu+amp"] = ("capsedu", optimize(amp, channels_last="auto", compile=False), True)
    if want_compile and want_amp:  # what ``capsedu train`` uses on a GPU ("auto" everywhere)
        both = CapsNet(preset)
        both.load_state_dict(base.state_dict())
        variants["capsedu+compile+amp"] = ("capsedu", optimize(both, channels_last="auto", compile=True), True)
    if want_baseline:  # not a formulation of CapsNet: context for "capsules are slow" (see the docstring)
        torch.manual_seed(0)
        cnn = optimize(BaselineCNN(), channels_last="auto", compile=want_compile)
        variants["baseline-cnn"] = ("cnn", cnn, False)
        if want_amp:  # the same weights under bf16: compare each precision with its own
            variants["baseline-cnn+amp"] = ("cnn", cnn, True)
    for kind, model, _ in variants.values():
        model.to(device)
    return variants


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--preset", choices=["paper", "small"], default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (default on CUDA)")
    p.add_argument("--no-inference", action="store_true")
    p.add_argument("--no-baseline", action="store_true", help="skip the paper's baseline CNN")
    args = p.parse_args(argv)
    _common.setup_threads(args)
    device = pick_device(args.device)
    preset = args.preset or ("small" if args.quick else "paper")
    batch = args.batch_size or (4 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 5)
    want_compile = args.compile or (device.type == "cuda" and not args.quick)
    # bf16 autocast where `capsedu train` uses it: CUDA, and CPUs with native bf16 (capsedu.fast.cpu_bf16)
    variants = make_variants(preset, device, want_compile, resolve_amp("auto", device), not args.no_baseline)

    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 1, 28, 28, generator=g).to(device)
    labels = torch.randint(0, 10, (batch,), generator=g).to(device)
    print(f"CapsNet '{preset}' training step, batch {batch}, device {device}, threads {torch.get_num_threads()}")

    # the variants compute the same function: check it once (forward, same weights)
    with torch.no_grad():
        ref_len = variants["capsedu"][1](images, labels).lengths
        naive_len = variants["naive"][1](images, labels)[0]
    max_diff = float((ref_len - naive_len).abs().max())

    results = []
    for name, (kind, model, amp) in variants.items():
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()

        def train_step(model=model, kind=kind, amp=amp, opt=opt):
            with autocast(device, enabled=amp):
                if kind == "naive":
                    lengths, _, recon = model(images, labels)
                    loss = naive_loss(lengths, recon, images, labels)
                elif kind == "cnn":
                    loss = F.cross_entropy(model(images), labels)
                else:
                    loss = capsule_loss(model(images, labels), images, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        @torch.no_grad()
        def infer(model=model, amp=amp):
            with autocast(device, enabled=amp):
                model(images)

        state = {k: v.clone() for k, v in model.state_dict().items()}
        t = time_fn(train_step, device, warmup=2 if "compile" in name else 1, repeats=repeats)
        row = {"variant": name, "preset": preset, "batch_size": batch, "train_step_median_s": t["median_s"],
               "train_step_min_s": t["min_s"], "train_step_times_s": t["times_s"],
               "train_images_per_s": batch / t["median_s"], "amp": amp}
        if device.type == "cuda":
            row["train_peak_bytes"] = peak_memory(train_step, device)
        if not args.no_inference:
            model.eval()
            ti = time_fn(infer, device, warmup=1, repeats=repeats)
            row.update({"inference_median_s": ti["median_s"], "inference_images_per_s": batch / ti["median_s"]})
            model.train()
        model.load_state_dict(state)
        results.append(row)
        print(f"  {name:>22}: train step {t['median_s'] * 1000:8.1f} ms ({row['train_images_per_s']:7.1f} img/s)"
              + (f", inference {row['inference_images_per_s']:8.1f} img/s" if "inference_images_per_s" in row else ""),
              flush=True)
    naive = results[0]
    for row in results:
        row["train_speedup_vs_naive"] = naive["train_step_median_s"] / row["train_step_median_s"]
        if "inference_median_s" in row:
            row["inference_speedup_vs_naive"] = naive["inference_median_s"] / row["inference_median_s"]
    best = min((r for r in results[1:] if r["variant"].startswith("capsedu")), key=lambda r: r["train_step_median_s"])
    print(f"best capsedu variant: {best['variant']}, x{best['train_speedup_vs_naive']:.2f} vs naive "
          f"(outputs agree to {max_diff:.1e})")
    macs = {"capsnet": totals(layer_table(CapsNet(preset)))["macs"]}
    if "baseline-cnn" in variants:
        macs["baseline_cnn"] = conv_linear_macs(BaselineCNN())
        cnn = next(r for r in results if r["variant"] == "baseline-cnn")
        print(f"multiply-adds per image: CapsNet '{preset}' {macs['capsnet'] / 1e6:.0f}M, baseline CNN "
              f"{macs['baseline_cnn'] / 1e6:.0f}M; baseline CNN step {cnn['train_step_median_s']:.2f} s = "
              f"x{cnn['train_step_median_s'] / best['train_step_median_s']:.2f} the best capsedu step")
    payload = {"benchmark": "train_step", "quick": args.quick, "machine": machine_info(device), "preset": preset,
               "batch_size": batch, "max_abs_diff_naive_vs_capsedu": max_diff, "macs_per_image": macs,
               "results": results}
    default = f"train_step_{preset}_b{batch}_{device.type}{'_quick' if args.quick else ''}"
    return finish(default, payload, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
