"""capsedu's paper-network training step against public PyTorch reimplementations, in one process.

The peers are not part of this repository: clone them yourself and pass their folders.

    git clone https://github.com/XifengGuo/CapsNet-Pytorch /tmp/xifengguo
    git clone https://github.com/gram-ai/capsule-networks /tmp/gramai
    python benchmarks/bench_peers.py --xifengguo /tmp/xifengguo --gram-ai /tmp/gramai

Each peer's own model and loss classes are imported from its folder and run unchanged on the CPU; the only
help they get: their hard-coded ``.cuda()`` calls return the tensor itself, gram-ai's model finds ``Variable``
(which it imports only under ``__main__``) as the identity, and its routing layer's output is handed over in
batch-major memory so that a later ``.view`` works on current PyTorch (see :func:`gramai_step`). The step is what every
training loop does: forward, the implementation's own margin + 0.0005 x reconstruction loss, backward, Adam.

Rows: every implementation in float32, and again under ``torch.autocast("cpu", bfloat16)`` (for capsedu that
is ``capsedu train``'s default on CPUs with native bf16; the peers get the same context, so the bf16 row shows
what autocast alone gives a straightforward implementation). The variants alternate inside each repeat, so a
busy moment of the machine costs all of them alike; the median is reported.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import _common
from _common import finish, machine_info

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from capsedu import CapsNet, capsule_loss  # noqa: E402
from capsedu.fast import autocast, cpu_bf16, optimize  # noqa: E402


@contextlib.contextmanager
def cuda_calls_stay_on_the_cpu():
    """The peers call ``.cuda()`` on fresh tensors inside ``forward``; on a CPU machine that must be a no-op."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


def load_module(folder: Path, filename: str, name: str):
    path = folder / filename
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass the folder of a clone of the peer's repository")
    sys.path.insert(0, str(folder))  # XifengGuo's capsulenet.py imports its sibling capsulelayers.py
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def xifengguo_step(folder: Path, images, labels) -> Callable[[], torch.Tensor]:
    net_module = load_module(folder, "capsulenet.py", "xifengguo_capsulenet")
    model = net_module.CapsuleNet(input_size=[1, 28, 28], classes=10, routings=3)
    one_hot = F.one_hot(labels, 10).float()

    def loss():
        lengths, recon = model(images, one_hot)
        return net_module.caps_loss(one_hot, lengths, images, recon, 0.0005 * 784)  # its lam_recon for 28x28

    return model, loss


def gramai_step(folder: Path, images, labels) -> Callable[[], torch.Tensor]:
    net_module = load_module(folder, "capsule_network.py", "gramai_capsule_network")
    net_module.Variable = lambda t: t
    model = net_module.CapsuleNet()
    # Its forward ends in `(x * y[:, :, None]).view(...)` on a transposed x; PyTorch >= 1.x lays the product out
    # like x, so the view fails. Handing over the routing layer's output in batch-major memory (same values, one
    # copy of a (10, batch, 1, 1, 16) tensor) lets the original code run.
    routing_forward = model.digit_capsules.forward
    model.digit_capsules.forward = lambda x: routing_forward(x).transpose(0, 1).contiguous().transpose(0, 1)
    criterion = net_module.CapsuleLoss()
    one_hot = F.one_hot(labels, 10).float()

    def loss():
        classes, recon = model(images, one_hot)
        return criterion(images, one_hot, classes, recon)

    return model, loss


