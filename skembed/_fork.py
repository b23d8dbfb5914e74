"""Handles that belong to one process: rebuilt in a forked child, never shared with it.

A client that holds sockets (the SDK's keep-alive pool, a Redis connection pool) or a
lock survives ``os.fork``. A child that used its parent's client would send on its
parent's (or a sibling's) connections and read their answers as its own: an answer
that arrives late for one process is then taken by another, for another text. So each
process builds its own. The child must not close what it inherited either: closing a
TLS stream sends a close-notify on the parent's connection, and the SDK's client closes
its pool when it is garbage collected. Inherited handles are therefore set aside,
referenced and unclosed, for the child's whole life (:func:`keep_inherited`): a few
file descriptors, never a byte on the wire.

:class:`PerProcess` is the holder the backends use for their clients; the cache stores
keep their handles themselves and set the inherited ones aside here too. This module
imports nothing else of skembed.
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["PerProcess", "keep_inherited"]

_inherited = []
_holders = weakref.WeakSet()


def keep_inherited(*handles):
    """Keep ``handles`` inherited from the parent process referenced, unclosed, for good.

    Parameters
    ----------
    *handles : object
        Connections, clients, files opened by the parent.
    """
    _inherited.append(handles)


class PerProcess:
    """One lazily built handle per process (thread-safe, fork-safe).

    :meth:`get` returns the handle built in this process, building it on first use;
    after ``os.fork`` the child's first :meth:`get` builds a new one (an at-fork hook
    drops the inherited handle and lock at once, and the process id is checked on
    every call for forks that skip the hooks). Pickling or copying gives an empty
    holder.

    Examples
    --------
    >>> holder = PerProcess()
    >>> client = holder.get(lambda: object())
    >>> holder.get(lambda: object()) is client
    True
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._value = None
        self._pid = None
        _holders.add(self)

    def get(self, build):
        """This process's handle, made by calling ``build()`` if there is none yet."""
        with self._lock:
            if self._value is None or self._pid != os.getpid():
                self._set_aside()
                self._value = build()
                self._pid = os.getpid()
            return self._value

    def _set_aside(self):
        if self._value is not None and self._pid != os.getpid():
            keep_inherited(self._value)
        self._value = self._pid = None

    def _after_fork_in_child(self):
        # The parent's threads may have held the lock at fork time: it would never be
        # released in the child.
        self._lock = threading.Lock()
        self._set_aside()

    def __reduce__(self):
        return (PerProcess, ())

    def __copy__(self):
        return PerProcess()

    def __deepcopy__(self, memo):
        return PerProcess()


def _after_fork_in_child():
    for holder in list(_holders):
        holder._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
