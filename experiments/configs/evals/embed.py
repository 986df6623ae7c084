r"""Embeddings (what experiments/embed.py gives): UMAP and t-SNE maps of raw pixels and
of each checkpoint's penultimate features, with kNN accuracy and silhouette of the
classes in every space; models on different datasets side by side.

  python experiments/evaluate.py --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --config=experiments/configs/evals/embed.py

Measured: MEASURED
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.title = "Embeddings"
  c.cjk_font = "auto"
  c.evals = ml_collections.ConfigDict()
  c.evals.embedding = dict(
      type="embedding",
      dataset="",                # default: each checkpoint's own
      split="test",              # test | train
      num_points=5000,           # random subsample per checkpoint
      seed=0,
      methods="umap,tsne",
      knn_k=5,
      tsne_iter=1000,
      pixels=True,               # raw pixels too (a row of their own)
  )
  return c
