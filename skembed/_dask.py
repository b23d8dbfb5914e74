"""Embed a dask column of texts partition by partition, in parallel on a Dask cluster.

Dask is imported only when :func:`embed_partitions` is called (extra ``skembed[dask]``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["embed_partitions"]


def embed_partitions(embedder, texts):
    """Embed a dask Series (or one-column DataFrame) of texts, one task per partition.

    A thin, safe wrapper around ``texts.map_partitions(embedder.transform)``: the
    result is a lazy dask DataFrame with one float32 column per dimension, named by
    ``embedder.get_feature_names_out()``, with the index and divisions of ``texts``,
    so it can be joined back to the table it came from. Empty partitions (common
    after a filter) give empty frames instead of the error ``transform`` raises
    for zero texts. The embedder travels to the workers without its SDK client or
    model session (they are rebuilt there); every worker reads and fills the cache
    given by its ``cache`` parameter, which must then be a store they all reach.

    Read more in the :ref:`User Guide <dask>`.

    Parameters
    ----------
    embedder : OpenAIEmbeddingTransformer or LocalEmbeddingTransformer
        The transformer to run on each partition. Its output width must be known
        before any text is embedded (give ``dimensions`` for a model skembed does not
        know).
    texts : dask.dataframe.Series or dask.dataframe.DataFrame with one column
        The texts. Missing and blank ones follow ``embedder.on_invalid_text``.

    Returns
    -------
    dask.dataframe.DataFrame
        Lazy embeddings, one row per text, aligned with ``texts``. Call
        ``.compute()`` for a pandas DataFrame, or ``.to_dask_array(lengths=True)``
        for a dask array.

    Raises
    ------
    TypeError
        If ``texts`` is not a dask Series or DataFrame.
    ValueError
        If ``texts`` has several columns, or the output width is not known.

    See Also
    --------
    OpenAIEmbeddingTransformer.transform : What runs on each partition.

    Examples
    --------
    >>> import dask.dataframe as dd
    >>> import pandas as pd
    >>> from skembed import LocalEmbeddingTransformer
    >>> from skembed import embed_partitions
    >>> frame = pd.DataFrame({"text": ["A cat sits.", "Stocks fell.", "A dog runs."]})
    >>> ddf = dd.from_pandas(frame, npartitions=2)
    >>> vectors = embed_partitions(LocalEmbeddingTransformer(cache=None), ddf["text"])
    >>> vectors.npartitions, vectors.compute().shape
    (2, (3, 384))
    """
    import dask.dataframe as dd

    if not isinstance(texts, (dd.Series, dd.DataFrame)):
        raise TypeError(
            "embed_partitions needs a dask Series or a one-column dask DataFrame of texts, "
            f"got {type(texts).__name__}; for in-memory texts call embedder.transform."
        )
    if isinstance(texts, dd.DataFrame) and len(texts.columns) != 1:
        raise ValueError(
            f"embed_partitions needs one text column, got a DataFrame with "
            f"{len(texts.columns)} columns {list(texts.columns)!r}; select one (ddf['text'])."
        )
    names = [str(name) for name in embedder.get_feature_names_out()]
    meta = pd.DataFrame(
        np.empty((0, len(names)), dtype=np.float32), columns=names, index=texts._meta.index
    )
    return texts.map_partitions(_embed_partition, embedder, names, meta=meta)


def _embed_partition(part, embedder, names):
    """Embed one pandas partition into a frame with the partition's index."""
    if len(part) == 0:
        vectors = np.empty((0, len(names)), dtype=np.float32)
    else:
        vectors = embedder.transform(part)
    return pd.DataFrame(vectors, index=part.index, columns=names)
