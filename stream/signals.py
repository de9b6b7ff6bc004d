"""SIGTERM and SIGHUP end a `profilestream` command the way Ctrl-C does.

Python's default for both is to die on the spot, skipping every `finally`: a demo whose terminal
was closed, or a bench run stopped with `kill`, left its worker and the broker it had started
running. With `stop_like_ctrl_c()` in place, either signal raises `Stopped` (a KeyboardInterrupt)
in the main thread, so the command cleans up as after Ctrl-C and then exits with 128 + the
signal's number, as a shell reports a process killed by it. The `worker` command keeps Faust's
own handlers (a graceful stop on SIGTERM) and does not use this.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["Stopped", "stop_like_ctrl_c"]

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """A stop by SIGTERM or SIGHUP; `exit_status` is 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_status = 128 + signum


def _handler(signum: int, frame: Any) -> None:
    for sig in _SIGNALS:  # one stop at a time: a second signal must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    if signum == getattr(signal, "SIGHUP", None):
        # The terminal is gone: printing to it would raise EIO in the middle of the clean-up.
        sys.stdout = sys.stderr = open(os.devnull, "w")
    raise Stopped(signum)


@contextmanager
def stop_like_ctrl_c() -> Iterator[None]:
    """Within the block (main thread only), SIGTERM and SIGHUP raise `Stopped`; the handlers
    that were in place before come back after it."""
    before = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    for sig in _SIGNALS:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        for sig, h in before.items():
            signal.signal(sig, h if h is not None else signal.SIG_DFL)
