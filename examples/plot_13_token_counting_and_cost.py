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
from _backend import make_parser, parse_args

import skembed
from skembed import OpenAIEmbeddingTransformer
from skembed.datasets import load_bbc_news, load_clothing_reviews

parser = make_parser(__doc__)
parser.add_argument("--max-cost", type=float, default=0.001, help="USD limit for the demo")
args = parse_args(parser)

corpora = {
    "clothing reviews": load_clothing_reviews()["review_text"],
    "BBC News articles": load_bbc_news()["text"],
}
for corpus, texts in corpora.items():
    print(f"{corpus}: {len(texts):,} rows")
    for model in ["text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"]:
        embedder = OpenAIEmbeddingTransformer(
            model=model, base_url=args.base_url, on_invalid_text="zero"
        )
        estimate = embedder.estimate_cost(texts)
        print(f"  {estimate}")
    print(
        f"  {estimate.n_tokens / estimate.n_to_send:.0f} tokens per text on average; "
        f"blank rows and repeats are never sent"
    )

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
embedder = OpenAIEmbeddingTransformer(
    max_cost=args.max_cost, base_url=args.base_url, on_invalid_text="zero"
)
try:
    embedder.transform(corpora["BBC News articles"])
except skembed.BudgetExceededError as error:
    print(f"\nrefused: {error}")

# %%
# Cached texts are free
# ---------------------
# With a key (``--backend openai``), embed a few reviews, then estimate again: they
# are now counted as cached. ``skembed.budget`` caps everything inside the block.
if args.backend == "openai":
    embedder = OpenAIEmbeddingTransformer(
        model=args.model, dimensions=args.dimensions, base_url=args.base_url, on_invalid_text="zero"
    )
    with skembed.budget(max_cost=0.01) as spent:
        embedder.transform(texts[:200])
    print(f"\nembedded 200 reviews for ${spent.usd:.6f}; now: {embedder.estimate_cost(texts)}")
