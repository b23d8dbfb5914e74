"""Ctrl-C at safe points only, while a job's worker threads run.

Python runs a signal's handler in the main thread between any two bytecodes, and the
default SIGINT handler raises ``KeyboardInterrupt`` there. Landing inside the few
bytecodes of ``threading.Condition.__enter__`` (after its lock is taken, before the
``with`` block is entered), the exception leaves the lock held by the main thread for
good. concurrent.futures' waits and results, ``Event.set``, a rate limiter's condition
and a thread pool's semaphore all go through such a lock; a worker that needs it next
then waits forever, and so does the interpreter's exit, which joins the workers: the
rare hang after a Ctrl-C that CI met once in about 270 runs (reproduced in-process,
``tests/test_interrupt_threads.py``).

:class:`DeferredInterrupts` records a SIGINT instead, and runs the handler it was meant
for (``KeyboardInterrupt`` by default, or the program's own) at the next
:meth:`~DeferredInterrupts.check`, which the job calls where it waits: a Ctrl-C then
takes effect within a tenth of a second, at a point where no lock is held.
"""

from __future__ import annotations

import signal
import threading

__all__ = ["CHECK_SECONDS", "DeferredInterrupts"]

#: How often a waiting job looks for a Ctrl-C: the longest it may be deferred while the
#: job waits (it is not looked for during a long step of the main thread itself, such
#: as counting a million texts' tokens).
CHECK_SECONDS = 0.1


class DeferredInterrupts:
    """Within the ``with`` block, a SIGINT is delivered only by :meth:`check`.

    Only in the main thread (the only one Python runs signal handlers in; elsewhere it
    changes nothing). On exit the previous handler is restored and a SIGINT still
    pending is delivered. Nested blocks chain: the inner one delivers to the outer.

    Examples
    --------
    >>> from skembed.backends._signals import DeferredInterrupts
    >>> with DeferredInterrupts() as interrupts:
    ...     interrupts.check()  # nothing arrived: returns at once
    """

    def __init__(self):
        self._previous = None
        self._pending = None
        self._active = False

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        if signal.getsignal(signal.SIGINT) is None:
            return self  # a handler set by C code, which could not be put back
        try:
            self._previous = signal.signal(signal.SIGINT, self._record)
        except ValueError:  # not the main interpreter's main thread
            return self
        self._active = True
        return self

    def _record(self, signum, frame):
        self._pending = frame

    def check(self):
        """Deliver a SIGINT that arrived since the last check: its handler runs here."""
        if self._pending is None:
            return
        frame, self._pending = self._pending, None
        previous = self._previous
        if callable(previous):
            previous(signal.SIGINT, frame)
        elif previous != signal.SIG_IGN:  # SIG_DFL: what Python's own handler does
            raise KeyboardInterrupt

    def __exit__(self, *exc_info):
        if self._active:
            self._active = False
            signal.signal(signal.SIGINT, self._previous)
            self.check()
        return False
