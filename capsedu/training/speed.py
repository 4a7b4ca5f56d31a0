"""Where and how fast training runs: the device, and the speed options for training and inference, with safe automatic defaults.

* :func:`optimize` ``(model, compile=..., channels_last=...)``: NHWC convolutions and/or
  ``torch.compile``, both optional; a failed compile warns once and the model runs eagerly.
* :func:`autocast` ``(device, enabled)``: bf16 autocast on CUDA and on the CPU (routing and squash
  stay in float32, see :mod:`capsedu.routing`).
* :func:`cpu_bf16` says whether this CPU has native bf16 arithmetic and how it knows.
* :func:`resolve_amp`, :func:`resolve_channels_last`, :func:`resolve_compile`: what ``"auto"``
  means on a device.

What was measured (``benchmarks/README.md``): on the CPU the routing's hand-written backward
pass and channels_last convolutions are the big wins; compile is slow to build there; bf16 autocast
pays on CPUs with native bf16 units (AVX-512 BF16 or AMX) and costs on CPUs without them. So
``"auto"`` means: channels_last everywhere, compile on CUDA only, bf16 autocast on CUDA and on x86
CPUs with native bf16.
"""
from __future__ import annotations

import contextlib
import functools
import platform
import shutil
import subprocess
import warnings
from typing import Any, Callable, NamedTuple, Union

import torch
import torch.nn as nn

__all__ = ["select_device", "optimize", "autocast", "cpu_bf16", "CpuBf16", "resolve_amp", "resolve_channels_last",
           "resolve_compile", "compile_available", "is_compiled"]

Auto = Union[bool, str]
_warned: set = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _device_of(model_or_device: Any) -> torch.device:
    if isinstance(model_or_device, nn.Module):
        p = next(model_or_device.parameters(), None)
        return p.device if p is not None else torch.device("cpu")
    return torch.device(model_or_device if model_or_device is not None else "cpu")


def _check_auto(name: str, value: Auto) -> None:
    if value != "auto" and not isinstance(value, bool):
        raise ValueError(f"{name} must be True, False or 'auto', got {value!r}")


class CpuBf16(NamedTuple):
    """Whether this CPU computes bf16 natively, which instructions say so, and whether ``amp="auto"`` uses it."""

    native: bool      # AVX-512 BF16 or AMX-BF16 (x86), the BF16 extension (Arm)
    features: str     # what was found, e.g. "avx512_bf16, amx_bf16", or "none"
    auto: bool        # native and measured to pay: x86 only (no Arm CPU has been measured)
    reason: str       # one line for logs and benchmark records


def _cpu_flags() -> set:
    """The CPU's feature flags as the operating system lists them (Linux ``/proc/cpuinfo``; macOS ``sysctl``)."""
    flags: set = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
            if out == "1":
                flags.add("bf16")
        except (OSError, subprocess.SubprocessError):
            pass
    return flags


