"""Shared fixtures (test mode and the plotting backend are set in the top-level conftest.py)."""
import pytest
import torch


@pytest.fixture
def rng():
    """A seeded generator so every test draws the same numbers on every run."""
    return torch.Generator().manual_seed(1234)
