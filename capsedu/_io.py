"""Atomic file writes, shared by checkpoints, the history file and the shipped data subset."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

#: the ending of the temporary file a write goes to before it is renamed: ``.NAME.<random>.tmp``
TEMPORARY_SUFFIX = ".tmp"


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    A crash or Ctrl-C mid-write leaves the previous file intact and no temporary file behind (only
    ``kill -9`` can leave one, ``.NAME.<random>.tmp``; :class:`~capsedu.training.RunDirectory` removes those).
    The result gets the user's usual permissions (``mkstemp`` alone would make it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