@functools.lru_cache(maxsize=None)
def cpu_bf16() -> CpuBf16:
    """Detect native bf16 arithmetic from the CPU's own feature flags (never from its vendor or model name).

    x86: AVX-512 BF16 (``avx512_bf16``, e.g. AMD Zen 4, Intel Cooper Lake) or AMX (``amx_bf16``, Intel Sapphire
    Rapids and later), as torch's own CPU checks or the kernel's flag list report them. Arm: the ``bf16`` feature.
    """
    found = []
    checks = (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_bf16", "_is_amx_tile_supported"))
    flags = _cpu_flags()
    for flag, torch_check in checks:
        check = getattr(torch.cpu, torch_check, None)
        try:
            present = bool(check()) if check is not None else flag in flags
        except Exception:  # pragma: no cover - a torch build without the check
            present = flag in flags
        if present or flag in flags:
            found.append(flag)
    machine = platform.machine().lower()
    is_x86 = machine in ("x86_64", "amd64", "i386", "i686")
    if not is_x86 and "bf16" in flags:
        found.append("bf16")
    native = bool(found)
    auto = native and is_x86
    if auto:
        reason = f"bf16 autocast on: this CPU has native bf16 ({', '.join(found)})"
    elif native:
        reason = (f"bf16 autocast off by default: this {machine} CPU has native bf16 ({', '.join(found)}), "
                  f"but its speed has not been measured; --amp turns it on")
    else:
        reason = "bf16 autocast off: this CPU has no native bf16 units (AVX-512 BF16 or AMX), so it would be slower"
    return CpuBf16(native, ", ".join(found) or "none", auto, reason)


def resolve_amp(value: Auto, device: Any) -> bool:
    """Whether to train under bf16 autocast: ``"auto"`` means on CUDA devices that support bf16 and on CPUs
    with native bf16 (:func:`cpu_bf16`); off elsewhere.

    ``True`` is honoured on any CPU, with a warning where it has no native bf16 (emulated bf16 is slower);
    on another device without bf16 it warns and returns False.
    """
    _check_auto("amp", value)
    device = _device_of(device)
    if device.type == "cpu":
        support = cpu_bf16()
        if value == "auto":
            return support.auto
        if value and not support.native:
            _warn_once("amp-cpu", f"--amp: {support.reason}; using it anyway, as asked")
        return bool(value)
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if value == "auto":
        return cuda_bf16
    if value and not cuda_bf16:
        _warn_once(f"amp-{device.type}", f"--amp: bf16 autocast needs a CUDA GPU with bf16 support or a CPU; "
                                         f"running in float32 on {device}")
        return False
    return bool(value)


def resolve_channels_last(value: Auto, device: Any) -> bool:
    """``"auto"``: NHWC everywhere. On CUDA tensor-core convolutions prefer it; on the CPU it made
    a paper-CapsNet training step 1.7x faster and a small one 1.1x (``benchmarks/README.md``)."""
    _check_auto("channels_last", value)
    if value == "auto":
        return True
    return bool(value)


def compile_available(device: Any = "cpu") -> bool:
    """Whether ``torch.compile`` can be expected to work here (inductor needs a C++ compiler on CPU)."""
    if not hasattr(torch, "compile"):
        return False
    try:
        from torch import _dynamo  # noqa: F401  (``import torch._dynamo`` here would make ``torch`` a local name)
    except Exception:  # pragma: no cover - broken installs
        return False
    if _device_of(device).type == "cpu" and not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        return False
    return True


def resolve_compile(value: Auto, device: Any) -> bool:
    """``"auto"``: compile on CUDA when available; on the CPU compile time outweighs the gain."""
    _check_auto("compile", value)
    device = _device_of(device)
    if value == "auto":
        return device.type == "cuda" and compile_available(device)
    if value and not compile_available(device):
        _warn_once("compile-unavailable", "torch.compile is unavailable here; running eagerly")
        return False
    return bool(value)


def autocast(device: Any, enabled: bool = True):
    """bf16 autocast on CUDA or the CPU when ``enabled``; otherwise a context that does nothing.

    Convolutions and matrix products run in bf16; :mod:`capsedu.routing` and :func:`capsedu.squash` cast
    their inputs back to float32, so the couplings' softmax (eq. 3) and squash (eq. 1) keep full precision.
    """
    device = _device_of(device)
    if enabled and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _GuardedForward:
    """``model.forward`` replaced by a compiled version that falls back to eager on failure."""

    def __init__(self, eager: Callable, **compile_kwargs: Any) -> None:
        self.eager = eager
        self.compiled = torch.compile(eager, **compile_kwargs)
        self.failed = False
        self.__wrapped__ = eager
        functools.update_wrapper(self, eager)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # compile errors surface on the first call
                self.failed = True
                _warn_once("compile-failed", f"torch.compile failed ({type(exc).__name__}: "
                                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                                             f"running eagerly")
        return self.eager(*args, **kwargs)


def is_compiled(model: nn.Module) -> bool:
    """True if :func:`optimize` installed a compiled forward (that has not fallen back to eager)."""
    fwd = model.__dict__.get("forward")
    return isinstance(fwd, _GuardedForward) and not fwd.failed


def optimize(model: nn.Module, *, compile: Auto = False, channels_last: Auto = "auto",
             **compile_kwargs: Any) -> nn.Module:
    """Apply the speed options to ``model`` in place and return it (same parameters, same
    ``state_dict`` keys, same results up to float rounding).

    Args:
        compile: ``torch.compile`` the forward pass (``True``/``False``/``"auto"``: on CUDA only).
            If compiling fails (no compiler, unsupported Python, a graph break error) a warning is
            printed once and the model runs eagerly.
        channels_last: store convolution weights and feed images in NHWC (``"auto"``: on).
        compile_kwargs: passed to ``torch.compile`` (e.g. ``mode="max-autotune"``).

    Call it after moving the model to its device.
    """
    device = _device_of(model)
    if resolve_channels_last(channels_last, device):
        model.to(memory_format=torch.channels_last)
        if hasattr(model, "memory_format"):
            model.memory_format = torch.channels_last
    if resolve_compile(compile, device) and not is_compiled(model):
        model.__dict__.pop("forward", None)
        model.forward = _GuardedForward(model.forward, **compile_kwargs)
    return model


def select_device(name: Any = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` as named."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda:0', got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {name!r} requested but MPS is not available on this machine")
    elif device.type != "cpu":
        raise ValueError(f"device type {device.type!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


