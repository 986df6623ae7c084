"""The analysis and embedding outputs (experiments/analyze.py and embed.py: the
classification and embed presets through kmnist_jax.studies.evaluate.run with each
run's own report, side-by-side columns by setting or by dataset, datasets without a
model) end to end on a small real checkpoint: every file written, numbers consistent
with training's own evaluation, comparison mode, atomic output, one clear line for
each bad input; the scripts as subprocesses."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
import tiny_runs

from kmnist_jax import checkpoint as ckpt_lib
from kmnist_jax import plots, train
from kmnist_jax.errors import UserError
from kmnist_jax.evaluators import embedding
from kmnist_jax.studies import evaluate

PNGS = {"confusion.png": plots.confusion_size(10),
        "per_class_accuracy.png": (7, 4.5),
        "confused_pairs.png": plots.mistakes_grid_size(5, 6, 3),
        "reliability.png": (6, 6.5),
        "learning_curves.png": (14, 4),
        "per_class_error_epochs.png": (9, 5)}
TABLES = ["summary", "confused_pairs", "confused_directed", "per_class",
          "per_class_error_epochs"]
FILES = sorted(list(PNGS) + ["metrics.json", "report.md"]
               + [f"{t}.{ext}" for t in TABLES for ext in ("md", "csv", "json")])
LIMIT = 1000  # == tiny()'s test_limit: the analysis must reproduce results.json
# What analyze.py gives evaluate.run: the comparison shows the side-by-side table only.
COMPARISON = {"classification": {"details": False}}


def quiet(*_):
  pass


def analysis(run: dict) -> dict:
  """A run's classification record with its own report folder (as 'out')."""
  return {**run["records"]["classification"], "out": run.get("out")}


def analyze(workdirs, *, out="", compare_out="", dataset="", split="", step="best",
            data_dir=None, cjk_font="auto", **settings):
  """experiments/analyze.py's call: each workdir's report in <workdir>/analysis (or
  `out`), with several a comparison in `compare_out`; returns the records and the
  comparison's groups (each with its records and summary)."""
  evals = evaluate.with_overrides({"classification": {"type": "classification",
                                                      **settings}},
                                  dataset=dataset, split=split)
  res = evaluate.run(workdirs, evals, step=step, data_dir=data_dir, cjk_font=cjk_font,
                     each=out or evaluate.WORKDIR + "/analysis",
                     out=compare_out if len(workdirs) > 1 else None,
                     side_by_side=True, options=COMPARISON, log=quiet)
  runs = [analysis(r) for r in res["runs"]]
  summaries = dict(res["summaries"]["classification"])
  groups = [{"name": g["name"], "summary": summaries[g["name"]],
             "runs": [runs[i] for i in g["runs"]]}
            for g in res["groups"]]
  return {"runs": runs, "comparison": {"groups": groups, "out": res["out"]}}


def compare(records, out, *, cjk_font="auto"):
  """The comparison of classification records already made (evaluate.write)."""
  runs = [{"workdir": r["workdir"], "step": r["step"], "name": r["workdir"],
           "config": r["config"], "records": {"classification": r}} for r in records]
  res = evaluate.write(runs, {"classification": {"type": "classification"}}, out=out,
                       cjk_font=cjk_font, side_by_side=True, options=COMPARISON,
                       log=quiet)
  summaries = dict(res["summaries"]["classification"])
  return {"groups": [{"name": g["name"], "summary": summaries[g["name"]],
                      "runs": [records[i] for i in g["runs"]]}
                     for g in res["groups"]], "out": res["out"]}


