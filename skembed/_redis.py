"""The Redis connection kit shared by the Redis cache store and the Redis rate limiter.

Both take a ``redis://`` URL, keep a password given in it out of their repr, errors and
pickles, read the server's password from an environment variable otherwise, and build
their client the same way. The ``redis`` package is an optional extra
(``skembed[redis]``): it is imported when a client is first needed, never by importing
this module.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

__all__ = ["DEFAULT_PASSWORD_ENV", "import_redis", "join_url", "make_client", "split_password"]

#: The environment variable holding the server's password, unless told otherwise.
DEFAULT_PASSWORD_ENV = "SKEMBED_REDIS_PASSWORD"


def import_redis(needed_by="RedisEmbeddingCache"):
    """The ``redis`` client package, or an ImportError naming the extra to install.

    Parameters
    ----------
    needed_by : str, default="RedisEmbeddingCache"
        What needs it, for the message.

    Returns
    -------
    module
        The ``redis`` package.
    """
    # Imported on first use: the package is an optional extra.
    try:
        import redis
    except ImportError as exc:
        raise ImportError(
            f"{needed_by} needs the 'redis' client package: pip install 'skembed[redis]'."
        ) from exc
    return redis


def split_password(url):
    """Split a Redis URL into the URL without its password, and the password.

    A password can sit in the user part (``redis://user:secret@host``) or in the
    query (``?password=secret``); both are removed.

    Parameters
    ----------
    url : str
        ``redis://``, ``rediss://`` or ``unix://`` URL.

    Returns
    -------
    clean_url : str
    password : str or None

    Examples
    --------
    >>> split_password("redis://:s3cret@cache.internal:6380/2")
    ('redis://cache.internal:6380/2', 's3cret')
    >>> split_password("rediss://app@cache.internal/0?password=s3cret&ssl_cert_reqs=none")
    ('rediss://app@cache.internal/0?ssl_cert_reqs=none', 's3cret')
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            "A Redis cache URL must start with redis://, rediss:// or unix://; got a URL "
            f"with scheme {parts.scheme!r}."
        )
    password = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, secret = userinfo.partition(":")
        if colon:
            password = unquote(secret)
        netloc = f"{user}@{host}" if user else host
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "password":
            password = value
        else:
            query.append((name, value))
    return join_url(parts, netloc, urlencode(query)), password or None


def join_url(parts, netloc, query):
    """Put a split URL back together with another network location and query.

    Parameters
    ----------
    parts : urllib.parse.SplitResult
        The URL's scheme, path and fragment.
    netloc : str
        ``[user[:password]@]host[:port]``, possibly empty (``unix:///path``).
    query : str
        Encoded query, possibly empty.

    Returns
    -------
    str

    Examples
    --------
    >>> from urllib.parse import urlsplit
    >>> join_url(urlsplit("unix:///tmp/redis.sock?db=1"), "", "db=2")
    'unix:///tmp/redis.sock?db=2'
    """
    # Not urlunsplit: it drops the "//" of an empty host (unix:///path).
    url = f"{parts.scheme}://{netloc}{parts.path}"
    return url + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def make_client(url, *, password, password_env, socket_timeout, needed_by="RedisEmbeddingCache"):
    """A client for ``url``, authenticated with ``password`` or else ``$password_env``.

    Parameters
    ----------
    url : str
        The URL without its password.
    password : str or None
        The password given in the URL (kept in memory only), if any.
    password_env : str or None
        Environment variable read, at this call, when ``password`` is ``None``; unset,
        empty or ``None`` means no password.
    socket_timeout : float
        Seconds to wait for the server to connect or answer.
    needed_by : str, default="RedisEmbeddingCache"
        What needs the client, for the message if the package is missing.

    Returns
    -------
    redis.Redis
    """
    redis = import_redis(needed_by)
    return redis.Redis.from_url(
        url,
        password=password or os.environ.get(password_env or "") or None,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
    )
