"""Request planning: long inputs into pieces, pieces into requests within the API's limits.

Pure functions of token counts, so that property tests can check the limits hold for
any input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._tokens import chunk_text, iter_chunks
from ._base import InputTooLongError

__all__ = ["LONG_INPUT_POLICIES", "Piece", "plan_pieces", "plan_requests"]

LONG_INPUT_POLICIES = ("error", "truncate", "chunk")


@dataclass(frozen=True)
class Piece:
    """One input of one request: a whole text, its truncation, or one chunk of it.

    Attributes
    ----------
    text : str
        What is sent.
    n_tokens : int
        Its token count.
    owner : int
        Position of the text it comes from.
    """

    text: str
    n_tokens: int
    owner: int


def plan_pieces(texts, n_tokens, *, max_input_tokens, long_input="error", encoding="cl100k_base"):
    """Turn texts into request inputs that each fit the model's input limit.

    Parameters
    ----------
    texts : sequence of str
        Texts to embed.
    n_tokens : array-like of int
        Token count of each text.
    max_input_tokens : int
        Longest input the model accepts.
    long_input : {"error", "truncate", "chunk"}, default="error"
        ``"error"`` raises :class:`InputTooLongError` naming the texts over the limit;
        ``"truncate"`` keeps each one's first ``max_input_tokens`` tokens; ``"chunk"``
        splits it into consecutive pieces whose vectors are averaged (weighted by their
        token counts) into the text's vector.
    encoding : str, default="cl100k_base"
        tiktoken encoding that counted ``n_tokens``.

    Returns
    -------
    list of Piece
        In the order of ``texts``; several consecutive pieces per text when chunked.

    Examples
    --------
    >>> [p.n_tokens for p in plan_pieces(["a b c d e"], [5], max_input_tokens=2,
    ...                                   long_input="chunk")]
    [2, 2, 1]
    """
    if long_input not in LONG_INPUT_POLICIES:
        raise ValueError(f"long_input must be one of {LONG_INPUT_POLICIES}, got {long_input!r}.")
    n_tokens = np.asarray(n_tokens)
    too_long = np.flatnonzero(n_tokens > max_input_tokens)
    if len(too_long) and long_input == "error":
        worst = int(n_tokens[too_long].max())
        raise InputTooLongError(
            f"{len(too_long)} text(s) exceed the model's limit of {max_input_tokens} tokens "
            f"(the longest has {worst}). Pass long_input='truncate' to keep the beginning "
            "of each, or long_input='chunk' to average the vectors of its pieces.",
            rows=too_long,
        )
    pieces = []
    for owner, (text, count) in enumerate(zip(texts, n_tokens.tolist(), strict=True)):
        if count <= max_input_tokens:
            pieces.append(Piece(text, count, owner))
        elif long_input == "truncate":
            # The cut's own count: re-encoded alone, it can be a token or two shorter
            # than the limit, and the API bills what it receives.
            cut, cut_count = next(iter_chunks(text, max_input_tokens, encoding))
            pieces.append(Piece(cut, cut_count, owner))
        else:
            pieces.extend(
                Piece(chunk, n, owner) for chunk, n in chunk_text(text, max_input_tokens, encoding)
            )
    return pieces


def plan_requests(n_tokens, *, max_inputs, max_tokens, min_requests=1, min_inputs=16):
    """Group inputs, in order, into requests under both per-request limits.

    Parameters
    ----------
    n_tokens : array-like of int
        Token count of each input; none may exceed ``max_tokens``.
    max_inputs : int
        Most inputs in one request.
    max_tokens : int
        Most tokens in one request.
    min_requests : int, default=1
        Spread small jobs over at least this many requests (for concurrency), as long
        as each request keeps at least ``min_inputs`` inputs.
    min_inputs : int, default=16
        Smallest request worth making when spreading.

    Returns
    -------
    list of ndarray of int
        Consecutive input positions of each request.

    Examples
    --------
    >>> [r.tolist() for r in plan_requests([5, 5, 5, 5], max_inputs=3, max_tokens=12)]
    [[0, 1], [2, 3]]
    >>> [r.tolist() for r in plan_requests([9, 1, 1, 1], max_inputs=4, max_tokens=10)]
    [[0, 1], [2, 3]]
    """
    n_tokens = np.asarray(n_tokens, dtype=np.int64)
    n = len(n_tokens)
    if n == 0:
        return []
    if n_tokens.max() > max_tokens:
        raise ValueError(f"An input has {n_tokens.max()} tokens, over max_tokens={max_tokens}.")
    # As many requests as the limits need, or as concurrency wants; then cut the inputs
    # at equal shares of the tokens (latency and rate limits both go by tokens), adding
    # a request whenever a share would break a limit.
    needed = max(-(-n // max_inputs), -(-int(n_tokens.sum()) // max_tokens))
    n_requests = max(needed, min(min_requests, max(1, n // min_inputs)))
    cumulative = np.cumsum(n_tokens)
    for attempt in (n_requests, n_requests + 1):
        shares = cumulative[-1] * np.arange(1, attempt) / attempt
        cuts = np.unique(np.searchsorted(cumulative, shares, side="right"))
        requests = [r for r in np.split(np.arange(n), cuts) if len(r)]
        if all(len(r) <= max_inputs and n_tokens[r].sum() <= max_tokens for r in requests):
            return requests
    return _pack_greedily(n_tokens, max_inputs, max_tokens)


def _pack_greedily(n_tokens, max_inputs, max_tokens):
    """Fill each request to a limit before starting the next (for very uneven inputs)."""
    requests, start, total = [], 0, 0
    for i, count in enumerate(n_tokens.tolist()):
        if i > start and (i - start >= max_inputs or total + count > max_tokens):
            requests.append(np.arange(start, i))
            start, total = i, 0
        total += count
    requests.append(np.arange(start, len(n_tokens)))
    return requests
