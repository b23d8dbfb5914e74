"""What a job will cost before it runs.

Tokens are counted with the model's tiktoken encoding on exactly the inputs a
backend would send (distinct texts the cache does not hold, truncated or chunked by
the ``long_input`` policy), so an estimate equals what the API bills for a job whose
requests all succeed. Prices come from the backend (``usd_per_million_tokens``: the
registry's list price, an override, or half of it for the Batch API).

The limits that stop a job from costing more live in :mod:`skembed._spending`; they
are checked against the same count. This module sits above the job (it asks
:mod:`skembed._embed` which texts the cache holds); the job never imports it.

Nothing here imports scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._embed import _deduplicate, _name_user_rows, cached_mask
from ._spending import format_usd, model_name, usd_for_tokens
from .backends._base import EmbeddingError

__all__ = ["CostEstimate", "estimate_cost"]


@dataclass(frozen=True)
class CostEstimate:
    """What embedding a set of texts would send and cost, given the current cache.

    Returned by :meth:`OpenAIEmbeddingTransformer.estimate_cost`.

    Attributes
    ----------
    model : str
        Model the texts would be embedded with.
    n_texts : int
        Rows given (blank rows included).
    n_unique : int
        Distinct texts to embed (blank rows are never sent).
    n_cached : int
        Distinct texts the cache already holds (free).
    n_tokens : int
        Tokens that would be sent: those of the distinct uncached texts, after the
        ``long_input`` policy.
    usd : float or None
        ``n_tokens`` at ``usd_per_million_tokens``; ``None`` when the price is unknown.
    usd_per_million_tokens : float or None
        Price used.

    Examples
    --------
    >>> estimate = CostEstimate("text-embedding-3-small", 3, 2, 1, 1000, 0.00002, 0.02)
    >>> estimate.n_to_send
    1
    >>> print(estimate)
    text-embedding-3-small: 3 texts, 2 distinct, 1 cached; 1 to send, 1,000 tokens, $0.00002
    """

    model: str
    n_texts: int
    n_unique: int
    n_cached: int
    n_tokens: int
    usd: float | None
    usd_per_million_tokens: float | None = None

    @property
    def n_to_send(self):
        """Distinct texts that would be sent."""
        return self.n_unique - self.n_cached

    def __str__(self):
        return (
            f"{self.model}: {self.n_texts:,} texts, {self.n_unique:,} distinct, "
            f"{self.n_cached:,} cached; {self.n_to_send:,} to send, {self.n_tokens:,} tokens, "
            f"{format_usd(self.usd)}"
        )


def estimate_cost(texts, backend, cache, *, n_texts=None, rows=None, describe=None):
    """Estimate embedding ``texts`` with ``backend``, without sending anything.

    Parameters
    ----------
    texts : list of str
        Validated texts (non-empty strings), duplicates allowed.
    backend : EmbeddingBackend
        The backend that would embed them. One that does not pay per text (a
        local model) costs nothing.
    cache : EmbeddingCache or None
        Cache whose entries are free. Looked up without touching its hit counters.
    n_texts : int, default=None
        Rows given by the user, if more than ``texts`` (blank rows).
    rows : array-like of int, default=None
        The user's row number of each text, for error messages (default: position).
    describe : callable, default=None
        Names the user's rows in a message, as for :func:`~skembed._embed.embed_texts`.

    Returns
    -------
    CostEstimate

    Raises
    ------
    InputTooLongError
        If a text (cached or not) is over the model's limit and
        ``long_input="error"`` (naming ``rows``), as embedding would.
    """
    unique, inverse = _deduplicate(texts)
    try:
        backend.check_inputs(unique)  # as embedding would, whatever the cache holds
    except EmbeddingError as error:
        raise _name_user_rows(error, np.arange(len(unique)), inverse, rows, describe) from error
    found = cached_mask(unique, backend, cache)
    todo = np.flatnonzero(~found)
    price = backend.usd_per_million_tokens if backend.pays_per_text else 0.0
    try:
        n_tokens = int(backend.count_billed_tokens([unique[i] for i in todo]).sum())
    except EmbeddingError as error:
        raise _name_user_rows(error, todo, inverse, rows, describe) from error
    return CostEstimate(
        model=model_name(backend),
        n_texts=len(texts) if n_texts is None else n_texts,
        n_unique=len(unique),
        n_cached=int(found.sum()),
        n_tokens=n_tokens,
        usd=usd_for_tokens(n_tokens, price),
        usd_per_million_tokens=price,
    )