def embed(*, workdirs=(), datasets=("mnist", "kmnist"), out="", step="best",
          data_dir=None, cjk_font="auto", **settings):
  """experiments/embed.py's call: a column per dataset; returns the separability rows
  (dataset, representation, space, method, knn_accuracy, silhouette) column by column."""
  res = evaluate.run(workdirs, {"embedding": {"type": "embedding", "dataset": "",
                                              **settings}},
                     out=out, step=step, data_dir=data_dir, cjk_font=cjk_font,
                     by="dataset", datasets=datasets, side_by_side=True, log=quiet)
  return {"rows": [r for _, s in res["summaries"]["embedding"] for r in s["rows"]],
          "out": res["out"]}


@pytest.fixture(scope="module")
def workdir(data_dir, tmp_path_factory):
  """A copy of the tiny KMNIST run (this module writes analysis/ into it)."""
  wd = tmp_path_factory.mktemp("analyze") / "kmnist_tiny"
  shutil.copytree(tiny_runs.workdir(tmp_path_factory, data_dir), wd)
  return str(wd)


@pytest.fixture(scope="module")
def both(workdir, data_dir, tmp_path_factory):
  """The workdir and a copy of it (as if a second seed) analysed by one call."""
  copy = tmp_path_factory.mktemp("copy") / "kmnist_tiny_copy"
  shutil.copytree(workdir, copy)
  cmp = tmp_path_factory.mktemp("cmp") / "comparison"
  return analyze([workdir, str(copy)], step="latest", limit=LIMIT, data_dir=data_dir,
                 cjk_font=None, compare_out=str(cmp))


@pytest.fixture(scope="module")
def analysed(both):
  return both["runs"][0]


def check_png(path, size_in):
  assert os.path.getsize(path) > 2000, path
  assert plots.png_size(path) == (round(size_in[0] * plots.DPI),
                                  round(size_in[1] * plots.DPI)), path


# ---- The analysis of one checkpoint ----------------------------------------------------

def test_writes_every_file(analysed, workdir):
  out = os.path.join(workdir, "analysis")
  assert analysed["out"] == out
  assert sorted(os.listdir(out)) == FILES
  for name, size in PNGS.items():
    check_png(os.path.join(out, name), size)
  # No temporary folders left beside it.
  assert not [f for f in os.listdir(workdir) if f.startswith(".analysis")]


def test_numbers_match_training_evaluation(analysed, workdir):
  """Restored from the checkpoint alone, the model reproduces training's test numbers."""
  res = json.load(open(os.path.join(workdir, "results.json")))
  m = json.load(open(os.path.join(workdir, "analysis", "metrics.json")))
  assert m["n"] == LIMIT and m["dataset"] == "kmnist" and m["split"] == "test"
  assert m["step"] == 32 and m["epoch"] == 2  # 1024 // 64 = 16 steps per epoch
  assert m["accuracy"] == pytest.approx(res["test_accuracy"], abs=1e-12)
  assert m["balanced_accuracy"] == pytest.approx(res["test_balanced_accuracy"], abs=1e-9)
  assert m["nll"] == pytest.approx(res["test_loss"], rel=1e-3)
  np.testing.assert_array_equal(m["confusion"], res["test_confusion"])
  pc = m["per_class"]
  assert len(pc["accuracy"]) == 10 and sum(pc["support"]) == LIMIT
  for a, lo, hi in zip(pc["accuracy"], pc["interval_lo"], pc["interval_hi"]):
    assert lo <= a <= hi
  assert m["interval"] == {"method": "wilson", "confidence": 0.95}
  top = m["most_confused"][0]
  assert top["count"] == max(c for i, row in enumerate(m["confusion"])
                             for j, c in enumerate(row) if i != j)
  assert 0 <= m["calibration"]["ece"] <= 1 and sum(m["calibration"]["count"]) == LIMIT
  # Per-epoch validation error from the confusions recorded during training.
  assert m["epochs"]["epoch"] == [1, 2]
  hist = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  conf1 = np.array(hist[0]["val_confusion"])
  np.testing.assert_allclose(m["epochs"]["val_per_class_error"][0],
                             1 - np.diag(conf1) / conf1.sum(1))
  assert m["labels_drawn_with_font"] is None
  assert m["class_glyphs"][0] == "お" and m["config"]["model"] == "cnn"
  assert "versions" in m["meta"] and "command" in m["meta"]  # run metadata


