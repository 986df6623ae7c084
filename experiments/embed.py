r"""2-D embeddings of MNIST beside KMNIST, raw pixels and penultimate features: why
KMNIST is harder, in one picture, with numbers on how separable the classes are.

  python experiments/embed.py [--workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn]
      [--datasets=mnist,kmnist] [--methods=umap,tsne] [--num_points=5000] [--seed=0]
      [--split=test] [--step=best|latest|N] [--out=workdirs/embeddings]

For each dataset, `--num_points` images of the split (a random subsample, the same for
every representation, deterministic from --seed) are embedded in 2-D with UMAP
(umap-learn) and t-SNE (scikit-learn; after PCA to 50 dimensions) from:

  * raw pixels (784 values in [0, 1]);
  * the penultimate features (``model.features``) of each --workdirs checkpoint,
    computed on the dataset it was trained on (one checkpoint per dataset).

Writes to --out (replaced whole, via a temporary folder):

  embeddings.png     one column per dataset, one row per (representation, method),
                     points coloured by class (hiragana labels when a CJK font is
                     installed, romanized otherwise)
  separability.png   5-fold kNN accuracy (k=5) and silhouette score of the classes,
  separability.json  in each 2-D embedding and in the original space
  embeddings.npz     the 2-D coordinates, labels and subsample indices
  report.md          the table and the pictures

Time on 2 CPU cores, defaults (2 datasets x 2 representations x 2 methods, 5000 points
each): several minutes, mostly t-SNE; the first UMAP call compiles numba code (~1 min).
Use --methods=umap or a smaller --num_points for a quick look.
"""

from __future__ import annotations

import os
import sys
import warnings
import zlib

import _bootstrap  # noqa: F401  (puts the repo root on sys.path)
import numpy as np
from absl import app, flags, logging
from tqdm.auto import tqdm

import analyze
from kmnist_jax import data as data_lib
from kmnist_jax import metrics, plots
from kmnist_jax.errors import UserError, unknown

FLAGS = flags.FLAGS


def define_flags():
  """The command-line flags (defined only when run as a script)."""
  flags.DEFINE_list("workdirs", [], "Checkpoints whose penultimate features to embed "
                    "(one per dataset); none: raw pixels only.")
  flags.DEFINE_list("datasets", ["mnist", "kmnist"], "Datasets, one column each (the "
                    "workdirs' datasets are added).")
  flags.DEFINE_list("methods", ["umap", "tsne"], "Embedding methods: umap, tsne.")
  flags.DEFINE_integer("num_points", 5000, "Images per dataset (random subsample).")
  flags.DEFINE_integer("seed", 0, "Seed of the subsample and of the embeddings.")
  flags.DEFINE_enum("split", "test", ["test", "train"], "Split to draw the images from.")
  flags.DEFINE_string("step", "best", "Checkpoint step: best, latest or a number.")
  flags.DEFINE_string("out", "workdirs/embeddings", "Output folder.")
  flags.DEFINE_string("data_dir", "", "Datasets folder (default: $KMNIST_JAX_DATA_DIR, "
                      "else ~/kmnist_jax_data).")
  flags.DEFINE_string("cjk_font", "auto", "Font for hiragana labels: auto, none, or a "
                      "family / file.")
  flags.DEFINE_integer("knn_k", 5, "Neighbours of the kNN separability score.")
  flags.DEFINE_integer("tsne_iter", 1000, "t-SNE optimisation steps (>= 250).")


METHODS = ("umap", "tsne")
METHOD_TITLES = {"umap": "UMAP", "tsne": "t-SNE"}


def _import_umap():
  """umap-learn, without its optional TensorFlow import (ParametricUMAP is not used;
  importing TensorFlow would add ~30 s)."""
  blocked = [m for m in ("tensorflow", "keras") if m not in sys.modules]
  for m in blocked:
    sys.modules[m] = None  # makes `import tensorflow` fail fast inside umap
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      import umap
  except ImportError as e:
    raise UserError(f"--methods=umap needs umap-learn, which is not importable ({e}); "
                    "pip install umap-learn==0.5.12, or use --methods=tsne") from None
  finally:
    for m in blocked:
      if sys.modules.get(m, 0) is None:
        del sys.modules[m]
  return umap


