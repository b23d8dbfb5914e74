"""The one registry of embedding-model facts.

Validation, request planning, cost estimates and the documentation table all read
these records, so a fact about a model is written down exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["MODELS", "ModelInfo", "resolve_model"]

# Limits the OpenAI embeddings endpoint enforces on every request, whatever the model.
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000


@dataclass(frozen=True)
class ModelInfo:
    """Facts about one embedding model.

    Attributes
    ----------
    name : str
        Model name as sent to the API.
    native_dim : int or None
        Length of the vectors the model returns without ``dimensions``; ``None`` when
        unknown (a model of an OpenAI-compatible server that the user did not describe).
        A fact of the model: the width a backend returns is its ``n_dimensions``
        (``dimensions`` when it is sent), resolved once by the backend from this.
    supports_dimensions : bool
        Whether the API accepts the ``dimensions`` parameter for this model.
    dimensions_is_truncation : bool
        Whether a shortened vector equals the truncated and re-normalised full vector,
        so that a cached full-size vector can serve any smaller ``dimensions``.
    max_input_tokens : int
        Longest input, in tokens, that the model accepts.
    encoding : str
        Name of the tiktoken encoding that counts the model's tokens.
    usd_per_million_tokens : float or None
        List price of embedding one million tokens; ``None`` when unknown.
    """

    name: str
    native_dim: int | None
    supports_dimensions: bool
    dimensions_is_truncation: bool
    max_input_tokens: int
    encoding: str = "cl100k_base"
    usd_per_million_tokens: float | None = None


MODELS = MappingProxyType(
    {
        info.name: info
        for info in (
            ModelInfo("text-embedding-3-small", 1536, True, True, 8192, "cl100k_base", 0.02),
            ModelInfo("text-embedding-3-large", 3072, True, True, 8192, "cl100k_base", 0.13),
            ModelInfo("text-embedding-ada-002", 1536, False, False, 8192, "cl100k_base", 0.10),
        )
    }
)


def resolve_model(name, *, dimensions=None, max_input_tokens=None):
    """Return the facts for ``name``, describing unknown models from the user's values.

    A model that is not in :data:`MODELS` (served by an OpenAI-compatible server, or an
    Azure deployment name) is allowed: it is described with ``dimensions`` as its
    native size (``None`` when not given: learned from the first response), the API's
    usual 8192-token input limit unless ``max_input_tokens`` says otherwise, and no price.

    Parameters
    ----------
    name : str
        Model name.
    dimensions : int or None
        Requested output dimension.
    max_input_tokens : int or None
        Overrides the model's input limit.

    Returns
    -------
    ModelInfo

    Raises
    ------
    ValueError
        If ``dimensions`` is not supported by a known model.

    Examples
    --------
    >>> resolve_model("text-embedding-3-small").native_dim
    1536
    >>> resolve_model("my-server-model", dimensions=768).native_dim
    768
    """
    info = MODELS.get(name)
    if info is None:
        info = ModelInfo(
            name=name,
            native_dim=dimensions,
            supports_dimensions=False,
            dimensions_is_truncation=False,
            max_input_tokens=8192,
        )
    elif dimensions is not None:
        if not info.supports_dimensions:
            raise ValueError(
                f"Model {name!r} does not support the 'dimensions' parameter; "
                f"it always returns {info.native_dim}-d vectors. Use dimensions=None, or a "
                "text-embedding-3 model for shortened vectors."
            )
        if dimensions > info.native_dim:
            raise ValueError(
                f"dimensions={dimensions} is larger than {name!r}'s native size {info.native_dim}."
            )
    if max_input_tokens is not None:
        info = ModelInfo(**{**info.__dict__, "max_input_tokens": max_input_tokens})
    return info
