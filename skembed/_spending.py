"""Budgets and prices: the limits that stop a job from costing more than allowed.

Budgets are checked *before* anything is sent, against the tokens counted on exactly
the inputs a backend would send: that check is the guarantee, because the API bills
only requests that succeed and a job that succeeds sends each input once. A retried
request can be billed twice only when its first answer was lost (a timeout or a dropped
connection after the service did the work), so the backend also keeps a running total
of every request that may have been billed, and stops before one would cross the limit.

The embedding job (:mod:`skembed._embed`) holds one :class:`Spending` per call;
estimates (:mod:`skembed._cost`) and usage reports (:mod:`skembed._usage`) use the
helpers here. Of skembed it imports only the backends' base (the error it raises and
the request meter it hands out); nothing here imports scikit-learn.
"""

from __future__ import annotations

import contextlib
import math
import threading
from numbers import Real

from .backends._base import BudgetExceededError, RequestMeter

__all__ = [
    "Budget",
    "BudgetExceededError",
    "Spending",
    "budget",
    "format_usd",
    "model_name",
    "usd_for_tokens",
]

_active = []  # Budget scopes entered in this process, outermost first
_active_lock = threading.Lock()
_ADVICE = (
    "Raise the limit, embed a subset, or warm the cache with the texts you will reuse "
    "(cached texts are free)."
)


def usd_for_tokens(n_tokens, price):
    """``n_tokens`` at ``price`` US dollars per million; ``None`` for an unknown price."""
    return None if price is None else n_tokens * price / 1e6


def format_usd(usd):
    """``$0.0123``, to the hundredth of a micro-dollar; or ``unknown cost``."""
    return "unknown cost" if usd is None else "$" + f"{usd:,.8f}".rstrip("0").rstrip(".")


def model_name(backend):
    """The model a backend embeds with, for reports."""
    return backend.model_name


# -- limits ---------------------------------------------------------------------------


def _check_limit(name, value):
    if value is None:
        return None
    if not isinstance(value, Real) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0 or None, got {value!r}.")
    return value


class Budget:
    """A spending limit over every embedding call made while it is active.

    Created by :func:`budget`; read its counters to see what the calls spent.

    Attributes
    ----------
    max_tokens : int or None
        Most tokens that may be sent.
    max_cost : float or None
        Most US dollars that may be spent.
    tokens : int
        Tokens sent so far (requests whose answer was lost included: they may have
        been billed).
    usd : float
        Dollars spent so far, at each model's price.
    """

    def __init__(self, max_tokens=None, max_cost=None):
        self.max_tokens = _check_limit("max_tokens", max_tokens)
        self.max_cost = _check_limit("max_cost", max_cost)
        self.tokens = 0
        self.usd = 0.0
        self._reserved_tokens = 0  # claimed by calls in progress (several threads)
        self._reserved_usd = 0.0

    def __repr__(self):
        return (
            f"Budget(max_tokens={self.max_tokens!r}, max_cost={self.max_cost!r}, "
            f"tokens={self.tokens}, usd={self.usd:.6f})"
        )


@contextlib.contextmanager
def budget(*, max_tokens=None, max_cost=None):
    """Limit what all embedding calls in this process may spend while the block runs.

    Each call checks, before sending anything, that what the block has spent plus
    what the call still has to send stays within the limits, and raises
    :class:`BudgetExceededError` otherwise; vectors received by earlier calls stay
    in the cache. Texts served by the cache are free and never count. Budgets nest:
    every active one must allow a call.

    The limit covers this process only: worker processes (joblib's default ``loky``
    backend, Dask workers) do not see it. For those, set ``max_tokens``/``max_cost``
    on the transformer, which travel with it to every worker (per call).

    Parameters
    ----------
    max_tokens : int, default=None
        Most tokens sent in all; ``None`` means no token limit.
    max_cost : float, default=None
        Most US dollars spent in all, at each model's ``usd_per_million_tokens``;
        ``None`` means no cost limit. A call to a model with no known price is
        refused when a cost limit is set.

    Yields
    ------
    Budget
        The block's counters.

    Examples
    --------
    >>> import skembed
    >>> with skembed.budget(max_cost=5.0) as spent:
    ...     pass  # e.g. search.fit(texts, y) with skembed transformers in the pipeline
    >>> spent.usd
    0.0
    """
    scope = Budget(max_tokens, max_cost)
    with _active_lock:
        _active.append(scope)
    try:
        yield scope
    finally:
        with _active_lock:
            _active.remove(scope)


def _over(needed, limit):
    # A tolerance so that a job costing exactly the limit is allowed despite rounding.
    return limit is not None and needed > limit * (1 + 1e-9)


