"""
Long inputs: truncate or chunk-and-average?
===========================================

Every embedding model reads a limited number of tokens (256 word pieces for the
bundled MiniLM model, 8192 tokens for OpenAI's). A longer text is either

- **truncated**: only its beginning is embedded (``long_input="truncate"``), or
- **chunked**: cut into consecutive windows that are embedded separately and
  averaged, weighted by their lengths, then re-normalised (``long_input="chunk"``);
  every part of the text counts, at the price of embedding all of it.

(The default, ``"error"`` for OpenAI, refuses long texts so that nothing is silently
dropped; the local model truncates by default, as sentence-transformers does.)

We compare both on full BBC News articles with two downstream tasks: predicting the
topic (which the opening of an article already gives away), and finding an article
from its last two sentences (which truncation never reads). The comparison is made
with the local model: within OpenAI's 8192-token window no BBC article is too long,
and both policies give the same vectors.
"""

# %%
# Choose the embedding model
# --------------------------
# Offline on the bundled local model; ``SKEMBED_EXAMPLE_BACKEND=openai`` (with
# ``OPENAI_API_KEY``) switches to OpenAI's embeddings (where both give the same).
import os

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer

BACKEND = os.environ.get("SKEMBED_EXAMPLE_BACKEND", "local")


def make_embedder(long_input):
    if BACKEND == "openai":
        return OpenAIEmbeddingTransformer(model="text-embedding-3-small", long_input=long_input)
    return LocalEmbeddingTransformer(long_input=long_input)


# %%
# Two embeddings of the same articles
# -----------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from skembed.datasets import load_bbc_news
from skembed.neighbors import CosineNearestNeighbors

news = load_bbc_news(n_samples=120, random_state=0)
sentences = news["text"].str.split(r"(?<=[.!?])\s+")
# The article without its last two sentences is embedded; they are the query.
bodies = sentences.str[:-2].str.join(" ")
last = sentences.str[-2:].str.join(" ")

vectors = {mode: make_embedder(mode).fit_transform(bodies) for mode in ["truncate", "chunk"]}
# A text that fits in one window gets the same vector either way.
too_long = np.any(vectors["truncate"] != vectors["chunk"], axis=1)
print(
    f"{len(news)} articles of {bodies.str.len().mean():.0f} characters on average; "
    f"{too_long.sum()} are longer than one window"
)

# %%
# Topic accuracy, and finding an article from its last sentences
# --------------------------------------------------------------
folds = StratifiedKFold(5, shuffle=True, random_state=0)
classifier = LogisticRegression(C=10, max_iter=2000)
queries = make_embedder("truncate").transform(last)  # short: one window
accuracy, found_first = {}, {}
for mode, X in vectors.items():
    accuracy[mode] = cross_val_score(classifier, X, news["topic"], cv=folds).mean()
    _, found = CosineNearestNeighbors(n_neighbors=1).fit(X).kneighbors(queries)
    found_first[mode] = np.mean(found[:, 0] == np.arange(len(news)))
    print(
        f"  {mode:9s} topic accuracy {accuracy[mode]:.3f}, "
        f"article found from its last sentences {found_first[mode]:.3f}"
    )

fig, ax = plt.subplots(figsize=(7, 4))
positions = np.arange(2)
for offset, mode in [(-0.2, "truncate"), (0.2, "chunk")]:
    bars = ax.bar(positions + offset, [accuracy[mode], found_first[mode]], 0.4, label=f'"{mode}"')
    ax.bar_label(bars, fmt="%.2f")
ax.set_xticks(
    positions,
    [
        f"topic accuracy (5-fold; chance {1 / news['topic'].nunique():.2f})",
        f"found from its last sentences\n(recall@1; random {1 / len(news):.3f})",
    ],
)
ax.set_ylim(0, 1.25)
ax.set_title(f"{len(news)} whole BBC News articles, {too_long.sum()} longer than one window")
ax.legend(title="long_input", loc="upper right", ncols=2)
fig.tight_layout()
plt.show()
