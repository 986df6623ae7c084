r"""Embeddings (what experiments/embed.py gives): UMAP and t-SNE maps of raw pixels and
of each checkpoint's penultimate features, with kNN accuracy and silhouette of the
classes in every space; models on different datasets side by side.

  python experiments/evaluate.py --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --config=experiments/configs/evals/embed.py

Measured on the 2-core CPU (AMD EPYC, shared with other jobs, load ~4-5): 5 min 22 s
wall for mnist_cnn + kmnist_cnn (1-epoch checkpoints of the default configs), 5,000
test images each, 8 maps. kNN accuracy / silhouette, pixels: MNIST 0.931 / 0.050,
KMNIST 0.881 / -0.002 (as embed.py); features: MNIST 0.987 / 0.361, KMNIST 0.966 /
0.142; in UMAP 2-d, features: MNIST silhouette 0.817, KMNIST 0.150.
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