class Spending:
    """One embedding call's limits: checked before each fetch, charged after.

    Parameters
    ----------
    backend : EmbeddingBackend
        The call's backend; one that does not pay per text is free.
    max_tokens, max_cost : int, float or None
        The call's own limits (the transformer's parameters).
    """

    def __init__(self, backend, max_tokens=None, max_cost=None):
        self.model = model_name(backend)
        self.billed = backend.pays_per_text
        self.price = backend.usd_per_million_tokens if self.billed else 0.0
        self.max_tokens = _check_limit("max_tokens", max_tokens)
        self.max_cost = _check_limit("max_cost", max_cost)
        with _active_lock:
            self.scopes = list(_active)
        self.requests = 0
        self.tokens = 0  # billed or perhaps billed, by this call
        self._claimed = (0, 0.0)  # reserved in the scopes by the fetch in progress

    @property
    def usd(self):
        return usd_for_tokens(self.tokens, self.price)

    @property
    def limited(self):
        """Whether any limit applies (else tokens need not be counted up front)."""
        return self.billed and (
            self.max_tokens is not None
            or self.max_cost is not None
            or any(s.max_tokens is not None or s.max_cost is not None for s in self.scopes)
        )

    def _limits(self):
        """(what, tokens spent, usd spent, max tokens, max usd) for every applicable limit."""
        yield ("this call's limit", self.tokens, self.usd, self.max_tokens, self.max_cost)
        for scope in self.scopes:
            spent_tokens = scope.tokens + scope._reserved_tokens
            spent_usd = scope.usd + scope._reserved_usd
            yield (
                "the skembed.budget() block",
                spent_tokens,
                spent_usd,
                scope.max_tokens,
                scope.max_cost,
            )

    def authorize(self, n_tokens, n_texts):
        """Check that sending ``n_tokens`` more stays within every limit; claim them.

        Returns
        -------
        RequestMeter
            For the backend: counts the requests and stops the fetch if lost answers
            and retries would take it past the tightest limit.

        Raises
        ------
        BudgetExceededError
            Naming the estimate, the limit and what to do.
        ValueError
            If a cost limit is set and the model's price is unknown.
        """
        if not self.limited:
            return RequestMeter()
        usd = usd_for_tokens(n_tokens, self.price) or 0.0  # unknown price: only token limits apply
        with _active_lock:
            room = math.inf
            for what, spent_tokens, spent_usd, max_tokens, max_cost in self._limits():
                if max_cost is not None and self.price is None:
                    raise ValueError(
                        f"A cost limit ({what}: max_cost={max_cost}) cannot be checked: the "
                        f"price of model {self.model!r} is unknown. Pass "
                        "usd_per_million_tokens=<price> to the transformer, or limit "
                        "max_tokens instead."
                    )
                if _over(spent_tokens + n_tokens, max_tokens):
                    self._refuse(what, n_tokens, n_texts, spent_tokens, max_tokens, "tokens")
                if max_cost is not None and _over(spent_usd + usd, max_cost):
                    self._refuse(what, n_tokens, n_texts, spent_usd, max_cost, "USD")
                if max_tokens is not None:
                    room = min(room, max_tokens - spent_tokens)
                if max_cost is not None and self.price:
                    room = min(room, (max_cost - spent_usd) * 1e6 / self.price * (1 + 1e-9))
            for scope in self.scopes:
                scope._reserved_tokens += n_tokens
                scope._reserved_usd += usd
        self._claimed = (n_tokens, usd)
        return RequestMeter(None if room == math.inf else math.floor(room))

    def _refuse(self, what, n_tokens, n_texts, spent, limit, unit):
        cost = format_usd(usd_for_tokens(n_tokens, self.price))
        if unit == "USD":
            needed = spent + usd_for_tokens(n_tokens, self.price)
            over = f"{format_usd(needed)} in all, over {what} of max_cost={limit}"
        else:
            needed = spent + n_tokens
            over = f"{needed:,} tokens in all, over {what} of max_tokens={limit:,}"
        shown = format_usd(spent) if unit == "USD" else f"{spent:,} tokens"
        already = f" ({shown} already spent)" if spent else ""
        raise BudgetExceededError(
            f"Embedding {n_texts:,} uncached distinct text(s) with {self.model!r} would send "
            f"{n_tokens:,} tokens ({cost}): {over}{already}. Nothing was sent for them; "
            f"vectors received before are cached. {_ADVICE}",
            limit=limit,
            needed=needed,
            unit=unit,
        )

    def charge(self, meter):
        """Record what a fetch sent (after it ended, well or not) in every scope."""
        self.requests += meter.requests
        spent = meter.tokens + meter.tokens_unsure
        self.tokens += spent
        usd = usd_for_tokens(spent, self.price) or 0.0
        claimed_tokens, claimed_usd = self._claimed
        self._claimed = (0, 0.0)
        with _active_lock:
            for scope in self.scopes:
                scope._reserved_tokens -= claimed_tokens
                scope._reserved_usd -= claimed_usd
                scope.tokens += spent
                scope.usd += usd
