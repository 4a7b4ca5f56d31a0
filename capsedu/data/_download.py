"""What the loaders that download through torchvision share: its progress output, shown or hidden."""
from __future__ import annotations

import contextlib
import io
from typing import Iterator

__all__ = ["torchvision_output"]


@contextlib.contextmanager
def torchvision_output(verbose: bool) -> Iterator[None]:
    """Let torchvision's download messages and progress bar through when ``verbose``, else swallow them."""
    if verbose:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
