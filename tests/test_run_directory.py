"""The run directory: an empty --output is refused, and a write that kill -9 cut short leaves nothing behind."""
from __future__ import annotations

import pytest

from capsedu.training.checkpoint import save_checkpoint
from capsedu.training.run_directory import RunDirectory, RunDirectoryError


@pytest.mark.parametrize("path", ["", "   ", None])
def test_an_empty_output_is_refused_instead_of_writing_into_the_current_directory(path):
    with pytest.raises(RunDirectoryError, match="--output must name a directory"):
        RunDirectory(path)


def test_the_next_run_removes_what_a_killed_write_left_and_nothing_else(tmp_path):
    with RunDirectory(tmp_path) as run:
        save_checkpoint({"model_class": "capsnet", "model_config": {}, "model_state": {}}, run.checkpoint)
    left = [tmp_path / ".last.pt.k3j9x_2q.tmp", tmp_path / ".history.json.abc123.tmp"]  # what mkstemp names
    for path in left:
        path.write_bytes(b"\0" * 1024)
    mine = tmp_path / "notes.tmp"
    mine.write_text("a user's own file")
    with RunDirectory(tmp_path):
        assert not any(path.exists() for path in left)
    assert mine.exists() and (tmp_path / "last.pt").exists()
