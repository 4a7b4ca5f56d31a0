"""Shared helpers for the benchmark scripts: timing, memory accounting, machine description, JSON output.

The scripts are run as ``python benchmarks/bench_*.py`` from a fresh checkout (no install needed):
importing this module puts the repository root on ``sys.path``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> Dict[str, Any]:
    """What the numbers were measured on (stored in every results file)."""
    info: Dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "hostname": platform.node(),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    from capsedu.fast import cpu_bf16

    support = cpu_bf16()
    info["cpu_bf16"] = {"native": support.native, "features": support.features, "amp_auto": support.auto}
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2 ** 30, 1)
        info["cuda_version"] = torch.version.cuda
    return info


def add_common_args(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (smoke run, seconds)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu', 'cuda', ...")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; --quick uses 1, which is robust "
                             "on a busy machine)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (the median is reported)")
    parser.add_argument("--out", default=None, help="JSON output path (default: benchmarks/results/<name>.json)")


def setup_threads(args) -> None:
    threads = args.threads if args.threads is not None else (1 if args.quick else None)
    if threads is not None:
        torch.set_num_threads(threads)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], Any], device: torch.device, *, warmup: int = 1, repeats: int = 5) -> Dict[str, Any]:
    """Median (and min/max) wall-clock seconds of ``fn()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: List[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats,
            "times_s": times}


class SavedTensorBytes:
    """Bytes of the tensors autograd keeps for the backward pass (``saved_tensors_hooks``).

    Exact and device independent: every tensor packed for backward is counted once per distinct
    storage. This is the memory a training step holds between forward and backward (activation
    memory), which is what differs between routing formulations; the transient workspace of the
    kernels themselves is not included (measure that with ``torch.cuda.max_memory_allocated``).
    """

    def __init__(self) -> None:
        self.bytes = 0
        self._seen: set = set()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
        except (RuntimeError, NotImplementedError):
            key = (id(t), t.numel() * t.element_size())
        if key not in self._seen and key[0] != 0:
            self._seen.add(key)
            self.bytes += key[1]
        return t

    @contextlib.contextmanager
    def __call__(self):
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield self


def saved_bytes(forward: Callable[[], Any]) -> int:
    """Saved-for-backward bytes of one call of ``forward`` (the result is dropped)."""
    counter = SavedTensorBytes()
    with counter():
        out = forward()
    del out
    return counter.bytes


class _PeakTensorMemory:
    """Peak bytes of tensor storages created while active and still alive (any device).

    A ``TorchDispatchMode`` sees every ATen call, including those of the backward pass (which
    runs on the calling thread for CPU tensors); each new storage is remembered with a weak
    reference (not the outputs of view and in-place ops: they share an existing storage, often
    one made before the call) and the live total is re-added after every call. Allocator slack and kernel
    scratch space are not seen; on CUDA, ``torch.cuda.max_memory_allocated`` is used instead.
    """

    def __init__(self) -> None:
        from torch.multiprocessing.reductions import StorageWeakRef
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self
        self.live: Dict[int, Any] = {}
        self.current = self.peak = 0

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                # views and in-place ops return (aliases of) their inputs: no new memory, and the
                # input may predate the call (counting a view of u_hat would add u_hat itself)
                aliases = any(r.alias_info is not None for r in func._schema.returns)
                for t in () if aliases else torch.utils._pytree.tree_leaves(out):
                    if isinstance(t, torch.Tensor):
                        st = t.untyped_storage()
                        key = st.data_ptr()
                        if key and key not in tracker.live:
                            tracker.live[key] = (StorageWeakRef(st), st.nbytes())
                tracker.current = 0
                for key in list(tracker.live):
                    ref, nbytes = tracker.live[key]
                    if ref.expired():
                        del tracker.live[key]
                    else:
                        tracker.current += nbytes
                tracker.peak = max(tracker.peak, tracker.current)
                return out

        self.mode = Mode()


def peak_memory(fn: Callable[[], Any], device: torch.device) -> Optional[int]:
    """Peak memory of the tensors ``fn`` allocates (bytes above what was allocated before).

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: live tensor storages created by ``fn``,
    tracked op by op (see :class:`_PeakTensorMemory`), which is exact for tensors and ignores
    allocator caching.
    """
    if device.type != "cuda":
        tracker = _PeakTensorMemory()
        with tracker.mode:
            fn()
        return tracker.peak
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - before


def write_results(name: str, payload: Dict[str, Any], out: Optional[str] = None) -> Path:
    """Write ``payload`` as JSON to ``out`` (default ``benchmarks/results/<name>.json``) and return the path."""
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return path


def finish(name: str, payload: Dict[str, Any], out: Optional[str] = None) -> Dict[str, Any]:
    """Write the results (see :func:`write_results`), say where, and return ``payload`` with its ``path``."""
    path = write_results(name, payload, out)
    print(f"wrote {path}")
    payload["path"] = str(path)
    return payload


def fmt_mib(n: Optional[float]) -> str:
    return "-" if n is None else f"{n / 2 ** 20:.1f} MiB"
