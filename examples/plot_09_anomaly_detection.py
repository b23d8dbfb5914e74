"""
Anomaly detection: texts unlike the ones seen before
====================================================

:meth:`~skembed.neighbors.CosineNearestNeighbors.score_samples`
scores how normal a text is: minus its mean cosine distance to its nearest fitted
texts (higher is more normal, as for
:class:`~sklearn.neighbors.LocalOutlierFactor`). Fit it on normal texts, then score
new ones (novelty detection).

Two checks, on BBC News articles, each scored by ROC-AUC (0.5 = no better than
random, 1 = every anomaly below every normal text):

1. off-topic sentences (cooking, gardening, weather, nature; written for this
   example) slipped among held-out news articles;
2. a whole topic left out of the fitted articles, then detected among held-out
   articles of the other topics.
"""

# %%
# Embed the articles
# ------------------
import numpy as np
from _backend import describe, make_embedder, make_parser, parse_args
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from skembed.datasets import load_bbc_news
from skembed.neighbors import CosineNearestNeighbors

parser = make_parser(__doc__)
parser.add_argument("--n-samples", type=int, default=500, help="news articles to use")
parser.add_argument("--n-neighbors", type=int, default=5)
args = parse_args(parser)

news = load_bbc_news(n_samples=args.n_samples, random_state=0)
embedder = make_embedder(args)
X = embedder.fit_transform(news["headline"] + ". " + news["text"].str.split("\n").str[0])
topics = news["topic"].to_numpy()
print(f"{len(news)} articles embedded with {describe(embedder)}")

# %%
# Off-topic texts among news
# --------------------------
OFF_TOPIC = [
    "Knead the dough for ten minutes, then leave it to rise in a warm place.",
    "Water tomato plants at the base in the morning so the leaves stay dry.",
    "The comet will be visible low on the north-western horizon after sunset.",
    "Add a pinch of salt to the caramel once it turns a deep amber colour.",
    "Prune roses in late winter, cutting just above an outward-facing bud.",
    "A warm front will bring drizzle to western coasts by Thursday afternoon.",
    "Octopuses can change the colour and texture of their skin in a fraction of a second.",
    "Soak the chickpeas overnight and simmer them for an hour until tender.",
    "The hiking trail climbs through pine forest before reaching the alpine lake.",
    "Honeybees communicate the direction of flowers with a waggle dance.",
    "Sprinkle grated parmesan over the risotto just before serving.",
    "Migrating geese fly in a V formation to save energy.",
    "Repot the orchid when its roots start to grow over the edge of the pot.",
    "Jupiter's great red spot is a storm larger than the Earth.",
    "Whisk the egg whites until they form stiff peaks.",
    "The lighthouse keeper climbed 120 steps to light the lamp each evening.",
    "Sourdough starter needs feeding with flour and water every day.",
    "Frost is likely in sheltered valleys tonight under clear skies.",
    "Coral reefs grow only a few centimetres a year.",
    "Blanch the green beans, then plunge them into iced water.",
]
fit_rows, held_out = train_test_split(np.arange(len(news)), test_size=0.2, random_state=0)
detector = CosineNearestNeighbors(n_neighbors=args.n_neighbors).fit(X[fit_rows])
scores = detector.score_samples(np.vstack([X[held_out], embedder.transform(OFF_TOPIC)]))
is_normal = np.r_[np.ones(len(held_out)), np.zeros(len(OFF_TOPIC))]
print(
    f"\n{len(OFF_TOPIC)} off-topic texts among {len(held_out)} held-out articles: "
    f"ROC-AUC {roc_auc_score(is_normal, scores):.3f} (random: 0.5)"
)
print(
    f"  mean score: articles {scores[is_normal == 1].mean():.3f}, "
    f"off-topic {scores[is_normal == 0].mean():.3f}"
)
print("  least normal held-out articles:")
for row in held_out[np.argsort(scores[: len(held_out)])[:3]]:
    print(f"    [{topics[row]}] {news['headline'][row]}")

# %%
# A topic never seen during fit
# -----------------------------
# Harder: the novel articles are news too, only on another subject.
for unseen in np.unique(topics):
    seen = np.flatnonzero(topics != unseen)
    fit_rows, held_out = train_test_split(seen, test_size=0.2, random_state=0)
    novel = np.flatnonzero(topics == unseen)
    detector = CosineNearestNeighbors(n_neighbors=args.n_neighbors).fit(X[fit_rows])
    scores = detector.score_samples(X[np.r_[held_out, novel]])
    auc = roc_auc_score(np.r_[np.ones(len(held_out)), np.zeros(len(novel))], scores)
    print(f"unseen topic {unseen:14s} ROC-AUC {auc:.3f} (random: 0.5)")
