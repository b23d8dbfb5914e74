"""Every backend keeps the contract the embedding job reads (``EmbeddingBackend``).

The job, the cost estimates and the budgets read the protocol's members directly, so a
missing or misspelt member must fail loudly, never pass for "free, of unknown width".
"""

import inspect
import typing

import numpy as np
import pytest

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer
from skembed._embed import embed_texts
from skembed.backends import EmbeddingBackend
from skembed.backends._local import LocalBackend
from skembed.backends._openai import OpenAIBackend
from skembed.backends._openai_batch import OpenAIBatchBackend
from tests._backends import local_backend, openai_backend, openai_batch_backend

ESTIMATORS = {
    "local": LocalEmbeddingTransformer(cache=None),
    "openai": OpenAIEmbeddingTransformer(cache=None),
    "openai-unknown-width": OpenAIEmbeddingTransformer(model="house-model", cache=None),
    "openai-batch": OpenAIEmbeddingTransformer(batch_api=True, cache=None),
}
MEMBERS = {
    "cache_namespace": (str,),
    "model_name": (str,),
    "n_dimensions": (int, type(None)),
    "pays_per_text": (bool,),
    "usd_per_million_tokens": (float, type(None)),
    "resumable": (bool,),
}
METHODS = {
    "check_inputs": ["texts"],
    "count_billed_tokens": ["texts"],
    "embed": ["texts", "on_result", "meter"],
}


def test_the_protocol_lists_the_members_checked_here():
    declared = set(typing.get_type_hints(EmbeddingBackend)) | {
        name for name in vars(EmbeddingBackend) if not name.startswith("_")
    }
    assert declared == set(MEMBERS) | set(METHODS)


@pytest.mark.parametrize("estimator", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_each_backend_has_every_member_of_the_right_kind(estimator):
    backend = estimator._make_backend()
    assert isinstance(backend, EmbeddingBackend)
    for name, kinds in MEMBERS.items():
        assert isinstance(getattr(backend, name), kinds), name
    for name, parameters in METHODS.items():
        signature = inspect.signature(getattr(backend, name))
        # A resumable backend (the Batch API) also takes the job's store.
        extra = ["store"] if name == "embed" and backend.resumable else []
        assert list(signature.parameters) == parameters + extra, name
    counts = backend.count_billed_tokens(["tiktoken is great!", "a"])
    assert counts.dtype == np.int64 and counts.shape == (2,)
    if not backend.pays_per_text:
        assert counts.tolist() == [0, 0]
        assert backend.usd_per_million_tokens == 0.0


@pytest.mark.parametrize(
    ("backend_class", "estimator"),
    [(LocalBackend, LocalEmbeddingTransformer), (OpenAIBackend, OpenAIEmbeddingTransformer)],
)
def test_backends_take_the_estimators_parameters_with_no_defaults(backend_class, estimator):
    parameters = inspect.signature(backend_class).parameters.values()
    assert all(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in parameters)
    assert {p.name for p in parameters} == {*estimator._backend_params, "progress"}
    assert set(estimator._backend_params) <= set(estimator().get_params())


def test_the_batch_backend_adds_only_its_own_settings():
    parameters = inspect.signature(OpenAIBatchBackend).parameters
    for estimator_given in ("poll_interval", "max_enqueued_tokens"):
        assert parameters[estimator_given].default is inspect.Parameter.empty
    # The other settings of the Batch API have no estimator parameter: their defaults
    # are written here only.
    own = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert own == {
        "poll_interval",
        "max_enqueued_tokens",
        "max_resubmits",
        "state_dir",
        "max_requests_per_batch",
        "max_inputs_per_batch",
        "max_file_bytes",
    }


def test_a_backend_missing_a_member_fails_loudly():
    class Misspelt:
        cache_namespace = "misspelt"
        model_name = "misspelt"
        n_dimensions = 2
        pays_per_txt = False  # the typo: not "free" by default
        usd_per_million_tokens = 0.0

        def check_inputs(self, texts):
            pass

        def count_billed_tokens(self, texts):
            return np.zeros(len(texts), dtype=np.int64)

        def embed(self, texts, on_result=None, meter=None):
            return np.tile(np.float32([0.6, 0.8]), (len(texts), 1))

    assert not isinstance(Misspelt(), EmbeddingBackend)
    with pytest.raises(AttributeError, match="pays_per_text"):
        embed_texts(["a"], Misspelt())


def test_a_backend_of_unknown_width_learns_it_from_its_first_answer(fake_server):
    fake_server.configure(extra_models={"house-model": 24})
    embedder = OpenAIEmbeddingTransformer(
        base_url=fake_server.base_url, model="house-model", cache=None
    )
    backend = embedder._backend()
    assert backend.n_dimensions is None
    assert embedder.transform(["one", "two"]).shape == (2, 24)
    assert backend.n_dimensions == 24
    assert backend.cache_namespace.endswith("|house-model|None")  # fixed when built


@pytest.mark.parametrize("kind", ["local", "openai", "openai-batch"])
def test_no_progress_bar_takes_no_tqdm_lock(kind, fake_server, tmp_path):
    # tqdm's write lock is shared by forked processes: one killed while holding it must
    # not block the others. Here another thread holds it, as a dead worker would.
    import threading

    from tqdm import tqdm

    make = {
        "local": lambda: local_backend(progress=False),
        "openai": lambda: openai_backend(base_url=fake_server.base_url, progress=False),
        "openai-batch": lambda: openai_batch_backend(
            base_url=fake_server.base_url, progress=False, poll_interval=0.05, state_dir=tmp_path
        ),
    }[kind]
    backend = make()
    store = {"store": None} if backend.resumable else {}
    lock = tqdm.get_lock()
    held, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    held.wait(10)
    try:
        done = []
        worker = threading.Thread(
            target=lambda: done.append(backend.embed(["one", "two"], **store)), daemon=True
        )
        worker.start()
        worker.join(60)
        assert done and done[0].shape[0] == 2, "embedding waited for tqdm's lock"
    finally:
        release.set()
        holder.join(10)
