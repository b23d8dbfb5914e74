"""
Counting tokens and estimating the cost before a job
====================================================

OpenAI bills embeddings by the token. Before embedding a corpus,
:meth:`OpenAIEmbeddingTransformer.estimate_cost <skembed.OpenAIEmbeddingTransformer.estimate_cost>`
counts, with the model's own tokenizer (tiktoken, offline), the tokens that
``transform`` would send: each distinct text once, texts already in the cache for
free, long texts as the ``long_input`` policy would cut them. It sends nothing and
needs no API key, so this example runs offline.

Then ``max_cost`` (or ``max_tokens``) on the transformer, or a ``skembed.budget()``
block around a whole grid search, refuses a job that would cost more, before
anything is sent.
"""

# %%
# Estimate two corpora with three models
# --------------------------------------
# ``SKEMBED_EXAMPLE_BACKEND=openai`` (with ``OPENAI_API_KEY``) also runs the last
# section, which embeds 200 reviews for real; everything else is offline.
import os

import matplotlib.pyplot as plt
import numpy as np

import skembed
from skembed import OpenAIEmbeddingTransformer
from skembed.datasets import load_bbc_news, load_clothing_reviews

BACKEND = os.environ.get("SKEMBED_EXAMPLE_BACKEND", "local")
MODELS = ["text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"]
corpora = {
    "clothing reviews": load_clothing_reviews()["review_text"],
    "BBC News articles": load_bbc_news()["text"],
}
dollars = {}  # (corpus, model) -> USD
for corpus, texts in corpora.items():
    print(f"{corpus}: {len(texts):,} rows")
    for model in MODELS:
        estimate = OpenAIEmbeddingTransformer(model=model, on_invalid_text="zero").estimate_cost(
            texts
        )
        dollars[corpus, model] = estimate.usd
        print(f"  {estimate}")
    print(
        f"  {estimate.n_tokens / estimate.n_to_send:.0f} tokens per text on average; "
        f"blank rows and repeats are never sent"
    )

# %%
# What each corpus costs with each model
# --------------------------------------
fig, ax = plt.subplots(figsize=(8, 4))
positions = np.arange(len(MODELS))
for offset, corpus in [(-0.2, "clothing reviews"), (0.2, "BBC News articles")]:
    usd = [dollars[corpus, model] for model in MODELS]
    bars = ax.bar(positions + offset, usd, 0.4, label=f"{corpus} ({len(corpora[corpus]):,})")
    ax.bar_label(bars, [f"${value:.3f}" for value in usd], fontsize=8)
ax.set_xticks(positions, MODELS)
ax.set_ylabel("estimated cost (USD)")
ax.set_title("Estimated before sending anything: the whole corpus, once")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# The Batch API halves the price
# ------------------------------
texts = corpora["clothing reviews"]
for batch_api in (False, True):
    embedder = OpenAIEmbeddingTransformer(batch_api=batch_api, on_invalid_text="zero")
    print(f"batch_api={batch_api!s:5s}: {embedder.estimate_cost(texts)}")

# %%
# A limit stops an expensive job before it starts
# -----------------------------------------------
# The check runs before any request, so this works without a key or a network.
embedder = OpenAIEmbeddingTransformer(max_cost=0.001, on_invalid_text="zero")
try:
    embedder.transform(corpora["BBC News articles"])
except skembed.BudgetExceededError as error:
    print(f"refused: {error}")

# %%
# Cached texts are free
# ---------------------
# With a key (``BACKEND = "openai"``), embed a few reviews, then estimate again: they
# are now counted as cached. ``skembed.budget`` caps everything inside the block.
if BACKEND == "openai":
    embedder = OpenAIEmbeddingTransformer(on_invalid_text="zero")
    with skembed.budget(max_cost=0.01) as spent:
        embedder.transform(texts[:200])
    print(f"embedded 200 reviews for ${spent.usd:.6f}; now: {embedder.estimate_cost(texts)}")