def test_report_reads_well(analysed, workdir):
  out = os.path.join(workdir, "analysis")
  md = open(os.path.join(out, "report.md")).read()
  for heading in ("# Confusion analysis: cnn on kmnist (test)", "## Most confused pairs",
                  "## Per class", "## Confusion matrix", "## Calibration", "## Training"):
    assert heading in md
  top = analysed["most_confused_symmetric"][0]
  names = analysed["class_names"]
  glyphs = analysed["class_glyphs"]
  a, b = top["a"], top["b"]
  pair = f"{glyphs[a]} ({names[a]}) ↔ {glyphs[b]} ({names[b]})"
  assert f"| 1 | {pair} | {top['count']} |" in md
  assert f"| 1 | {pair} | {top['count']} |" in open(os.path.join(
      out, "confused_pairs.md")).read()
  assert "**In short**" in md
  for link in [line.split("](")[1].rstrip(")") for line in md.splitlines()
               if line.startswith("![")]:
    assert os.path.isfile(os.path.join(out, link)), link
  assert len([ln for ln in md.splitlines() if ln.startswith("![")]) == len(PNGS)


def test_a_crash_leaves_the_old_analysis_and_a_rerun_replaces_it_whole(
    workdir, data_dir, tmp_path, monkeypatch):
  out = tmp_path / "analysis"
  out.mkdir()
  (out / "report.md").write_text("an earlier report")
  (out / "confusion.png").write_bytes(b"an earlier picture")

  def boom(*a, **k):
    raise RuntimeError("disk full")
  monkeypatch.setattr(plots, "mistakes_grid", boom)  # after tables are written
  with pytest.raises(RuntimeError, match="disk full"):
    analyze([workdir], limit=200, out=str(out), data_dir=data_dir, cjk_font=None)
  assert sorted(os.listdir(out)) == ["confusion.png", "report.md"]  # untouched
  assert (out / "report.md").read_text() == "an earlier report"
  assert sorted(os.listdir(tmp_path)) == ["analysis"]  # no temporary folder left
  monkeypatch.undo()
  # A checkpoints/<step> folder works as a workdir; --step=best is the highest
  # validation accuracy.
  best = train.best_step(workdir)
  (rec,) = analyze([os.path.join(workdir, "checkpoints", str(best))], step="latest",
                   limit=200, out=str(out), data_dir=data_dir, cjk_font=None)["runs"]
  assert rec["step"] == best and rec["n"] == 200
  assert sorted(os.listdir(out)) == FILES
  assert "earlier" not in (out / "report.md").read_text()
  assert sorted(os.listdir(tmp_path)) == ["analysis"]


# ---- Comparison ------------------------------------------------------------------------

def test_run_compares_seeds(both):
  groups = both["comparison"]["groups"]
  assert len(groups) == 1 and len(groups[0]["runs"]) == 2
  acc = groups[0]["summary"]["per_class"]["accuracy"]
  np.testing.assert_array_equal(acc["std"], np.zeros(10))
  out = both["comparison"]["out"]
  assert sorted(os.listdir(out)) == ["comparison.csv", "comparison.json", "comparison.md",
                                     "comparison_per_class.png", "metrics.json",
                                     "report.md"]
  md = open(os.path.join(out, "comparison.md")).read()
  assert "cnn on kmnist (2 seeds)" in md and "| 0 | お (o) |" in md
  assert "cnn on kmnist (2 seeds)" in open(os.path.join(out, "report.md")).read()
  check_png(os.path.join(out, "comparison_per_class.png"), (max(7, 0.35 * 10 + 2.5), 4.8))


