"""Embedding evaluator: how separable the classes are in raw pixels and in a model's
penultimate features, with 2-D UMAP / t-SNE maps of both.

  config.evals.embedding = dict(
      type="embedding",
      dataset="",              # default: the checkpoint's own
      split="test",            # test | train
      num_points=5000,         # random subsample (the same for every representation)
      seed=0,                  # of the subsample and of the embeddings
      methods=("umap", "tsne"),
      knn_k=5, tsne_iter=1000, pixels=True,
  )

Per representation (pixels: 784 values in [0, 1]; features: ``model.features`` from
:func:`kmnist_jax.inference.predict`) the record holds the 5-fold kNN accuracy and the
silhouette of the classes (:mod:`kmnist_jax.metrics`) in the original space and in each
2-D embedding, and the 2-D coordinates. UMAP is umap-learn's, t-SNE scikit-learn's
(after PCA to 50 dimensions). :func:`run_data` is the same without a model (raw pixels).

Cost on the 2-core CPU, 5000 points: t-SNE ~30-60 s per map, UMAP ~15 s per map plus
~1 min of numba compilation on first use (experiments/configs/evals/embed.py).
"""

from __future__ import annotations

import sys
import warnings
import zlib
from collections.abc import Sequence

import numpy as np

from kmnist_jax import data as data_lib
from kmnist_jax import inference, io, metrics
from kmnist_jax.errors import UserError, unknown
from kmnist_jax.evaluators.common import check_dataset, load_split

METHODS = ("umap", "tsne")
METHOD_TITLES = {"umap": "UMAP", "tsne": "t-SNE"}
DEFAULTS = {"dataset": "", "split": "test", "num_points": 5000, "seed": 0,
            "methods": METHODS, "knn_k": 5, "tsne_iter": 1000, "pixels": True,
            "batch_size": 1000, "data_source": ""}


def parse_methods(spec) -> tuple[str, ...]:
  if isinstance(spec, str):
    spec = spec.split(",")
  methods = tuple(dict.fromkeys(m.strip().lower() for m in spec if m.strip()))
  for m in methods:
    if m not in METHODS:
      raise unknown("embedding method", m, METHODS)
  return methods


def check_config(**cfg) -> dict:
  """Settings with defaults filled in, each checked (one-line errors); umap-learn
  must be importable when asked for."""
  bad = sorted(set(cfg) - set(DEFAULTS))
  if bad:
    raise unknown("embedding evaluator setting", bad[0], DEFAULTS)
  c = {**DEFAULTS, **cfg}
  c["methods"] = parse_methods(c["methods"])
  if c["dataset"] and c["dataset"] not in data_lib.DATASETS:
    raise unknown("dataset", c["dataset"], data_lib.DATASETS)
  if c["split"] not in ("test", "train"):
    raise unknown("split", c["split"], ("test", "train"))
  for k, low in (("num_points", 20), ("seed", 0), ("knn_k", 1), ("tsne_iter", 250),
                 ("batch_size", 1)):
    v = c[k]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
      raise UserError(f"embedding evaluator: {k}={v!r} must be an integer >= {low}"
                      + (" (--num_points)" if k == "num_points" else ""))
    c[k] = int(v)
  if "umap" in c["methods"]:
    import_umap()  # fail before any work
  return c


def import_umap():
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
    umap = import_umap()
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


# ---- Records ---------------------------------------------------------------------------

def score(x, labels, c, *, representation: str, space: str, method=None) -> dict:
  return {"representation": representation, "space": space, "method": method,
          "knn_accuracy": metrics.knn_accuracy(x, labels, k=c["knn_k"], seed=c["seed"]),
          "silhouette": metrics.silhouette(x, labels, seed=c["seed"])}


def _sample(dataset, c, *, cfg=None, data_dir=None):
  images, labels = load_split(dataset, c["split"], cfg=cfg, data_dir=data_dir,
                              source=c["data_source"])
  idx = subsample(len(labels), c["num_points"], c["seed"], dataset)
  return idx, images[idx], labels[idx]


