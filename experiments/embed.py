r"""2-D embeddings of MNIST beside KMNIST, raw pixels and penultimate features: why
KMNIST is harder, in one picture, with numbers on how separable the classes are.

  python experiments/embed.py [--workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn]
      [--datasets=mnist,kmnist] [--methods=umap,tsne] [--num_points=5000] [--seed=0]
      [--split=test] [--step=best|latest|N] [--out=workdirs/embeddings]

An alias of experiments/evaluate.py --config=experiments/configs/evals/embed.py with
one column per dataset (kmnist_jax/evaluators/embedding.py): for each dataset,
--num_points images (a random subsample, deterministic from --seed) embedded with UMAP
and t-SNE from raw pixels and from the penultimate features of the --workdirs
checkpoint trained on it (one per dataset; none: raw pixels only). Writes --out
(replaced whole): embeddings.png, separability.png (5-fold kNN accuracy and silhouette
in each space), separability.md / .csv / .json, embeddings.npz (coordinates, labels,
indices), report.md, metrics.json. Several minutes on 2 cores at the defaults, mostly
t-SNE.
"""

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)
from absl import flags, logging

from kmnist_jax import cli
from kmnist_jax.experiments.configs.evals import embed as preset
from kmnist_jax.studies import evaluate

F = flags
F.DEFINE_list("workdirs", [], "Checkpoints whose penultimate features to embed "
              "(one per dataset); none: raw pixels only.")
F.DEFINE_list("datasets", ["mnist", "kmnist"], "Datasets, one column each (the "
              "workdirs' datasets are added).")
F.DEFINE_list("methods", ["umap", "tsne"], "Embedding methods: umap, tsne.")
F.DEFINE_integer("num_points", 5000, "Images per dataset (random subsample).")
F.DEFINE_integer("seed", 0, "Seed of the subsample and of the embeddings.")
F.DEFINE_enum("split", "test", ["test", "train"], "Split to draw the images from.")
F.DEFINE_string("step", "best", "Checkpoint step: best, latest or a number.")
F.DEFINE_string("out", "workdirs/embeddings", "Output folder.")
F.DEFINE_string("data_dir", "", "Datasets folder (default: $KMNIST_JAX_DATA_DIR).")
F.DEFINE_string("cjk_font", "auto", "Hiragana font: auto, none, or a family / file.")
F.DEFINE_integer("knn_k", 5, "Neighbours of the kNN separability score.")
F.DEFINE_integer("tsne_iter", 1000, "t-SNE optimisation steps (>= 250).")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  v = F.FLAGS
  cfg = preset.get_config().to_dict()
  cfg["evals"]["embedding"].update(
      methods=tuple(v.methods), num_points=v.num_points, seed=v.seed, split=v.split,
      knn_k=v.knn_k, tsne_iter=v.tsne_iter, pixels=True)
  cfg["cjk_font"] = v.cjk_font
  evaluate.run_config(v.workdirs, cfg, step=v.step, out=v.out,
                      data_dir=v.data_dir or None, by="dataset", datasets=v.datasets,
                      side_by_side=True)


if __name__ == "__main__":
  cli.run(main)
