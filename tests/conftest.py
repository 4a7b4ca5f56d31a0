"""Shared fixtures. Test mode makes the notebooks (run by nbval in kernels that inherit this
environment) use small data and few steps."""
import os

import pytest
import torch

os.environ.setdefault("CAPSEDU_TEST_MODE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    """A seeded generator so every test draws the same numbers on every run."""
    return torch.Generator().manual_seed(1234)
