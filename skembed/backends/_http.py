"""What the SDK's HTTP layer needs around it: checked credentials, a deadline, a size cap.

The SDK sends whatever it is given and reads whatever comes back, for as long as each
read keeps receiving something. This module holds the checks skembed makes on both
sides of it, for the online and the Batch API backends alike:

- an API key is checked as an HTTP header value before anything is sent
  (:func:`header_value_problem`), in words that never quote it;
- a URL with ``user:password@`` is refused (the SDK would send those as Basic
  credentials *instead of* the key), and the HTTP client's INFO log of every request URL
  has credentials and query values masked (:func:`hide_url_secrets_in_http_logs`);
- a response body is read against a total deadline and a size cap (:func:`read_body`):
  the SDK's ``timeout`` bounds each read, not the answer, so a server that trickles its
  body a byte at a time would hold a request for as long as it likes.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import socket
import threading
import time
from urllib.parse import urlsplit

__all__ = [
    "BodyRefused",
    "header_value_problem",
    "hide_url_secrets_in_http_logs",
    "read_body",
    "refuse_url_credentials",
    "transport_errors",
]

_URL_CREDENTIALS = re.compile(r"(//)[^/@\s]+@")
# A query parameter's value in a logged URL: from "?name=" or "&name=" to the next
# "&", "#", quote or blank.
_QUERY_VALUE = re.compile(r"([?&][^=&#\s\"']*=)[^&#\s\"']+")


# -- credentials ------------------------------------------------------------------------


def header_value_problem(value):
    r"""What makes ``value`` unusable as an HTTP header value, in words that never quote it.

    Returns
    -------
    str or None
        A phrase completing "The API key ... " (leading or trailing whitespace, a line
        break, a non-ASCII, blank or control character and its position), or ``None``
        when the value can be sent.

    Examples
    --------
    >>> header_value_problem("sk-abc\n")
    'ends with a newline: strip it'
    >>> header_value_problem("sk-ab\u2013cd").split(":")[0]
    'contains a non-ASCII character at position 6 (counting from 1)'
    >>> header_value_problem("sk-abc") is None
    True
    """
    if value.endswith("\r\n"):
        return "ends with a line break (CR LF): strip it"
    if value.endswith(("\n", "\r")):
        return "ends with a newline: strip it"
    if value[-1].isspace():
        return "ends with whitespace: strip it"
    if value[0].isspace():
        return "starts with whitespace: strip it"
    for position, char in enumerate(value, start=1):
        if not char.isascii():
            return (
                f"contains a non-ASCII character at position {position} (counting from 1): "
                "an API key is plain ASCII (a dash or quote pasted from a document, say)"
            )
        if char.isspace():
            return f"contains whitespace at position {position} (counting from 1)"
        if not char.isprintable():
            return f"contains a control character at position {position} (counting from 1)"
    return None


def refuse_url_credentials(url, where):
    """Raise a ValueError if ``url`` has ``user[:password]@``, without repeating any of it.

    Parameters
    ----------
    url : str or None
        The endpoint URL, as the SDK will be given it.
    where : str
        Where it came from, for the message (``"base_url"``, ``"$OPENAI_BASE_URL"``).

    Examples
    --------
    >>> refuse_url_credentials("https://user:hunter2@example.org/v1", "base_url")
    Traceback (most recent call last):
    ...
    ValueError: base_url contains credentials (user:password@ before the host)...
    """
    if url and "@" in urlsplit(str(url)).netloc:
        raise ValueError(
            f"{where} contains credentials (user:password@ before the host); they are not "
            "shown here. The SDK would send them as HTTP Basic authentication instead of the "
            "API key. Remove them from the URL: the key is read from the environment "
            "(api_key_env)."
        ) from None


class _HideURLSecrets(logging.Filter):
    """Mask ``user:password@`` and query values in the request URLs the HTTP client logs."""

    def filter(self, record):
        message = record.getMessage()
        if "@" in message or "=" in message:
            masked = _QUERY_VALUE.sub(r"\1***", _URL_CREDENTIALS.sub(r"\1***@", message))
            if masked != message:
                record.msg, record.args = masked, ()
        return True


_URL_FILTER = _HideURLSecrets()


def hide_url_secrets_in_http_logs():
    """Mask credentials and query values in the HTTP client's request log (idempotent).

    The SDK's HTTP client logs every request URL at INFO: a key passed in the query of a
    ``base_url`` (some gateways want one) would be in every line.
    """
    for name in ("httpx", "httpx2"):
        logger = logging.getLogger(name)
        if _URL_FILTER not in logger.filters:
            logger.addFilter(_URL_FILTER)


# -- reading an answer ------------------------------------------------------------------


class BodyRefused(Exception):
    """A response body that could not be used: too slow, too large, or cut off.

    Parameters
    ----------
    message : str
        What went wrong, for a person.
    """

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def transport_errors():
    """Errors of a connection cut while a streamed body is read (the SDK's or its
    HTTP library's, whichever that is: ``httpx`` or, in recent SDKs, ``httpx2``)."""
    import openai

    errors = [openai.APIConnectionError]
    for name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            errors.append(importlib.import_module(name).TransportError)
    return tuple(errors)


def read_body(response, *, deadline, timeout, limit, what, scrub=str):
    """The whole body of a streamed SDK ``response``, by ``deadline`` and within ``limit``.

    Parameters
    ----------
    response : openai APIResponse
        Entered from a ``with_streaming_response`` call; its headers have arrived.
    deadline : float
        ``time.monotonic()`` value by which the whole body must be in.
    timeout : float
        The request's ``timeout``, for the message.
    limit : int
        Most bytes the body may take (its ``Content-Length`` is checked first).
    what : str
        What the body should hold, for the message ("3 embeddings").
    scrub : callable, default=str
        Removes credentials from an error message of the HTTP library.

    Returns
    -------
    bytes

    Raises
    ------
    BodyRefused
        If the deadline passes, the body is larger than ``limit`` (then it is not read
        further, let alone parsed), or the connection is cut before its end.
    """
    headers = response.headers
    try:
        declared = int(headers.get("content-length"))
    except (TypeError, ValueError):
        declared = None
    if declared is not None and declared > limit:
        raise BodyRefused(_too_large(declared, limit, what))
    watchdog = _shut_at(deadline, response.http_response)
    parts, size = [], 0
    try:
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise BodyRefused(_too_large(size, limit, what))
            parts.append(chunk)
            if time.monotonic() > deadline:
                raise BodyRefused(_overrun(timeout, size))
    except transport_errors() as error:
        if time.monotonic() > deadline:
            raise BodyRefused(_overrun(timeout, size)) from None
        raise BodyRefused(
            f"the answer was cut off: {scrub(str(error) or type(error).__name__)}"
        ) from None
    finally:
        if watchdog is not None:
            watchdog.cancel()
    return b"".join(parts)


def _overrun(timeout, size):
    return (
        f"no complete answer within timeout={timeout:g} s ({size:,} bytes of the body had arrived)"
    )


def _too_large(size, limit, what):
    return (
        f"malformed response: its body is over {limit:,} bytes ({size:,} read or declared), "
        f"far more than {what} take; it was not parsed"
    )


def _shut_at(deadline, http_response):
    """Shut the answer's socket down at ``deadline`` (a timer to cancel), if reachable.

    A blocked read then returns at once instead of after the SDK's per-read timeout;
    the connection is dropped, not returned to the pool. Uses the HTTP core's
    documented ``network_stream`` extension; ``None`` where it has none.
    """
    stream = http_response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if not isinstance(sock, socket.socket):
        return None

    def shut():
        # The plain socket's shutdown, under any TLS layer: it wakes the reader.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), shut)
    timer.daemon = True
    timer.start()
    return timer
