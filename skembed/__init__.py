"""skembed: text embeddings as fast, reliable scikit-learn estimators.

The public estimators are imported on first use, so ``import skembed`` stays light and
never imports the OpenAI SDK or onnxruntime by itself.
"""

from importlib import import_module

__version__ = "0.1.0.dev0"

_PUBLIC = {
    "OpenAIEmbeddingTransformer": "._transformer",
    "LocalEmbeddingTransformer": "._local",
    "ZeroShotEmbeddingClassifier": "._zero_shot",
    "CosineNearestNeighbors": ".neighbors",
    "LinearEmbeddingAdapter": "._adapter",
    "EmbeddingCache": "._cache",
    "RedisEmbeddingCache": "._cache",
    "CacheError": "._cache",
    "CacheCorruptionError": "._cache",
    "BudgetExceededError": ".backends._base",
    "EmbeddingError": ".backends._base",
    "EmbeddingAPIError": ".backends._base",
    "InputTooLongError": ".backends._base",
    "CostEstimate": "._cost",
    "UsageReport": "._usage",
    "budget": "._spending",
    "track_usage": "._usage",
    "embed_partitions": "._dask",
    "local_models": "._local",
    "LanguageWarning": ".backends._local_models",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name], __name__), name)
    raise AttributeError(f"module 'skembed' has no attribute {name!r}")


def __dir__():
    return [*globals(), *__all__]