def capsedu_step(images, labels):
    torch.manual_seed(0)
    model = optimize(CapsNet("paper"), channels_last="auto", compile=False)
    return model, lambda: capsule_loss(model(images, labels), images, labels)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--xifengguo", type=Path, help="folder of a clone of XifengGuo/CapsNet-Pytorch")
    p.add_argument("--gram-ai", type=Path, help="folder of a clone of gram-ai/capsule-networks")
    p.add_argument("--batch-size", type=int, default=None, help="[64]")
    p.add_argument("--no-bf16", action="store_true", help="float32 rows only")
    args = p.parse_args(argv)
    _common.setup_threads(args)
    batch = args.batch_size or (4 if args.quick else 64)
    repeats = args.repeats or (1 if args.quick else 7)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 1, 28, 28, generator=g)
    labels = torch.randint(0, 10, (batch,), generator=g)
    makers: Dict[str, Callable] = {"capsedu": lambda: capsedu_step(images, labels)}
    if args.xifengguo:
        makers["XifengGuo/CapsNet-Pytorch"] = lambda: xifengguo_step(args.xifengguo, images, labels)
    if args.gram_ai:
        makers["gram-ai/capsule-networks"] = lambda: gramai_step(args.gram_ai, images, labels)
    precisions = ["float32"] + ([] if args.no_bf16 else ["bf16"])
    variants = {}
    with cuda_calls_stay_on_the_cpu():
        for name, make in makers.items():
            model, loss_fn = make()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            params = sum(p.numel() for p in model.parameters())
            for precision in precisions:
                def step(model=model, loss_fn=loss_fn, optimizer=optimizer, bf16=precision == "bf16"):
                    with autocast("cpu", enabled=bf16):
                        loss = loss_fn()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                variants[(name, precision)] = {"step": step, "parameters": params, "times": []}
        print(f"paper CapsNet training step, batch {batch}, {torch.get_num_threads()} threads; "
              f"{cpu_bf16().reason}", flush=True)
        for v in variants.values():  # warm-up: first calls allocate and pick kernels
            v["step"]()
        for _ in range(repeats):
            for v in variants.values():
                t0 = time.perf_counter()
                v["step"]()
                v["times"].append(time.perf_counter() - t0)
    rows = []
    for (name, precision), v in variants.items():
        median = statistics.median(v["times"])
        rows.append({"implementation": name, "precision": precision, "parameters": v["parameters"],
                     "step_median_s": median, "step_times_s": v["times"], "images_per_s": batch / median})
    peers = [r for r in rows if r["implementation"] != "capsedu"]
    for r in rows:
        print(f"  {r['implementation']:>26} {r['precision']:>7}: {1000 * r['step_median_s']:7.1f} ms "
              f"({r['images_per_s']:6.1f} img/s, {r['parameters']:,} parameters)")
    ratios = {}
    if peers:
        for precision in precisions:
            ours = next(r for r in rows if r["implementation"] == "capsedu" and r["precision"] == precision)
            fastest_fp32 = min((r for r in peers if r["precision"] == "float32"), key=lambda r: r["step_median_s"])
            fastest_same = min((r for r in peers if r["precision"] == precision), key=lambda r: r["step_median_s"])
            ratios[precision] = {
                "fastest_peer_float32": fastest_fp32["implementation"],
                "speedup_vs_fastest_peer_float32": fastest_fp32["step_median_s"] / ours["step_median_s"],
                "fastest_peer_same_precision": fastest_same["implementation"],
                "speedup_vs_fastest_peer_same_precision": fastest_same["step_median_s"] / ours["step_median_s"],
            }
            print(f"capsedu {precision}: x{ratios[precision]['speedup_vs_fastest_peer_float32']:.2f} the fastest "
                  f"peer in float32 ({fastest_fp32['implementation']}), "
                  f"x{ratios[precision]['speedup_vs_fastest_peer_same_precision']:.2f} the fastest peer in "
                  f"{precision}")
    machine = machine_info(torch.device("cpu"))
    payload = {"benchmark": "peers_train_step", "quick": args.quick, "machine": machine, "batch_size": batch,
               "repeats": repeats, "results": rows, "speedups": ratios,
               "peers": {"XifengGuo/CapsNet-Pytorch": str(args.xifengguo) if args.xifengguo else None,
                         "gram-ai/capsule-networks": str(args.gram_ai) if args.gram_ai else None}}
    return finish(f"peers_train_step_b{batch}_cpu{'_quick' if args.quick else ''}", payload, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
