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
# Choose the embedding model
# --------------------------
# Offline on the bundled local model; ``SKEMBED_EXAMPLE_BACKEND=openai`` (with
# ``OPENAI_API_KEY``) switches to OpenAI's embeddings.
import os

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer

BACKEND = os.environ.get("SKEMBED_EXAMPLE_BACKEND", "local")
if BACKEND == "openai":
    embedder = OpenAIEmbeddingTransformer(model="text-embedding-3-small")
else:
    embedder = LocalEmbeddingTransformer()

# %%
# Embed the articles
# ------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import RocCurveDisplay, roc_auc_score
from sklearn.model_selection import train_test_split

from skembed.datasets import load_bbc_news
from skembed.neighbors import CosineNearestNeighbors

news = load_bbc_news(n_samples=500, random_state=0)
X = embedder.fit_transform(news["headline"] + ". " + news["text"].str.split("\n").str[0])
topics = news["topic"].to_numpy()

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
detector = CosineNearestNeighbors(n_neighbors=5).fit(X[fit_rows])
scores = detector.score_samples(np.vstack([X[held_out], embedder.transform(OFF_TOPIC)]))
is_normal = np.r_[np.ones(len(held_out)), np.zeros(len(OFF_TOPIC))]
print(
    f"{len(OFF_TOPIC)} off-topic texts among {len(held_out)} held-out articles: "
    f"ROC-AUC {roc_auc_score(is_normal, scores):.3f} (random: 0.5)"
)
print("  least normal held-out articles:")
for row in held_out[np.argsort(scores[: len(held_out)])[:3]]:
    print(f"    [{topics[row]}] {news['headline'][row]}")

# %%
# A topic never seen during fit
# -----------------------------
# Harder: the novel articles are news too, only on another subject.
by_topic = {}
for unseen in np.unique(topics):
    seen = np.flatnonzero(topics != unseen)
    fit_seen, held_seen = train_test_split(seen, test_size=0.2, random_state=0)
    novel = np.flatnonzero(topics == unseen)
    novelty = CosineNearestNeighbors(n_neighbors=5).fit(X[fit_seen])
    topic_scores = novelty.score_samples(X[np.r_[held_seen, novel]])
    normal = np.r_[np.ones(len(held_seen)), np.zeros(len(novel))]
    print(f"unseen topic {unseen:14s} ROC-AUC {roc_auc_score(normal, topic_scores):.3f}")
    by_topic[unseen] = normal, topic_scores

# %%
# Scores and ROC curves
# ---------------------
# Left, the normality scores of the held-out articles and of the off-topic texts;
# right, each left-out topic detected among the held-out articles of the others.
fig, (histogram, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
bins = np.linspace(scores.min(), scores.max(), 30)
histogram.hist(scores[is_normal == 1], bins=bins, alpha=0.7, label="held-out news")
histogram.hist(scores[is_normal == 0], bins=bins, alpha=0.7, label="off-topic texts")
histogram.set_xlabel("score_samples (higher is more normal)")
histogram.set_ylabel("texts")
histogram.set_title("Off-topic texts among news")
histogram.legend()
for unseen, (normal, topic_scores) in by_topic.items():
    # The anomaly is the positive class: rank by minus the normality score.
    RocCurveDisplay.from_predictions(1 - normal, -topic_scores, ax=curves, name=unseen)
curves.plot([0, 1], [0, 1], ":", color="grey")
curves.set_title("A topic left out of fit, found as an anomaly")
curves.legend(title="left-out topic", loc="lower right")
fig.tight_layout()
plt.show()
