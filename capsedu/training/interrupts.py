"""Ctrl-C and ``kill`` that never land in the middle of an optimizer update.

A KeyboardInterrupt raised by Python's default SIGINT handler can arrive anywhere, e.g. between
two parameter tensors inside ``optimizer.step()``. A checkpoint written then holds a half-applied
update, and a resumed run drifts away from an uninterrupted one. :class:`DeferredInterrupt`
instead records SIGINT and SIGTERM and lets the training loop stop at its next safe point (after a
complete step, or between test batches), where the state is consistent and can be saved.

A second Ctrl-C while the first is pending stops at once, without saving (the last checkpoint,
written atomically, is still intact).
"""
from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Dict, Optional

__all__ = ["DeferredInterrupt", "SafeStop"]

_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)


class SafeStop(KeyboardInterrupt):
    """Raised at a safe point after SIGINT/SIGTERM: the training state is consistent and may be saved.

    A plain ``KeyboardInterrupt`` (a second Ctrl-C, or one outside :class:`DeferredInterrupt`) may
    have landed anywhere and must not be checkpointed.
    """


class DeferredInterrupt:
    """Context manager that turns SIGINT/SIGTERM into a flag checked at safe points.

    ``with DeferredInterrupt() as stop: ... stop.check()`` raises :class:`SafeStop` at the
    ``check()`` that follows a signal. Outside the main thread (where handlers cannot be
    installed) it does nothing and signals behave as usual.

    Args:
        notify: called with one line of text when the first signal arrives (default: stderr).
    """

    def __init__(self, notify: Optional[Callable[[str], None]] = None):
        self.notify = notify or (lambda text: print(text, file=sys.stderr, flush=True))
        self.requested: Optional[str] = None
        self._previous: Dict[int, Any] = {}

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user wants out now
        self.requested = name
        self.notify(f"{name} received: stopping after the current step and saving a checkpoint "
                    f"(Ctrl-C again to stop at once without saving)")

    def check(self) -> None:
        """Raise :class:`SafeStop` if a signal arrived since the last check."""
        if self.requested is not None:
            raise SafeStop(self.requested)

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
