"""Loaded by pytest for every run from the repository (tests/ and the book/ notebooks alike).

Test mode makes the chapters, executed by nbval in kernels that inherit this environment,
use small data and few training steps (see capsedu.teaching.settings)."""
import os

os.environ.setdefault("CAPSEDU_TEST_MODE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
