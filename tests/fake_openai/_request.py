"""Parsing and validation of an embeddings request body, in two steps.

:func:`parse` only needs to understand the input (so that /stats can report what a
client sent, even when the request is then rejected); :func:`validate` applies the
API's rules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import _errors
from ._config import MAX_INPUTS_PER_REQUEST, MAX_TOKENS_PER_REQUEST

_FIELDS = ("model", "input", "dimensions", "encoding_format", "user")


@dataclass
class EmbeddingsRequest:
    model: str
    azure: bool
    items: list  # str, or list of token ids
    token_counts: list
    dimensions: object
    encoding_format: object
    user: object

    @property
    def n_tokens(self):
        return sum(self.token_counts)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _token_ids(value, n_vocab):
    if not all(_is_int(i) for i in value) or (
        value and not 0 <= min(value) <= max(value) < n_vocab
    ):
        raise _errors.ApiError(400, _errors.INVALID_INPUT)
    return value


def _items(value, n_vocab):
    """Inputs as a list of texts or token-id lists; empty ones are kept for validate()."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise _errors.ApiError(400, _errors.INVALID_INPUT)
    if all(isinstance(item, str) for item in value):
        return value
    if all(_is_int(item) for item in value):
        return [_token_ids(value, n_vocab)]
    if all(isinstance(item, list) for item in value):
        return [_token_ids(item, n_vocab) for item in value]
    raise _errors.ApiError(400, _errors.INVALID_INPUT)


def parse(body, encoding, deployment=None):
    """Read the JSON body; raise ApiError if the input cannot be understood."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _errors.invalid_json() from None
    if not isinstance(payload, dict):
        raise _errors.invalid_json()
    for name in payload:
        if name not in _FIELDS:
            raise _errors.ApiError(400, f"Unrecognized request argument supplied: {name}")
    model = payload.get("model") if deployment is None else deployment
    if model is None:
        raise _errors.ApiError(400, "You must provide a model parameter.")
    if not isinstance(model, str):
        raise _errors.ApiError(
            400, "Invalid type for 'model': expected a string.", param="model", code="invalid_type"
        )
    if payload.get("input") is None:
        raise _errors.ApiError(
            400,
            "Missing required parameter: 'input'.",
            param="input",
            code="missing_required_parameter",
        )
    items = _items(payload["input"], encoding.n_vocab)
    # A plain loop beats encode_ordinary_batch here: that one starts a thread pool per
    # call, which costs more than it saves on the short texts of typical batches.
    counts = [len(encoding.encode_ordinary(i)) if isinstance(i, str) else len(i) for i in items]
    return EmbeddingsRequest(
        model=model,
        azure=deployment is not None,
        items=items,
        token_counts=counts,
        dimensions=payload.get("dimensions"),
        encoding_format=payload.get("encoding_format"),
        user=payload.get("user"),
    )


def validate(request, models):
    """Apply the API's rules; return the model's spec or raise ApiError."""
    spec = models.get(request.model)
    if spec is None:
        raise _errors.model_not_found(request.model, request.azure)
    if not request.items or not all(len(item) for item in request.items):
        raise _errors.ApiError(400, _errors.INVALID_INPUT)
    if len(request.items) > MAX_INPUTS_PER_REQUEST:
        raise _errors.ApiError(400, _errors.INVALID_INPUT)
    if request.encoding_format not in (None, "float", "base64"):
        raise _errors.ApiError(
            400,
            f"Invalid value for 'encoding_format' = {request.encoding_format}. Supported "
            "values are: 'float' and 'base64'.",
            param="encoding_format",
        )
    if request.user is not None and not isinstance(request.user, str):
        raise _errors.ApiError(
            400, "Invalid type for 'user': expected a string.", param="user", code="invalid_type"
        )
    _validate_dimensions(request.dimensions, spec)
    for count in request.token_counts:
        if count > spec.max_input_tokens:
            raise _errors.context_length(spec.max_input_tokens, count)
    if request.n_tokens > MAX_TOKENS_PER_REQUEST:
        raise _errors.too_many_tokens(request.n_tokens, MAX_TOKENS_PER_REQUEST)
    return spec


def _validate_dimensions(dimensions, spec):
    if dimensions is None:
        return
    if not _is_int(dimensions):
        raise _errors.ApiError(
            400,
            f"Invalid type for 'dimensions': expected an integer, but got {dimensions!r}.",
            param="dimensions",
            code="invalid_type",
        )
    if not spec.supports_dimensions:
        raise _errors.ApiError(400, "This model does not support specifying dimensions.")
    if dimensions < 1:
        raise _errors.ApiError(
            400,
            "Invalid 'dimensions': integer below minimum value. Expected a value >= 1, but "
            f"got {dimensions} instead.",
            param="dimensions",
            code="integer_below_min_value",
        )
    if dimensions > spec.native_dim:
        raise _errors.ApiError(
            400,
            f"This model's maximum dimensions is {spec.native_dim}, but {dimensions} were "
            "requested.",
            param="dimensions",
        )
