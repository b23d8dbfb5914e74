"""Where an OpenAI-compatible backend sends, and the endpoint's identity in cache keys.

The endpoint is resolved from the estimator's parameters and the environment exactly as
the SDK resolves it, so that the identity names the server that answers.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

__all__ = ["endpoint_identity", "resolve_endpoint"]


def resolve_endpoint(base_url, api_version=None):
    """The URL the SDK will send to, resolved from the environment as the SDK does it.

    Plain OpenAI (no ``api_version``): ``base_url``, else ``$OPENAI_BASE_URL``, else
    ``None`` for the SDK's default endpoint (OpenAI's API). Azure (``api_version`` set):
    ``base_url`` is the resource's endpoint (the SDK's ``azure_endpoint``), else
    ``$AZURE_OPENAI_ENDPOINT``; ``$OPENAI_BASE_URL`` plays no part, as in the SDK.

    Parameters
    ----------
    base_url : str or None
        The estimator's ``base_url``.
    api_version : str or None, default=None
        The estimator's ``api_version`` (Azure OpenAI when set).

    Returns
    -------
    str or None
        The endpoint to hand the SDK, ``None`` meaning its default.

    Raises
    ------
    ValueError
        Azure with no endpoint, or an empty endpoint: before any request, where the
        SDK would refuse to build its client (or send to a relative URL).

    Examples
    --------
    >>> resolve_endpoint("http://localhost:8000/v1")
    'http://localhost:8000/v1'
    """
    if api_version:
        url = base_url if base_url is not None else os.environ.get("AZURE_OPENAI_ENDPOINT")
        if url is None:
            raise ValueError(
                "Azure OpenAI (api_version is set) needs the resource's endpoint: pass "
                "base_url='https://<resource>.openai.azure.com' or set the environment "
                "variable AZURE_OPENAI_ENDPOINT."
            )
        where = "base_url" if base_url is not None else "AZURE_OPENAI_ENDPOINT"
    else:
        url = base_url if base_url is not None else os.environ.get("OPENAI_BASE_URL")
        where = "base_url" if base_url is not None else "OPENAI_BASE_URL"
    if url is not None and not str(url).strip():
        raise ValueError(
            f"{where} is empty; give the endpoint's URL, or leave it unset for the default."
        )
    return None if url is None else str(url)


def endpoint_identity(base_url, api_version=None):
    """The endpoint's identity for cache keys: the URL without credentials or query.

    The endpoint is resolved as the SDK resolves it (:func:`resolve_endpoint`,
    environment variables included), so the identity names the server that answers:
    ``"openai"`` for the SDK's default, the URL with its scheme and host in lower
    case, without credentials, query, fragment or trailing slash (an IPv6 host keeps
    its brackets), and for Azure the URL of the resource and the API version.

    Examples
    --------
    >>> endpoint_identity("https://user:secret@example.org/v1/?key=1")
    'https://example.org/v1'
    >>> endpoint_identity("http://[::1]:1/v1"), endpoint_identity("http://[::1:1]/v1")
    ('http://[::1]:1/v1', 'http://[::1:1]/v1')
    """
    url = resolve_endpoint(base_url, api_version)
    if url is None:
        return "openai"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address: without its brackets, "[::1]:1" reads as "::1:1"
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        raise ValueError("The endpoint's URL has an invalid port.") from None
    if port is not None:
        host = f"{host}:{port}"
    identity = urlunsplit((parts.scheme.lower(), host.lower(), parts.path.rstrip("/"), "", ""))
    return f"{identity}@azure-{api_version}" if api_version else identity
