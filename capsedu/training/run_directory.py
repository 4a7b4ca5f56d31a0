"""The output directory of a training run: checked before any work, locked while in use.

Problems with ``--output`` are found before the first step, not at the first checkpoint an epoch
later: a path that is a file, a directory that cannot be written, another run already using it,
or an earlier run that would be overwritten without a word.

The lock is an ``fcntl`` lock on ``.lock`` inside the directory. The operating system releases it
when the process ends in any way (including ``kill -9``), so a crashed run never leaves a stale lock.
A write cut short by ``kill -9`` leaves a temporary file beside the checkpoint; the next run that
takes the lock removes it (no other run can be writing there then).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from .._io import TEMPORARY_SUFFIX

__all__ = ["RunDirectoryError", "RunDirectory", "CHECKPOINT_NAME", "HISTORY_NAME", "LOCK_NAME"]

CHECKPOINT_NAME = "last.pt"
HISTORY_NAME = "history.json"
LOCK_NAME = ".lock"


class RunDirectoryError(ValueError):
    """The output directory cannot be used: it is a file, unwritable, locked or holds another run."""


class RunDirectory:
    """``output/`` with ``last.pt``, ``history.json`` and a lock held between :meth:`acquire` and :meth:`release`.

    Args:
        path: the directory (created if missing).
    """

    def __init__(self, path: Union[str, os.PathLike]):
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).strip():
            raise RunDirectoryError(f"--output must name a directory, got {path!r}")
        self.path = Path(path)
        self._lock_file: Optional[int] = None

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def history(self) -> Path:
        return self.path / HISTORY_NAME

    def acquire(self) -> "RunDirectory":
        """Create the directory, check it is writable and lock it; one-line errors otherwise."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirectoryError(f"--output {self.path} is a file, not a directory; choose a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirectoryError(f"cannot write to --output {self.path}: {exc.strerror or exc}") from exc
        if not os.access(self.path, os.W_OK | os.X_OK):
            os.close(fd)
            raise RunDirectoryError(f"cannot write to --output {self.path}: permission denied")
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, run unlocked
            self._lock_file = fd
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirectoryError(f"another capsedu run (pid {holder}) is using {self.path}; wait for it to "
                                    f"finish or choose another --output") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_file = fd
        self._remove_stale_writes()
        return self

    def _remove_stale_writes(self) -> None:
        """Delete the temporary files of writes that a killed run never finished (see ``capsedu._io``)."""
        for name in (CHECKPOINT_NAME, HISTORY_NAME):
            for tmp in self.path.glob(f".{name}.*{TEMPORARY_SUFFIX}"):
                tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)  # closing the descriptor drops the flock
            self._lock_file = None

    def __enter__(self) -> "RunDirectory":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
