"""kmnist_jax.evaluators: the registry and from_config, each of classification /
embedding / cka on a real tiny checkpoint, summaries across (fake) seeds, rendering."""

import json
import os

import ml_collections
import numpy as np
import pytest
import tiny_runs

from kmnist_jax import evaluators, inference, io, reports
from kmnist_jax.errors import UserError
from kmnist_jax.evaluators import cka, classification, embedding
from kmnist_jax.reports import Report


@pytest.fixture(scope="module")
def ckpt(data_dir, tmp_path_factory):
  return evaluators.restore(tiny_runs.workdir(tmp_path_factory, data_dir), "latest")


@pytest.fixture(scope="module")
def cls_record(ckpt, data_dir):
  return classification.run(ckpt, data_dir=data_dir, limit=300)


def fake_seed(rec, seed, shift):
  """`rec` as if from another seed: per-class scores and accuracy shifted."""
  r = json.loads(io.dumps_json(rec))
  r["seed"], r["workdir"] = seed, f"{rec['workdir']}_s{seed}"
  for k in ("accuracy", "precision", "recall", "f1"):
    r["per_class"][k] = [min(1.0, v + shift) for v in r["per_class"][k]]
  r["accuracy"] += shift
  r["calibration"]["ece"] += shift
  return r


# ---- Registry ------------------------------------------------------------------------

def test_registry_is_a_plain_dict_of_complete_modules():
  assert type(evaluators.REGISTRY) is dict
  assert sorted(evaluators.REGISTRY) == ["attack", "cka", "classification", "corruption",
                                         "embedding", "smoothing"]
  for name, module in evaluators.REGISTRY.items():
    for fn in ("check_config", "run", "summarize"):
      assert callable(getattr(module, fn)), (name, fn)
    assert isinstance(module.DEFAULTS, dict)
    # Evaluators compute; the report module of the same name renders.
    assert not hasattr(module, "render") and not hasattr(module, "render_many"), name
    assert callable(reports.RENDERERS[name].render), name
  assert sorted(reports.RENDERERS) == sorted(evaluators.REGISTRY)
  assert callable(cka.run_many)


def test_from_config():
  c = ml_collections.ConfigDict()
  c.evals = ml_collections.ConfigDict()
  c.evals.test_set = dict(type="classification", limit=10)
  c.evals.maps = dict(type="embedding", methods="tsne")
  entries = evaluators.from_config(c.evals)  # a ConfigDict iterates sorted by name
  assert entries == [("maps", embedding, {"methods": "tsne"}),
                     ("test_set", classification, {"limit": 10})]
  assert [n for n, _, _ in evaluators.from_config({"b": {"type": "cka"},
                                                   "a": {"type": "cka"}})] == ["b", "a"]
  assert evaluators.from_config({}) == []
  with pytest.raises(UserError) as e:
    evaluators.from_config({"x": {"type": "clasification"}})
  msg = str(e.value)
  assert "'clasification'" in msg
  assert "attack, cka, classification, corruption, embedding" in msg
  assert "\n" not in msg
  with pytest.raises(UserError, match=r"config.evals.x: unknown classification "
                                      r"evaluator setting 'limt'.*limit"):
    evaluators.from_config({"x": {"type": "classification", "limt": 3}})
  with pytest.raises(UserError, match="config.evals.x has no type; valid types: attack"):
    evaluators.from_config({"x": {"limit": 3}})
  with pytest.raises(UserError, match="interval 'normal'.*bootstrap, wilson"):
    evaluators.from_config({"x": {"type": "classification", "interval": "normal"}})
  with pytest.raises(UserError, match="num_points=5 must be an integer >= 20"):
    evaluators.from_config({"x": {"type": "embedding", "num_points": 5}})


# ---- Classification ------------------------------------------------------------------

def test_classification_record(ckpt, cls_record, data_dir):
  r = cls_record
  images, labels = evaluators.load_split("kmnist", "test", cfg=ckpt.config,
                                         data_dir=data_dir, limit=300)
  preds = inference.predict(ckpt, images)
  assert r["n"] == 300 and r["workdir"] == ckpt.workdir and r["step"] == ckpt.step
  assert r["accuracy"] == pytest.approx(float(np.mean(preds == labels)))
  assert sum(map(sum, r["confusion"])) == 300
  assert json.loads(io.dumps_json(r)) == r  # strict JSON as it is
  # The pictures of the confident mistakes are the dataset's images at those indices.
  ex = r["examples"][0]
  assert (ex["true"], ex["pred"]) == (r["most_confused"][0]["true"],
                                      r["most_confused"][0]["pred"])
  pics = classification.decode_images(ex["mistakes"])
  np.testing.assert_array_equal(pics, images[ex["mistake_index"]])
  assert all(labels[i] == ex["true"] and preds[i] == ex["pred"]
             for i in ex["mistake_index"])
  assert [h["epoch"] for h in r["history"]] == [1, 2]


