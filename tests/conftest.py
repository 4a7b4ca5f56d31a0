"""Shared fixtures (test mode and the plotting backend are set in the top-level conftest.py)."""
import pytest
import torch


@pytest.fixture
def rng():
    """A seeded generator so every test draws the same numbers on every run."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="module")
def one_thread():
    """Run a module on one CPU thread: for tiny tensors a second intra-op thread costs more than it
    saves, far more on a busy shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
