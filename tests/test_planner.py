"""Property tests of the request planner and the long-input policies."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skembed._tokens import count_tokens
from skembed.backends import InputTooLongError
from skembed.backends._planner import plan_pieces, plan_requests


@settings(max_examples=300, deadline=None)
@given(
    n_tokens=st.lists(st.integers(1, 8192), min_size=1, max_size=600),
    max_inputs=st.integers(1, 2048),
    max_tokens=st.integers(8192, 300_000),
    min_requests=st.integers(1, 16),
)
def test_requests_cover_every_input_once_within_limits(
    n_tokens, max_inputs, max_tokens, min_requests
):
    requests = plan_requests(
        n_tokens, max_inputs=max_inputs, max_tokens=max_tokens, min_requests=min_requests
    )
    tokens = np.asarray(n_tokens)
    # Every input exactly once, in order (responses are mapped back by position).
    np.testing.assert_array_equal(np.concatenate(requests), np.arange(len(n_tokens)))
    for request in requests:
        assert 1 <= len(request) <= max_inputs
        assert tokens[request].sum() <= max_tokens


def test_small_jobs_are_spread_for_concurrency():
    requests = plan_requests([50] * 400, max_inputs=2048, max_tokens=270_000, min_requests=8)
    assert len(requests) == 8
    assert {len(r) for r in requests} == {50}


def test_spreading_never_makes_tiny_requests():
    requests = plan_requests([5] * 20, max_inputs=2048, max_tokens=270_000, min_requests=8)
    assert len(requests) == 1


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=400), st.integers(4, 40))
def test_chunks_rebuild_the_text_within_the_limit(text, max_tokens):
    n_tokens = count_tokens([text])
    pieces = plan_pieces([text], n_tokens, max_input_tokens=max_tokens, long_input="chunk")
    # Only whole characters move between chunks, so no text is lost or invented...
    rebuilt = "".join(p.text for p in pieces)
    assert rebuilt == text
    for piece in pieces:
        assert piece.owner == 0
        # ...and every chunk is accepted by the API's per-input limit.
        assert count_tokens([piece.text])[0] == piece.n_tokens <= max_tokens


def test_long_input_error_names_the_rows():
    texts = ["short", "word " * 50, "fine", "word " * 60]
    with pytest.raises(InputTooLongError, match="2 text") as info:
        plan_pieces(texts, count_tokens(texts), max_input_tokens=20)
    assert info.value.rows == (1, 3)


def test_truncate_keeps_the_beginning_within_the_limit():
    text = " ".join(f"w{i}" for i in range(100))
    (piece,) = plan_pieces([text], count_tokens([text]), max_input_tokens=10, long_input="truncate")
    assert text.startswith(piece.text)
    assert count_tokens([piece.text])[0] <= 10