def test_comparison_groups_seeds_and_sets_datasets_side_by_side(analysed, workdir,
                                                                data_dir, tmp_path):
  seed1 = dict(analysed, seed=1, workdir=analysed["workdir"] + "_s1",
               config=dict(analysed["config"], seed=1))
  other = dict(analysed, per_class=dict(analysed["per_class"]))
  other["per_class"]["accuracy"] = list(np.clip(np.asarray(
      analysed["per_class"]["accuracy"]) + 0.1, 0, 1))
  other.update(seed=2, workdir=analysed["workdir"] + "_s2",
               config=dict(analysed["config"], seed=2))
  (on_mnist,) = analyze([workdir], dataset="mnist", limit=300, data_dir=data_dir,
                        out=str(tmp_path / "mnist_eval"), cjk_font=None)["runs"]
  res = compare([analysed, seed1, other, on_mnist], str(tmp_path / "cmp"),
                cjk_font=None)
  groups = res["groups"]
  assert [len(g["runs"]) for g in groups] == [3, 1]
  acc = np.array([np.asarray(r["per_class"]["accuracy"])
                  for r in (analysed, seed1, other)])
  got = groups[0]["summary"]["per_class"]["accuracy"]
  np.testing.assert_allclose(got["mean"], acc.mean(0))
  np.testing.assert_allclose(got["std"], acc.std(0, ddof=1))
  md = open(tmp_path / "cmp" / "comparison.md").read()
  assert "kmnist class" in md and "mnist class" in md and "(3 seeds)" in md
  assert "| 0 | お (o) | 0 |" in md and " ± " in md
  check_png(str(tmp_path / "cmp" / "comparison_per_class.png"),
            (max(7, 0.35 * 20 + 2.5), 4.8))
  json.load(open(tmp_path / "cmp" / "comparison.json"))
  # The cross-dataset report says so.
  assert "**Cross-dataset**" in open(tmp_path / "mnist_eval" / "report.md").read()


# ---- Bad input: one clear line each ----------------------------------------------------

def test_workdir_without_checkpoint(tmp_path):
  with pytest.raises(UserError, match=r"does not exist.*expected a training workdir"):
    analyze([str(tmp_path / "nowhere")])
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(UserError, match=f"no checkpoints in '{empty}'"):
    analyze([str(empty)])
  assert os.listdir(empty) == []  # nothing written


def test_checkpoint_of_unknown_model(workdir, tmp_path):
  wd = tmp_path / "alien"
  step, state, cfg, history = ckpt_lib.Checkpoints(workdir, read_only=True).restore(
      train.restore_model(workdir).state)
  ck = ckpt_lib.Checkpoints(str(wd))
  ck.save(step, state, dict(cfg, model="vision_transformer"), history)
  ck.close()
  with pytest.raises(UserError) as e:
    analyze([str(wd)])
  msg = str(e.value)
  assert str(wd) in msg and "'vision_transformer'" in msg and "cnn" in msg
  assert "\n" not in msg and not (wd / "analysis").exists()


def test_dataset_with_wrong_class_count(workdir):
  with pytest.raises(UserError) as e:
    analyze([workdir], dataset="k49", out="/nonexistent/never")
  msg = str(e.value)
  assert workdir in msg and "49 classes" in msg and "10-class head" in msg
  assert "kmnist" in msg and "mnist" in msg  # the datasets that would fit


def test_other_bad_flags(workdir, tmp_path):
  with pytest.raises(UserError, match="--step='bst' is not valid; use best, latest or a"):
    analyze([workdir], step="bst")
  with pytest.raises(UserError, match="no checkpoint at step 7 .*available steps"):
    analyze([workdir], step="7")
  with pytest.raises(UserError, match="is one report folder for 2 workdirs"):
    analyze([workdir, workdir], out=str(tmp_path))
  with pytest.raises(UserError, match="unknown dataset 'kmnsit'"):
    analyze([workdir], dataset="kmnsit")


# ---- The scripts as a user runs them ---------------------------------------------------

