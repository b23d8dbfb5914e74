"""Progress bars of the backends: tqdm when asked for, nothing at all otherwise.

A disabled ``tqdm`` still takes tqdm's write lock when it is created, and that lock is a
multiprocessing lock shared by every process forked from the one that made it: a worker
killed while holding it (SIGKILL, the OOM killer) left its siblings and its parent
blocked in ``tqdm.__new__`` for ever (found by the random-kill claims test). So a bar
that is off is a stand-in that touches no lock.
"""

from __future__ import annotations

__all__ = ["progress_bar"]


class _NoBar:
    """What a disabled bar needs to offer: ``update`` and the context manager."""

    def update(self, n=1):
        return None

    def close(self):
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def progress_bar(total, enabled, desc, leave=True):
    """A tqdm bar counting texts, or a stand-in that does nothing when not ``enabled``.

    Parameters
    ----------
    total : int
        Texts to count.
    enabled : bool
        Whether to show a bar.
    desc : str
        The bar's label.
    leave : bool, default=True
        Keep the bar on screen when it closes.

    Returns
    -------
    tqdm.tqdm or object
        Usable as a context manager, with ``update(n)``.

    Examples
    --------
    >>> from skembed.backends._progress import progress_bar
    >>> with progress_bar(3, enabled=False, desc="Embedding") as bar:
    ...     bar.update(3)
    """
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    # disable=False explicitly: asked for, the bar shows even under $TQDM_DISABLE.
    return tqdm(total=total, unit="text", desc=desc, leave=leave, disable=False)
