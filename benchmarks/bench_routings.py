"""Seconds per forward + backward of every routing procedure in capsedu.routings, at MNIST shapes.

    nice -n 15 python benchmarks/bench_routings.py    # writes benchmarks/results/routings_cpu.json
    python benchmarks/bench_routings.py --quick       # tiny sizes, seconds

Two shapes of predictions ``u_hat (batch, n_in, 10, 16)``: the paper's CapsNet on MNIST (1152 primary
capsules) and Efficient-CapsNet (16 primary capsules). Each procedure routes with ``--iterations`` (3; the
non-iterative ones ignore it) and back-propagates a fixed random gradient into ``u_hat`` and its own
parameters; EM routing also gets random input activations. At the small shape, self-attention routing is
also timed with its ``n_in x n_in`` attention matrices built explicitly, the way the paper writes it (at
1152 children they would not fit in memory), to show what computing it through ``sum_k A[i, k] =
u_hat_i . sum_k u_hat_k`` saves. Two procedures are also timed in their readable form beside the fast path their
modules run: EM routing as ``em_routing``, the step-by-step Procedure 1 that ``em_routing_fast`` replaces, and
inverted attention as ``inverted_attention_routing`` (einsum), which ``inverted_attention_routing_fast``
replaces.
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
from typing import Any, Callable, Dict, List, Optional

import _common
from _common import finish, machine_info, pick_device, time_fn

import torch  # noqa: E402

from capsedu.routings import ROUTINGS, build_routing, squash_efficient  # noqa: E402
from capsedu.routings.base import capsule_from_presence  # noqa: E402
from capsedu.routings.em import em_routing  # noqa: E402
from capsedu.routings.inverted_attention import inverted_attention_routing  # noqa: E402

#: (label, number of input capsules)
SHAPES = (("capsnet-mnist", 1152), ("efficient-capsnet-mnist", 16))


def explicit_self_attention(u_hat: torch.Tensor) -> torch.Tensor:
    """Self-attention routing with the attention matrices ``A_j = U_j U_j^T / sqrt(d)`` built (zero prior)."""
    u = u_hat.transpose(1, 2)                                      # (batch, n_out, n_in, d)
    attention = u @ u.transpose(2, 3) / math.sqrt(u.shape[-1])     # (batch, n_out, n_in, n_in)
    c = torch.softmax(attention.sum(dim=-1), dim=1)                # over the parents
    return squash_efficient((c.unsqueeze(-1) * u).sum(dim=2))


def readable_inverted(routing, u_hat: torch.Tensor, iterations: int) -> torch.Tensor:
    """The inverted-attention module's output with its routing computed by the readable einsum version."""
    pose, _ = inverted_attention_routing(u_hat, iterations, routing._normalize)
    return capsule_from_presence(pose, torch.sigmoid(routing.score(pose).squeeze(-1)))


def methods(n_in: int, n_out: int, dim: int, device) -> Dict[str, Callable[..., torch.Tensor]]:
    found: Dict[str, Callable[..., torch.Tensor]] = {}
    for name in ROUTINGS:
        routing = build_routing(name, n_in, n_out, dim).to(device)
        found[name] = lambda u, a, r, routing=routing: routing(u, r, a)
        if name == "em":        # the module runs em_routing_fast; the readable Procedure 1 beside it
            found["em (readable)"] = lambda u, a, r, routing=routing: capsule_from_presence(
                *em_routing(u, a, routing.beta_u, routing.beta_a, r, routing.final_lambda)[:2])
        if name == "inverted-attention":   # the module runs inverted_attention_routing_fast; the einsum version
            found["inverted-attention (readable)"] = lambda u, a, r, routing=routing: readable_inverted(routing, u, r)
    if n_in <= 64:
        found["self-attention (explicit A)"] = lambda u, a, r: explicit_self_attention(u)
    return found


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--batch-size", type=int, default=None, help="examples per batch [128; --quick 4]")
    p.add_argument("--iterations", type=int, default=3, help="routing iterations of the iterative procedures [3]")
    p.add_argument("--note", default="", help="a sentence stored with the results (e.g. that the machine was shared)")
    args = p.parse_args(argv)
    _common.setup_threads(args)
    device = pick_device(args.device)
    batch = args.batch_size or (4 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 5)
    shapes = tuple((label, min(n_in, 72) if args.quick else n_in) for label, n_in in SHAPES)
    n_out, dim = 10, 16

    results = []
    for label, n_in in shapes:
        torch.manual_seed(0)
        u_hat = (0.05 * torch.randn(batch, n_in, n_out, dim, device=device)).requires_grad_()
        activations = torch.rand(batch, n_in, device=device)
        grad = torch.randn(batch, n_out, dim, device=device)
        print(f"{label}: u_hat {tuple(u_hat.shape)}, r = {args.iterations}, device {device}, "
              f"threads {torch.get_num_threads()}")
        for name, method in methods(n_in, n_out, dim, device).items():
            def step(method=method):
                method(u_hat, activations, args.iterations).backward(grad)
                u_hat.grad = None

            t = time_fn(step, device, warmup=1, repeats=repeats)
            results.append({"method": name, "shape_label": label, "shape": [batch, n_in, n_out, dim],
                            "iterations": args.iterations, "median_s": t["median_s"], "min_s": t["min_s"],
                            "max_s": t["max_s"], "times_s": t["times_s"]})
            print(f"  {name:>28}: {t['median_s'] * 1000:9.2f} ms forward+backward (median of {repeats})", flush=True)
        dynamic = next(r for r in results if r["shape_label"] == label and r["method"] == "dynamic")
        for row in results:
            if row["shape_label"] == label:
                row["time_vs_dynamic"] = row["median_s"] / dynamic["median_s"]
    payload = {"benchmark": "routings", "quick": args.quick, "machine": machine_info(device), "note": args.note,
               "command": shlex.join(["python", "benchmarks/bench_routings.py",
                                      *(argv if argv is not None else sys.argv[1:])]),
               "timing": "median wall-clock seconds of forward + backward, after one untimed call",
               "results": results}
    default = None if args.out else f"routings_{device.type}{'_quick' if args.quick else ''}"
    return finish(default or "routings", payload, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