def embed_2d(x: np.ndarray, method: str, seed: int, *, tsne_iter: int = 1000
             ) -> np.ndarray:
  """[N, D] -> [N, 2] with UMAP or t-SNE (t-SNE after PCA to <= 50 dims)."""
  x = np.asarray(x, np.float32).reshape(len(x), -1)
  n = len(x)
  if method == "umap":
    umap = _import_umap()
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), min_dist=0.1,
                          random_state=seed, n_jobs=1)
      return np.asarray(reducer.fit_transform(x), np.float32)
  if method == "tsne":
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    d = min(50, x.shape[1], n)
    if d < x.shape[1]:
      x = PCA(d, random_state=seed).fit_transform(x)
    tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca",
                learning_rate="auto", max_iter=max(250, tsne_iter), random_state=seed)
    return np.asarray(tsne.fit_transform(x), np.float32)
  raise unknown("embedding method", method, METHODS)


def subsample(n_total: int, n: int, seed: int, name: str) -> np.ndarray:
  """Sorted indices of a random subset of size min(n, n_total), from (seed, name)."""
  rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
  if n >= n_total:
    return np.arange(n_total)
  return np.sort(rng.choice(n_total, n, replace=False))


def run(*, workdirs=(), datasets=("mnist", "kmnist"), methods=("umap", "tsne"),
        num_points: int = 5000, seed: int = 0, split: str = "test", step="best",
        out: str = "workdirs/embeddings", data_dir: str = "", cjk_font="auto",
        knn_k: int = 5, tsne_iter: int = 1000, progress: bool = True,
        log=print) -> dict:
  """Embeds, scores and draws (see the module docstring); returns the separability
  rows and the output folder."""
  methods = [m.strip().lower() for m in methods if m.strip()]
  for m in methods:
    if m not in METHODS:
      raise unknown("embedding method", m, METHODS)
  if not methods:
    raise UserError(f"--methods is empty; choose from {', '.join(METHODS)}")
  if num_points < 20:
    raise UserError(f"--num_points={num_points} is too small; use at least 20")
  if "umap" in methods:
    _import_umap()  # fail before any work
  datasets = [d.strip() for d in datasets if d.strip()]
  for d in datasets:
    data_lib.get_info(d)

  # Checkpoints: one per dataset.
  models = {}
  for w in workdirs:
    w, restored = analyze.restore(w, step)
    d = restored.config.dataset
    if d in models:
      raise UserError(f"two checkpoints trained on {d}: {models[d][0]} and {w}; give "
                      "one workdir per dataset")
    models[d] = (w, restored)
    if d not in datasets:
      datasets.append(d)
  if not datasets:
    raise UserError("--datasets is empty and no --workdirs were given")

  # Data: one subsample per dataset, shared by all representations.
  samples = {}
  for d in datasets:
    cfg = models[d][1].config if d in models else None
    images, labels = analyze.load_split(d, split, cfg=cfg, data_dir=data_dir)
    idx = subsample(len(labels), num_points, seed, d)
    samples[d] = (idx, images[idx], labels[idx])

  reps = ["pixels"] + (["features"] if models else [])
  rep_titles = {"pixels": "raw pixels"}
  spaces = {}  # (dataset, rep) -> [N, D]
  for d in datasets:
    _, images, labels = samples[d]
    spaces[(d, "pixels")] = images.reshape(len(images), -1).astype(np.float32) / 255.0
    if d in models:
      w, restored = models[d]
      spaces[(d, "features")] = analyze.forward(
          restored.model, images, dtype=restored.config.dtype, method="features")

  jobs = [(m, r, d) for m in methods for r in reps for d in datasets
          if (d, r) in spaces]
  bar = None
  if progress:
    bar = tqdm(total=len(jobs) + len(spaces), desc="embeddings", unit="map",
               dynamic_ncols=True)
  coords, rows = {}, []
  try:
    for (d, r), x in spaces.items():
      if bar is not None:
        bar.set_postfix_str(f"{d} {r}: scores in {x.shape[1]}-d")
      labels = samples[d][2]
      rows.append({"dataset": d, "representation": r,
                   "space": f"original ({x.shape[1]}-d)", "method": None,
                   "knn_accuracy": metrics.knn_accuracy(x, labels, k=knn_k, seed=seed),
                   "silhouette": metrics.silhouette(x, labels, seed=seed)})
      if bar is not None:
        bar.update(1)
    for m, r, d in jobs:
      if bar is not None:
        bar.set_postfix_str(f"{METHOD_TITLES[m]} of {d} {r}")
      labels = samples[d][2]
      xy = embed_2d(spaces[(d, r)], m, seed, tsne_iter=tsne_iter)
      coords[(m, r, d)] = xy
      rows.append({"dataset": d, "representation": r, "space": f"{METHOD_TITLES[m]} 2-d",
                   "method": m,
                   "knn_accuracy": metrics.knn_accuracy(xy, labels, k=knn_k, seed=seed),
                   "silhouette": metrics.silhouette(xy, labels, seed=seed)})
      if bar is not None:
        bar.update(1)
  finally:
    if bar is not None:
      bar.close()

  labs = {d: plots.class_labels(data_lib.get_info(d).class_names,
                                data_lib.get_info(d).class_glyphs, font=cjk_font)
          for d in datasets}
  for d, (w, restored) in models.items():
    rep_titles[f"features:{d}"] = (f"{restored.config.model} features "
                                   f"({os.path.basename(os.path.abspath(w))}, "
                                   f"step {restored.step})")
  panels = []
  for m in methods:
    for r in reps:
      for d in datasets:
        if (m, r, d) not in coords:
          panels.append(None)
          continue
        rt = rep_titles["pixels"] if r == "pixels" else rep_titles[f"features:{d}"]
        sc = next(x for x in rows if x["method"] == m and x["representation"] == r
                  and x["dataset"] == d)
        panels.append({"title": f"{d}: {rt}, {METHOD_TITLES[m]}\n"
                                f"kNN acc {sc['knn_accuracy']:.3f}, "
                                f"silhouette {sc['silhouette']:.3f}",
                       "xy": coords[(m, r, d)], "labels": samples[d][2],
                       "class_labels": labs[d]})
  for row in rows:
    row["name"] = (f"{row['dataset']} · {row['representation']} · {row['space']}")

  with analyze.atomic_dir(out) as tmp:
    plots.embedding_grid(panels, os.path.join(tmp, "embeddings.png"), cols=len(datasets),
                         title=f"{' vs '.join(datasets)}: {split} images "
                               f"({num_points} per dataset), coloured by class")
    plots.separability_bars(rows, os.path.join(tmp, "separability.png"),
                            title=f"class separability (kNN k={knn_k}, 5-fold; "
                                  "silhouette, Euclidean)")
    analyze._write_json(os.path.join(tmp, "separability.json"), {
        "datasets": datasets, "split": split, "num_points": num_points, "seed": seed,
        "methods": methods, "knn_k": knn_k,
        "workdirs": {d: {"workdir": os.path.abspath(w), "step": r.step,
                         "model": r.config.model} for d, (w, r) in models.items()},
        "rows": rows})
    np.savez_compressed(
        os.path.join(tmp, "embeddings.npz"),
        **{f"{m}_{r}_{d}": xy for (m, r, d), xy in coords.items()},
        **{f"labels_{d}": s[2] for d, s in samples.items()},
        **{f"indices_{d}": s[0] for d, s in samples.items()})
    with open(os.path.join(tmp, "report.md"), "w") as f:
      f.write(report_md(rows, datasets, split, num_points, seed, knn_k, models))
  for row in rows:
    log(f"{row['name']}: kNN accuracy {row['knn_accuracy']:.3f}, silhouette "
        f"{row['silhouette']:.3f}")
  log(f"embeddings: {os.path.join(os.path.abspath(out), 'report.md')}")
  return {"rows": rows, "out": os.path.abspath(out)}


