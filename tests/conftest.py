"""Shared fixtures (test mode and the plotting backend are set in the top-level conftest.py)."""
import random

import numpy as np
import pytest
import torch


def _torch_settings():
    """torch's process-wide settings that a test could change and the next test would inherit."""
    return {
        "threads": torch.get_num_threads(),
        "default dtype": torch.get_default_dtype(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.deterministic": torch.backends.cudnn.deterministic,
        "float32 matmul precision": torch.get_float32_matmul_precision(),
        "grad enabled": torch.is_grad_enabled(),
        "cpu autocast": torch.is_autocast_enabled("cpu"),
        "anomaly detection": torch.is_anomaly_enabled(),
    }


def _restore(settings):
    torch.set_num_threads(settings["threads"])
    torch.set_default_dtype(settings["default dtype"])
    torch.use_deterministic_algorithms(settings["deterministic algorithms"])
    torch.backends.cudnn.benchmark = settings["cudnn.benchmark"]
    torch.backends.cudnn.deterministic = settings["cudnn.deterministic"]
    torch.set_float32_matmul_precision(settings["float32 matmul precision"])
    torch.set_grad_enabled(settings["grad enabled"])
    torch.set_anomaly_enabled(settings["anomaly detection"])


@pytest.fixture(autouse=True)
def _no_leaked_global_state(request):
    """Every test starts from the same random state and must leave torch's settings as it found them.

    The random generators (torch, numpy, ``random``) are restored silently: seeding them is how a test
    makes itself repeatable, and restoring them means no test sees numbers that depend on which tests ran
    before it. A changed setting (threads, default dtype, deterministic flags, autocast, ...) is a leak
    that made the suite pass or fail by test order (threads changed the order of float sums), so it
    fails the test that left it, after restoring it for the next one.
    """
    before = _torch_settings()
    rng = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    yield
    after = _torch_settings()
    torch.set_rng_state(rng[0])
    np.random.set_state(rng[1])
    random.setstate(rng[2])
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    if changed:
        _restore(before)
        pytest.fail(f"{request.node.nodeid} left torch's global state changed: "
                    + "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()), pytrace=False)


@pytest.fixture
def rng():
    """A seeded generator so every test draws the same numbers on every run."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """Run a test on one CPU thread: for tiny tensors a second intra-op thread costs more than it
    saves, far more on a busy shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
