"""
Texts in Chinese, Japanese, Korean and English
==============================================

The default local model, all-MiniLM-L6-v2, was trained on English: it gives Chinese,
Japanese or Korean text vectors that carry little meaning (and skembed says so with a
:class:`~skembed.LanguageWarning`). ``LocalEmbeddingTransformer(model=
"use-multilingual-v3")`` is a bundled multilingual model (Universal Sentence Encoder
multilingual v3, 16 languages) that puts a sentence and its translations close
together, so one pipeline serves reviews or tickets in any of its languages, and a
query in one language finds documents in another.

Here: six short sentences, each in four languages; each text is matched to the most
similar text of each other language, and the heatmap shows all the cosine
similarities.
"""

# %%
# The texts and the model
# -----------------------
import os

import matplotlib.pyplot as plt
import numpy as np

from skembed import LocalEmbeddingTransformer, OpenAIEmbeddingTransformer, local_models

# "local" (offline) or "openai" (OpenAI's models are multilingual too; key in OPENAI_API_KEY).
BACKEND = os.environ.get("SKEMBED_EXAMPLE_BACKEND", "local")
MODEL = "use-multilingual-v3"  # try "all-MiniLM-L6-v2", the English default
if BACKEND == "openai":
    MODEL = "text-embedding-3-small"
    embedder = OpenAIEmbeddingTransformer(model=MODEL, dimensions=256)
else:
    embedder = LocalEmbeddingTransformer(model=MODEL)

sentences = [
    (
        "The package arrived late.",
        "包裹到得很晚。",
        "荷物が遅れて届きました。",
        "택배가 늦게 도착했어요.",
    ),
    (
        "This soup is too salty.",
        "这个汤太咸了。",
        "このスープはしょっぱすぎます。",
        "이 국은 너무 짜요.",
    ),
    (
        "I cannot log in to my account.",
        "我无法登录我的账户。",
        "アカウントにログインできません。",
        "계정에 로그인할 수 없어요.",
    ),
    (
        "It rained all week.",
        "下了一整周的雨。",
        "一週間ずっと雨でした。",
        "일주일 내내 비가 왔어요.",
    ),
    (
        "The dress fits perfectly.",
        "这条裙子非常合身。",
        "このドレスはぴったりです。",
        "이 원피스는 딱 맞아요.",
    ),
    (
        "Our team won the match.",
        "我们队赢了比赛。",
        "私たちのチームが試合に勝ちました。",
        "우리 팀이 경기에서 이겼어요.",
    ),
]
languages = ["en", "zh", "ja", "ko"]
texts = [text for row in sentences for text in row]
meaning = np.repeat(np.arange(len(sentences)), len(languages))
language = np.tile(np.arange(len(languages)), len(sentences))

print(local_models()[["dimensions", "size_mb", "licence"]].to_string())
X = embedder.fit_transform(texts)

# %%
# Matching each text to its translation
# -------------------------------------
# For every text and every other language: is the most similar text of that
# language its translation? Chance is 1 in 6.
similarity = X @ X.T
hits = [
    meaning[np.flatnonzero(language == other)[np.argmax(similarity[i, language == other])]]
    == meaning[i]
    for i in range(len(texts))
    for other in range(len(languages))
    if other != language[i]
]
print(f"{MODEL}: cross-lingual match {np.mean(hits):.2f} (chance {1 / len(sentences):.2f})")

# %%
# The similarity heatmap
# ----------------------
# Texts are grouped by meaning, so translations form the bright 4 x 4 blocks on the
# diagonal.
fig, ax = plt.subplots(figsize=(7, 6))
image = ax.imshow(similarity, vmin=0, vmax=1, cmap="viridis")
labels = [f"{languages[language[i]]} {meaning[i]}" for i in range(len(texts))]
ax.set_xticks(range(len(texts)), labels, rotation=90, fontsize=7)
ax.set_yticks(range(len(texts)), labels, fontsize=7)
ax.set_title(f"Cosine similarity, {MODEL} (match {np.mean(hits):.2f})")
fig.colorbar(image, ax=ax, shrink=0.8)
fig.tight_layout()
plt.show()