def test_analyze_script(workdir, data_dir, tmp_path):
  out = tmp_path / "out"
  p = tiny_runs.script("analyze.py", f"--workdirs={workdir}", "--limit=200",
                       "--step=best", "--split=validation", f"--out={out}",
                       data_dir=data_dir)
  assert p.returncode == 0, p.stderr[-3000:]
  assert "validation accuracy" in p.stdout and f"report: {out}/report.md" in p.stdout
  m = json.load(open(out / "metrics.json"))
  assert m["split"] == "validation" and m["n"] == 200 and m["step_requested"] == "best"
  assert sorted(os.listdir(out)) == FILES


def test_scripts_bad_input_is_one_line(data_dir, tmp_path):
  for name, args, want in (
      ("analyze.py", [f"--workdirs={tmp_path}"], ""),
      ("analyze.py", ["--workdirs=x", "--split=bogus"], ""),
      ("analyze.py", ["--workdirs=x,y", f"--out={tmp_path}/a"],
       "--out names one folder but 2 workdirs"),
      ("embed.py", ["--methods=pca", f"--out={tmp_path}/e"], "")):
    p = tiny_runs.script(name, *args, data_dir=data_dir)
    assert p.returncode == 2, p.stderr[-2000:]
    errors = tiny_runs.error_lines(p.stderr)
    assert len(errors) == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert want in errors[0], errors
  assert "'pca'" in errors[0] and "tsne" in errors[0]


# ---- Embeddings ------------------------------------------------------------------------

def test_embed_pixels_and_features(workdir, data_dir, tmp_path):
  out = tmp_path / "emb"
  res = embed(workdirs=[workdir], datasets=["mnist"], methods=["tsne"],
              num_points=150, data_dir=data_dir, out=str(out), cjk_font=None,
              tsne_iter=250)
  assert sorted(os.listdir(out)) == ["embeddings.npz", "embeddings.png", "metrics.json",
                                     "report.md", "separability.csv", "separability.json",
                                     "separability.md", "separability.png"]
  rows = res["rows"]
  # Per dataset: the original spaces, then their t-SNE maps.
  assert [(r["dataset"], r["representation"], r["method"]) for r in rows] == [
      ("mnist", "pixels", None), ("mnist", "pixels", "tsne"),
      ("kmnist", "pixels", None), ("kmnist", "features", None),
      ("kmnist", "pixels", "tsne"), ("kmnist", "features", "tsne")]
  for r in rows:
    assert 0 <= r["knn_accuracy"] <= 1 and -1 <= r["silhouette"] <= 1
  assert rows[0]["knn_accuracy"] > 0.5  # MNIST pixels: well above chance (0.1)
  check_png(str(out / "embeddings.png"), plots.embedding_grid_size(2, 2))
  check_png(str(out / "separability.png"), (10, plots.separability_height(6)))
  z = np.load(out / "embeddings.npz")
  assert z["tsne_pixels_mnist"].shape == (150, 2) and z["labels_kmnist"].shape == (150,)
  # Deterministic subsample from the seed.
  np.testing.assert_array_equal(z["indices_mnist"],
                                embedding.subsample(10000, 150, 0, "mnist"))
  md = (out / "report.md").read_text()
  assert "| mnist | mnist | pixels | original (784-d) |" in md


def test_embed_bad_input(workdir, data_dir, tmp_path, monkeypatch):
  with pytest.raises(UserError, match="unknown embedding method 'pca'"):
    embed(methods=["pca"], out=str(tmp_path))
  with pytest.raises(UserError, match="two checkpoints trained on kmnist"):
    embed(workdirs=[workdir, workdir], methods=["tsne"], data_dir=data_dir,
          out=str(tmp_path / "x"))
  monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were missing
  with pytest.raises(UserError, match="needs umap-learn.*--methods=tsne"):
    embed(methods=["umap"], out=str(tmp_path / "y"))
  assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
