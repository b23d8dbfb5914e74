"""
Semantic search over news articles
==================================

Embed the opening of 500 BBC News articles (headline and first sentence), embed a
query the same way, and return the articles whose vectors are closest by cosine
similarity, with :class:`~skembed.neighbors.CosineNearestNeighbors`. The query need
not share any word with the article it finds.

How well does it work? Each article's *second* paragraph (text the index never saw)
is used as a query for its own article: we report how often the article comes first
(recall@1) and in the top 10 (recall@10), against what picking at random would give.
"""

# %%
# Options and data
# ----------------
# Every example runs offline on the bundled local model; ``--backend openai`` switches
# to OpenAI's embeddings (see ``_backend.py``).
import numpy as np
from _backend import describe, make_embedder, make_parser, parse_args

from skembed.datasets import load_bbc_news
from skembed.neighbors import CosineNearestNeighbors

parser = make_parser(__doc__)
parser.add_argument("--n-samples", type=int, default=500, help="articles to index")
parser.add_argument("--n-queries", type=int, default=200, help="passages used as queries")
args = parse_args(parser)

news = load_bbc_news(n_samples=args.n_samples, random_state=0)
paragraphs = news["text"].str.split("\n").str
leads = news["headline"] + ". " + paragraphs[0]
embedder = make_embedder(args)

# %%
# Index the articles
# ------------------
# The vectors are unit-norm, so cosine similarity is a dot product; the index is exact.
X = embedder.fit_transform(leads)
index = CosineNearestNeighbors(n_neighbors=3).fit(X)
print(f"{len(news)} articles indexed: {X.shape[1]}-d vectors from {describe(embedder)}")

# %%
# Free-text queries
# -----------------
queries = [
    "central bank raises interest rates to fight inflation",
    "striker injured before the cup final",
    "new mobile phone virus spreads",
    "film wins prizes at awards ceremony",
]
distances, indices = index.kneighbors(embedder.transform(queries))
for query, dist, rows in zip(queries, distances, indices, strict=True):
    print(f"\n{query!r}")
    for d, row in zip(dist, rows, strict=True):
        print(f"  similarity {1 - d:.2f}  [{news['topic'][row]}] {news['headline'][row]}")

# %%
# Find an article from a passage of it
# ------------------------------------
# The second paragraph of an article is a query whose right answer we know.
rng = np.random.RandomState(0)
second = paragraphs[2].fillna("")  # paragraphs are separated by blank lines
has_second = np.flatnonzero(second.str.len() > 40)
asked = rng.choice(has_second, size=min(args.n_queries, len(has_second)), replace=False)
_, found = index.kneighbors(embedder.transform(second[asked]), n_neighbors=10)
recall_1 = np.mean(found[:, 0] == asked)
recall_10 = np.mean((found == asked[:, None]).any(axis=1))
print(f"\n{len(asked)} passages searched among {len(news)} articles:")
print(f"  recall@1  {recall_1:.2f}   (random: {1 / len(news):.3f})")
print(f"  recall@10 {recall_10:.2f}   (random: {10 / len(news):.3f})")