def test_classification_summarize_two_seeds_and_render(cls_record, tmp_path):
  r1, r2 = cls_record, fake_seed(cls_record, 1, 0.05)
  s = classification.summarize([r1, r2])
  assert s["runs"] == 2 and s["seeds"] == [0, 1]
  assert s["accuracy"]["mean"] == pytest.approx((r1["accuracy"] + r2["accuracy"]) / 2)
  assert s["accuracy"]["std"] == pytest.approx(np.std([r1["accuracy"], r2["accuracy"]],
                                                      ddof=1))
  acc = np.array([r1["per_class"]["accuracy"], r2["per_class"]["accuracy"]])
  np.testing.assert_allclose(s["per_class"]["accuracy"]["mean"], acc.mean(0))
  np.testing.assert_allclose(s["per_class"]["accuracy"]["std"], acc.std(0, ddof=1))
  np.testing.assert_array_equal(s["confusion"], 2 * np.asarray(r1["confusion"]))
  assert s["per_seed"]["ece"] == [r1["calibration"]["ece"], r2["calibration"]["ece"]]
  one = classification.summarize([r1])
  assert one["accuracy"] == {"mean": r1["accuracy"], "std": 0.0}
  with pytest.raises(UserError, match="differ in split"):
    classification.summarize([r1, dict(r2, split="validation")])
  rep = Report(str(tmp_path), title="t")
  reports.classification.render_many([("a (2 seeds)", s), ("b", one)], rep, cjk_font=None)
  rep.write()
  md = (tmp_path / "report.md").read_text()
  assert "| 0 | お (o) |" in md and " ± " in md and "## a (2 seeds): Per class" in md
  assert (tmp_path / "a_2_seeds_confusion.png").exists()
  assert (tmp_path / "b_per_class.csv").exists()


# ---- Embedding -----------------------------------------------------------------------

def test_embedding_record_summary_render(ckpt, data_dir, tmp_path):
  r = embedding.run(ckpt, data_dir=data_dir, methods="tsne", num_points=80,
                    tsne_iter=250)
  assert [(x["representation"], x["method"]) for x in r["rows"]] == [
      ("pixels", None), ("features", None), ("pixels", "tsne"), ("features", "tsne")]
  assert r["rows"][1]["space"] == "original (32-d)"
  assert np.asarray(r["coords"]["tsne_features"]).shape == (80, 2)
  np.testing.assert_array_equal(r["indices"], embedding.subsample(10000, 80, 0, "kmnist"))
  r2 = json.loads(io.dumps_json(r))
  for row in r2["rows"]:
    row["knn_accuracy"] = min(1.0, row["knn_accuracy"] + 0.1)
  s = embedding.summarize([r, r2])
  assert s["rows"][0]["knn_accuracy"] == pytest.approx(
      np.mean([r["rows"][0]["knn_accuracy"], r2["rows"][0]["knn_accuracy"]]))
  assert s["rows"][0]["knn_accuracy_std"] > 0
  rep = Report(str(tmp_path))
  reports.embedding.render(s, rep, name="cnn", cjk_font=None)
  rep.write()
  assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".png")) == [
      "cnn_embeddings.png", "cnn_separability.png"]
  assert "kNN std" in (tmp_path / "report.md").read_text()


# ---- CKA -----------------------------------------------------------------------------

def test_cka_run_many(ckpt, data_dir, tmp_path):
  r = cka.run_many([ckpt, ckpt], data_dir=data_dir, examples=100)
  assert r["models"] == ["kmnist-0", "kmnist-1", "random init"]
  assert r["layers"]["kmnist-0"] == ["stage1", "stage2", "features"]
  assert [(p["a"], p["b"]) for p in r["pairs"]] == [
      ("kmnist-0", "kmnist-1"), ("kmnist-0", "random init"),
      ("kmnist-1", "random init")]
  np.testing.assert_allclose(np.diag(r["pairs"][0]["matrix"]), 1.0, atol=1e-6)
  assert 0 < r["pairs"][1]["matrix"][2][2] < 0.999  # training changed the features
  one = cka.run(ckpt, data_dir=data_dir, examples=100)
  s = cka.summarize([one, one])
  assert s["runs"] == 2 and np.allclose(s["pairs"][0]["std"], 0)
  rep = Report(str(tmp_path))
  reports.cka.render(s, rep, name="x", cjk_font=None)
  rep.write()
  assert (tmp_path / "x_cka.png").exists() and (tmp_path / "x_cka.csv").exists()
