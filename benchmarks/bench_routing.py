"""Routing forward + backward: capsedu.dynamic_routing against the usual formulations.

    python benchmarks/bench_routing.py            # u_hat (128, 1152, 10, 16), r = 1, 3, 5
    python benchmarks/bench_routing.py --quick    # tiny sizes, seconds

Methods (all compute Procedure 1 of Sabour et al. (2017) with per-example logits b):

* ``capsedu``            ``capsedu.dynamic_routing`` (``capsedu.routing_autograd``: hand-written backward)
* ``capsedu-autograd``   capsedu's layout (batch, n_out, n_in, d) differentiated by plain autograd
* ``broadcast``          ``(c.unsqueeze(-1) * u_hat).sum(1)`` / ``(u_hat * v.unsqueeze(1)).sum(-1)``,
                         b of shape (batch, n_in, n_out): the common formulation
* ``einsum``             the same contractions as ``torch.einsum`` (as in the fastest public
                         reimplementation we know of)
* ``literal``            loops over examples, i and j; timed on a few examples and extrapolated
                         to the full batch (labelled ``extrapolated``)

Also times ``DigitCaps.predictions`` (Eq. 2) as bmm (capsedu), einsum and broadcast matmul.
Memory: CUDA ``max_memory_allocated``; CPU: peak live tensor bytes tracked op by op (exact
for tensors, ignores allocator caching), plus the bytes autograd saves for backward.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional

import _common
from _common import fmt_mib, machine_info, peak_memory, pick_device, saved_bytes, time_fn, finish

import torch  # noqa: E402

from capsedu import dynamic_routing  # noqa: E402
from capsedu.routing import _route  # noqa: E402
from reference import broadcast_routing, einsum_routing, literal_routing  # noqa: E402


def routing_methods():
    return {
        "capsedu": lambda u, r: dynamic_routing(u, r),
        "capsedu-autograd": lambda u, r: _route(u, r, "all")[0],
        "broadcast": lambda u, r: broadcast_routing(u, r),
        "einsum": lambda u, r: einsum_routing(u, r),
    }


def _step(method, u_hat, grad, r):
    def run():
        v = method(u_hat, r)
        v.backward(grad)
        u_hat.grad = None
    return run


def bench_predictions(batch: int, n_in: int, n_out: int, d_out: int, d_in: int, device, repeats: int) -> List[Dict]:
    from capsedu.layers import DigitCaps

    layer = DigitCaps(n_in, d_in, n_out, d_out).to(device)
    u = torch.randn(batch, n_in, d_in, device=device).requires_grad_()
    w = layer.weight  # (n_in, n_out, d_out, d_in)
    ways = {
        "bmm (capsedu)": lambda: layer.predictions(u),
        "einsum": lambda: torch.einsum("ijde,bie->bijd", w, u),
        "broadcast matmul": lambda: (w.unsqueeze(0) @ u[:, :, None, :, None]).squeeze(-1),
    }
    ref = ways["bmm (capsedu)"]().detach()
    rows = []
    for name, fn in ways.items():
        g = torch.randn_like(ref)

        def run(fn=fn, g=g):
            fn().backward(g)
            u.grad = None
            w.grad = None
        t = time_fn(run, device, warmup=1, repeats=repeats)
        rows.append({"method": name, "shape": [batch, n_in, n_out, d_out], "median_s": t["median_s"],
                     "min_s": t["min_s"], "times_s": t["times_s"], "peak_bytes": peak_memory(run, device),
                     "max_abs_diff_vs_capsedu": float((fn().detach() - ref).abs().max())})
    return rows


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_args(p)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--iterations", type=int, nargs="+", default=[1, 3, 5])
    p.add_argument("--literal-examples", type=int, default=None,
                   help="examples timed with the literal loop (then extrapolated to the batch)")
    p.add_argument("--no-literal", action="store_true")
    args = p.parse_args(argv)
    _common.setup_threads(args)

    device = pick_device(args.device)
    if args.quick:
        batch, n_in, n_out, d = args.batch_size or 4, 72, 10, 16
        repeats, literal_examples = args.repeats or 1, args.literal_examples or 1
        literal_n_in = 4
    else:
        batch, n_in, n_out, d = args.batch_size or 128, 1152, 10, 16
        repeats, literal_examples = args.repeats or 5, args.literal_examples or 1
        literal_n_in = 72  # 1/16 of the input capsules: the loop costs the same per capsule
    torch.manual_seed(0)
    u_hat = (0.05 * torch.randn(batch, n_in, n_out, d, device=device)).requires_grad_()
    grad = torch.randn(batch, n_out, d, device=device)
    shape = [batch, n_in, n_out, d]
    print(f"routing forward+backward, u_hat {tuple(shape)}, device {device}, threads {torch.get_num_threads()}")

    results = []
    for r in args.iterations:
        base = None
        with torch.no_grad():
            ref_v = broadcast_routing(u_hat, r)
        for name, method in routing_methods().items():
            run = _step(method, u_hat, grad, r)
            t = time_fn(run, device, warmup=1, repeats=repeats)
            with torch.no_grad():
                diff = float((method(u_hat, r) - ref_v).abs().max())
            row = {"method": name, "iterations": r, "shape": shape, "median_s": t["median_s"], "min_s": t["min_s"],
                   "max_s": t["max_s"], "times_s": t["times_s"], "peak_bytes": peak_memory(run, device),
                   "saved_bytes": saved_bytes(lambda: method(u_hat, r)), "max_abs_diff_vs_broadcast": diff,
                   "measured": "full batch"}
            results.append(row)
            if name == "broadcast":
                base = row
        for row in results:
            if row["iterations"] == r and base is not None:
                row["speedup_vs_broadcast"] = base["median_s"] / row["median_s"]
                if row["peak_bytes"] and base["peak_bytes"]:
                    row["peak_memory_vs_broadcast"] = row["peak_bytes"] / base["peak_bytes"]
        if not args.no_literal:
            # the literal loop: a few examples, at the full capsule counts unless --quick
            u_small = u_hat.detach()[:literal_examples, :literal_n_in].clone().requires_grad_()
            g_small = grad[:literal_examples]
            lit = lambda u, rr: literal_routing(u, rr)  # noqa: E731
            t = time_fn(_step(lit, u_small, g_small, r), device, warmup=0, repeats=1)
            scale = (batch / literal_examples) * (n_in / literal_n_in)
            with torch.no_grad():
                diff = float((literal_routing(u_small, r) - dynamic_routing(u_small, r)).abs().max()) if args.quick \
                    else None
            results.append({"method": "literal", "iterations": r, "shape": shape,
                            "measured_shape": [literal_examples, literal_n_in, n_out, d],
                            "measured_s": t["median_s"], "median_s": t["median_s"] * scale,
                            "measured": f"extrapolated x{scale:g} from {literal_examples} example(s) x {literal_n_in} "
                                        f"input capsules (1 timed run)",
                            "max_abs_diff_vs_capsedu": diff,
                            "speedup_vs_broadcast": (base["median_s"] / (t["median_s"] * scale)) if base else None})
        for row in results:
            if row["iterations"] == r:
                extra = f"  ({row['measured']})" if row["method"] == "literal" else ""
                print(f"  r={r} {row['method']:>17}: {row['median_s'] * 1000:9.1f} ms  "
                      f"peak {fmt_mib(row.get('peak_bytes'))}  saved {fmt_mib(row.get('saved_bytes'))}  "
                      f"x{row.get('speedup_vs_broadcast') or 0:.2f} vs broadcast{extra}", flush=True)

    pred = bench_predictions(batch, n_in, n_out, d, 8, device, repeats)
    for row in pred:
        print(f"  predictions {row['method']:>17}: {row['median_s'] * 1000:8.1f} ms fwd+bwd, "
              f"peak {fmt_mib(row['peak_bytes'])}")
    payload = {"benchmark": "routing", "quick": args.quick, "machine": machine_info(device),
               "memory_method": "torch.cuda.max_memory_allocated" if device.type == "cuda"
               else "peak live tensor bytes (TorchDispatchMode + storage weakrefs)",
               "shape": shape, "results": results, "predictions": pred}
    default = None if args.out else f"routing_{device.type}{'_quick' if args.quick else ''}"
    return finish(default or "routing", payload, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
