"""Usage reports: what embedding calls sent, served from cache, and cost.

Every embedding call publishes its :class:`~skembed._embed.EmbeddingReport`; each
active :func:`track_usage` block listens (:func:`skembed._embed.report_listener`) and
adds it to its :class:`UsageReport`. This module sits above the job, which never
imports it. Nothing here imports scikit-learn.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, fields

from ._embed import report_listener
from ._spending import format_usd

__all__ = ["ModelUsage", "UsageReport", "track_usage"]


@dataclass(frozen=True)
class ModelUsage:
    """Totals of the embedding calls made with one model.

    Attributes
    ----------
    n_calls : int
        Embedding calls (one per ``transform``, more for some estimators).
    n_rows : int
        Texts asked for (blank rows, never sent, excluded).
    n_cache_hits : int
        Distinct texts served by the cache (free).
    n_sent : int
        Distinct texts sent to the service.
    n_requests : int
        HTTP requests made, retries included (0 for a local model).
    n_tokens : int
        Tokens sent in requests that were billed (or may have been: a lost answer).
    usd : float or None
        Their cost; ``None`` when the model's price is unknown.
    """

    n_calls: int = 0
    n_rows: int = 0
    n_cache_hits: int = 0
    n_sent: int = 0
    n_requests: int = 0
    n_tokens: int = 0
    usd: float | None = 0.0

    def __add__(self, other):
        usd = None if self.usd is None or other.usd is None else self.usd + other.usd
        totals = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name != "usd"
        }
        return ModelUsage(**totals, usd=usd)


_COLUMNS = ("n_calls", "n_rows", "n_cache_hits", "n_sent", "n_requests", "n_tokens", "usd")
_HEADERS = ("calls", "rows", "cache hits", "sent", "requests", "tokens", "cost")


class UsageReport:
    """Totals of the embedding calls made in this process while it was tracking.

    Made by :func:`track_usage`. Thread-safe; ``print(report)`` shows a table with a
    row per model and the totals.

    Attributes
    ----------
    by_model : dict of str to ModelUsage
        Totals per model (a snapshot).
    total : ModelUsage
        Totals over all models.

    Examples
    --------
    >>> from skembed import UsageReport
    >>> from skembed._usage import ModelUsage
    >>> report = UsageReport()
    >>> report.add("text-embedding-3-small", ModelUsage(n_calls=1, n_tokens=1200, usd=0.000024))
    >>> report.n_tokens, report.total.n_calls
    (1200, 1)
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._by_model = {}

    def add(self, model, usage):
        """Add one call's usage to the totals.

        Parameters
        ----------
        model : str
            The model the call used.
        usage : ModelUsage
            What the call did.
        """
        with self._lock:
            self._by_model[model] = self._by_model.get(model, ModelUsage()) + usage

    def _add_call(self, report):
        # The listener of a track_usage() block: one call's EmbeddingReport.
        usage = ModelUsage(
            n_calls=1,
            n_rows=report.n_rows,
            n_cache_hits=report.n_cache_hits,
            n_sent=report.n_embedded,
            n_requests=report.n_requests,
            n_tokens=report.n_tokens,
            usd=report.usd,
        )
        self.add(report.model, usage)

    @property
    def by_model(self):
        with self._lock:
            return dict(self._by_model)

    @property
    def total(self):
        total = ModelUsage()
        for usage in self.by_model.values():
            total = total + usage
        return total

    def __getattr__(self, name):
        # report.n_tokens, report.usd...: the totals, for the common one-model case.
        if name in _COLUMNS:
            return getattr(self.total, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self):
        total = self.total
        return (
            f"UsageReport(n_calls={total.n_calls}, n_requests={total.n_requests}, "
            f"n_tokens={total.n_tokens}, usd={total.usd!r}, models={sorted(self.by_model)})"
        )

    def __str__(self):
        rows = [(model, usage) for model, usage in sorted(self.by_model.items())]
        if len(rows) != 1:
            rows.append(("total", self.total))
        table = [("model", *_HEADERS)]
        for model, usage in rows:
            cells = [f"{getattr(usage, c):,}" for c in _COLUMNS[:-1]]
            table.append((model, *cells, format_usd(usage.usd)))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        return "\n".join(
            "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
            for row in table
        )


@contextlib.contextmanager
def track_usage():
    """Collect what every embedding call in this process sends and costs in a block.

    Calls from all threads count; worker processes (joblib's ``loky``, Dask) do not:
    their calls are logged at INFO on the ``"skembed"`` logger in their own process.

    Yields
    ------
    UsageReport
        Filled as calls end (also calls that failed: what they sent was paid for).

    Examples
    --------
    >>> import skembed
    >>> with skembed.track_usage() as usage:
    ...     pass  # embedding calls
    >>> usage.n_tokens, usage.usd
    (0, 0.0)
    """
    report = UsageReport()
    with report_listener(report._add_call):
        yield report