def report_md(rows, datasets, split, num_points, seed, knn_k, models) -> str:
  L = [f"# Embeddings: {' vs '.join(datasets)}\n"]
  L.append(f"{num_points} {split} images per dataset (random subsample, seed {seed}). "
           "Each panel embeds one representation in 2-D; colours are classes.\n")
  for d, (w, r) in models.items():
    L.append(f"- `{d}` features: penultimate layer of `{r.config.model}` from "
             f"`{os.path.abspath(w)}` (step {r.step}).")
  if models:
    L.append("")
  L.append("![embeddings](embeddings.png)\n")
  L.append("## Separability\n")
  L.append(f"kNN accuracy: {knn_k}-nearest-neighbour classifier, stratified 5-fold "
           "cross-validation. Silhouette: mean silhouette coefficient of the classes "
           "(Euclidean; 1 = tight, well separated clusters, 0 = overlapping).\n")
  L.append("| dataset | representation | space | kNN accuracy | silhouette |")
  L.append("|---|---|---|---|---|")
  for r in rows:
    L.append(f"| {r['dataset']} | {r['representation']} | {r['space']} | "
             f"{r['knn_accuracy']:.3f} | {r['silhouette']:.3f} |")
  L.append("\n![separability](separability.png)\n")
  return "\n".join(L)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.ERROR)
  try:
    run(workdirs=[w for w in FLAGS.workdirs if w], datasets=FLAGS.datasets,
        methods=FLAGS.methods, num_points=FLAGS.num_points, seed=FLAGS.seed,
        split=FLAGS.split, step=FLAGS.step, out=FLAGS.out, data_dir=FLAGS.data_dir,
        cjk_font=None if FLAGS.cjk_font.lower() == "none" else FLAGS.cjk_font,
        knn_k=FLAGS.knn_k, tsne_iter=FLAGS.tsne_iter)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
