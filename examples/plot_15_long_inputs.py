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
# Two embeddings of the same articles
# -----------------------------------
import numpy as np
from _backend import describe, make_embedder, make_parser, parse_args
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from skembed.datasets import load_bbc_news
from skembed.neighbors import CosineNearestNeighbors

parser = make_parser(__doc__)
parser.add_argument("--n-samples", type=int, default=120, help="articles to embed whole")
args = parse_args(parser)

news = load_bbc_news(n_samples=args.n_samples, random_state=0)
sentences = news["text"].str.split(r"(?<=[.!?])\s+")
# The article without its last two sentences is embedded; they are the query.
bodies = sentences.str[:-2].str.join(" ")
last = sentences.str[-2:].str.join(" ")

vectors = {}
for mode in ["truncate", "chunk"]:
    embedder = make_embedder(args, long_input=mode)
    vectors[mode] = embedder.fit_transform(bodies)
# A text that fits in one window gets the same vector either way.
too_long = np.any(vectors["truncate"] != vectors["chunk"], axis=1)
print(
    f"{len(news)} articles of {bodies.str.len().mean():.0f} characters on average, "
    f"embedded with {describe(embedder)}; {too_long.sum()} are longer than one window"
)

# %%
# Topic accuracy
# --------------
folds = StratifiedKFold(5, shuffle=True, random_state=0)
classifier = LogisticRegression(C=10, max_iter=2000)
print(f"\ntopic accuracy, 5-fold (chance {1 / news['topic'].nunique():.2f}):")
for mode, X in vectors.items():
    print(f"  {mode:9s} {cross_val_score(classifier, X, news['topic'], cv=folds).mean():.3f}")

# %%
# Find an article from its last sentences
# ---------------------------------------
queries = make_embedder(args).transform(last)
print(f"\narticle found first from its last two sentences (random: {1 / len(news):.3f}):")
for mode, X in vectors.items():
    _, found = CosineNearestNeighbors(n_neighbors=1).fit(X).kneighbors(queries)
    print(f"  {mode:9s} {np.mean(found[:, 0] == np.arange(len(news))):.3f}")
