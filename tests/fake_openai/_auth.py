"""What a request presents as its credentials, read strictly, as the real API does.

The key is compared byte for byte: ``Bearer  sk-...`` (a key with a leading space)
is a wrong key, not the key. ``Basic`` credentials with a blank username and the key
as the password are accepted, as the API's own 401 message says ("or as the password
field (with blank username)"); that is what the SDK sends instead of its key when
``base_url`` carries ``user:password@``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from . import _errors

__all__ = ["AUTH_SCHEMES", "Credentials", "check_key", "read_credentials"]

# The keys of /stats' auth_schemes.
AUTH_SCHEMES = ("bearer", "basic", "api-key", "other", "missing")


@dataclass(frozen=True)
class Credentials:
    """``scheme`` is one of AUTH_SCHEMES; ``key`` what stands for the API key."""

    scheme: str
    key: str = ""
    malformed: bool = False  # anything a careful client would not have sent
    username: str = ""  # of Basic credentials


def _clean(token):
    return bool(token) and token.isascii() and token.isprintable() and " " not in token


def _basic(token):
    try:
        decoded = base64.b64decode(token.encode("latin-1"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError):
        return Credentials("basic", malformed=True)
    username, colon, password = decoded.partition(":")
    return Credentials("basic", password, not colon or not _clean(token), username)


def read_credentials(headers, azure=False):
    """The :class:`Credentials` of a request (``headers`` as http.server parsed them)."""
    if azure and headers.get("api-key"):
        key = headers["api-key"]
        return Credentials("api-key", key, not _clean(key))
    values = headers.get_all("Authorization") or []
    if not values:
        return Credentials("missing")
    scheme, space, token = values[0].partition(" ")
    malformed = len(values) > 1 or not space
    if scheme.lower() == "bearer":
        return Credentials("bearer", token, malformed or not _clean(token))
    if scheme.lower() == "basic":
        credentials = _basic(token)
        if malformed:
            return Credentials("basic", credentials.key, True, credentials.username)
        return credentials
    return Credentials("other", malformed=True)


def check_key(credentials, api_key, azure=False):
    """Raise the API's 401 unless ``credentials`` present exactly ``api_key``."""
    if not credentials.key:
        raise _errors.missing_key(azure)
    if credentials.key != api_key or credentials.username:
        raise _errors.wrong_key(credentials.key, azure)