def spaces_record(dataset: str, spaces: dict, idx, labels, c, *, maps: bool = True,
                  log=None) -> dict:
  """Scores (original space, then each method's 2-D map) and coordinates of each
  representation in `spaces` {name: [N, D]}."""
  rows, coords = [], {}
  for rep, x in spaces.items():
    rows.append(score(x, labels, c, representation=rep,
                      space=f"original ({x.shape[1]}-d)"))
  for m in c["methods"] if maps else ():
    for rep, x in spaces.items():
      if log:
        log(f"{METHOD_TITLES[m]} of {dataset} {rep}")
      xy = embed_2d(x, m, c["seed"], tsne_iter=c["tsne_iter"])
      coords[f"{m}_{rep}"] = xy
      rows.append(score(xy, labels, c, representation=rep,
                        space=f"{METHOD_TITLES[m]} 2-d", method=m))
  for r in rows:
    r["dataset"] = dataset
  return {"dataset": dataset, "split": c["split"], "num_points": int(len(idx)),
          "seed": c["seed"], "methods": list(c["methods"]), "knn_k": c["knn_k"],
          "indices": idx, "labels": labels, "rows": rows, "coords": coords}


def run_data(dataset: str, *, data_dir=None, log=None, **cfg) -> dict:
  """The record of `dataset` without a model: its raw pixels alone."""
  c = check_config(**{**cfg, "dataset": dataset})
  idx, images, labels = _sample(dataset, c, data_dir=data_dir)
  x = images.reshape(len(images), -1).astype(np.float32) / 255.0
  rec = spaces_record(dataset, {"pixels": x}, idx, labels, c, log=log)
  return io.jsonable({**rec, "workdir": None, "step": None, "model": None})


def run(restored, *, data_dir=None, log=None, **cfg) -> dict:
  """The record of one checkpoint: its penultimate features (and, with ``pixels``, the
  raw pixels) of `num_points` images of its dataset."""
  c = check_config(**cfg)
  info = check_dataset(restored, c["dataset"] or None)
  idx, images, labels = _sample(info.name, c, cfg=restored.config, data_dir=data_dir)
  spaces = {}
  if c["pixels"]:
    spaces["pixels"] = images.reshape(len(images), -1).astype(np.float32) / 255.0
  spaces["features"] = inference.predict(restored, images, output="features",
                                         batch_size=c["batch_size"])
  rec = spaces_record(info.name, spaces, idx, labels, c, log=log)
  return io.jsonable({**rec, "workdir": getattr(restored, "workdir", None),
                      "step": int(restored.step), "model": restored.config.model})


# ---- Across seeds ----------------------------------------------------------------------

def summarize(records: Sequence[dict]) -> dict:
  """Mean and std (ddof=1) over seeds of each row's kNN accuracy and silhouette; the
  maps (coordinates) are the first record's."""
  if not records:
    raise UserError("embedding.summarize: no records")
  r0 = records[0]
  for r in records[1:]:
    if [(x["representation"], x["space"]) for x in r["rows"]] != [
        (x["representation"], x["space"]) for x in r0["rows"]] or (
        r["dataset"] != r0["dataset"]):
      raise UserError("embedding records differ in their dataset or representations; "
                      "summarize one setting at a time")
  rows = []
  for j, row in enumerate(r0["rows"]):
    out = {k: row[k] for k in ("dataset", "representation", "space", "method")}
    for k in ("knn_accuracy", "silhouette"):
      vals = [r["rows"][j][k] for r in records]
      mean, std = metrics.mean_std(vals)
      out[k], out[f"{k}_std"], out[f"{k}_runs"] = float(mean), float(std), vals
    rows.append(out)
  return io.jsonable({
      "runs": len(records), "dataset": r0["dataset"], "split": r0["split"],
      "num_points": r0["num_points"], "seed": r0["seed"], "methods": r0["methods"],
      "knn_k": r0["knn_k"], "model": r0.get("model"),
      "workdirs": [r.get("workdir") for r in records],
      "steps": [r.get("step") for r in records], "rows": rows,
      "labels": r0["labels"], "indices": r0["indices"], "coords": r0["coords"]})
