"""Transfer: frozen parts stay bit-identical, heads follow the target, few-shot subsets
are exact and reproducible, CKA on real activations, the study's tables, bad input."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from kmnist_jax import data, models, train
from kmnist_jax.errors import UserError
from kmnist_jax.transfer import cka as similarity
from kmnist_jax.transfer import finetune as transfer
from tests.test_train import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def kmnist(data_dir):
  return data.load("kmnist", data_dir=data_dir, source="files",
                   limit={"train": 3000, "test": 1000})


def _cfg(data_dir):
  return tiny(data_dir, model_kwargs={"widths": (8, 16), "dense": 32, "dropout": 0.1},
              weight_decay=5e-4)


def _leaves(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


# ---- Few-shot sampler --------------------------------------------------------------------

def test_few_shot_exactly_k_per_class_and_deterministic(kmnist):
  labels = kmnist.splits["train"].labels
  for k in (1, 5, 50):
    idx = transfer.few_shot_indices(labels, k, 10, seed=3)
    assert np.bincount(labels[idx], minlength=10).tolist() == [k] * 10
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, transfer.few_shot_indices(labels, str(k), 10, 3))
  a = transfer.few_shot_indices(labels, 5, 10, seed=0)
  b = transfer.few_shot_indices(labels, 5, 10, seed=1)
  assert not np.array_equal(a, b)
  assert len(transfer.few_shot_indices(labels, "all", 10, 0)) == len(labels)
  smallest = int(np.bincount(labels).min())
  with pytest.raises(UserError, match=rf"k={smallest + 1} is larger than class .*"
                                      rf"use k <= {smallest}"):
    transfer.few_shot_indices(labels, smallest + 1, 10, 0)
  for bad in ("0", -1, "ten", 2.5):
    with pytest.raises(UserError, match="positive number of examples per class or 'all'"):
      transfer.parse_shots(bad)


# ---- Head replacement and freezing --------------------------------------------------------

def test_head_follows_target_classes_and_backbone_is_copied(data_dir):
  cfg = _cfg(data_dir)
  source = train.init_model(cfg, 10)
  for C in (49, 3):
    model = transfer.transfer_model(source, cfg, C, seed=0)
    assert model.head.kernel.value.shape == (32, C) and model.num_classes == C
    x = models.preprocess(np.zeros((2, 28, 28), np.uint8))
    assert model(x).shape == (2, C)
    s, t = _leaves(nnx.state(source)), _leaves(nnx.state(model))
    for name, v in s.items():
      if "head" not in name:
        np.testing.assert_array_equal(t[name], v, err_msg=name)
  # The scratch model of the same seed has the transfer model's head.
  np.testing.assert_array_equal(transfer.scratch_model(cfg, 3, 0).head.kernel.value,
                                transfer.transfer_model(source, cfg, 3, 0).head.kernel.value)


def test_linear_probe_keeps_backbone_bit_identical_and_finetune_last_only_last_block(
    data_dir, kmnist):
  cfg = _cfg(data_dir)
  source = train.init_model(cfg, 10)
  tr, te = kmnist.splits["train"], kmnist.splits["test"]
  trainer = transfer.Trainer(tr, te, 10, cfg=cfg, steps=40, batch_size=64, head_lr=1e-2,
                             backbone_lr=1e-2, last_n=1, eval_batch=500)
  subset = transfer.few_shot_indices(tr.labels, "all", 10, 0)
  before = models.split(transfer.transfer_model(source, cfg, 10, 0))
  p0, r0 = _leaves(before[1]), _leaves(before[2])

  res, state = trainer.run(transfer.transfer_model(source, cfg, 10, 0), "linear_probe",
                           subset, 0)
  p1, r1 = _leaves(state.params), _leaves(state.rest)
  for name in p0:
    if "head" in name:
      assert not np.array_equal(p0[name], p1[name]), name       # the head learned
    else:
      assert np.array_equal(p0[name], p1[name]), name           # bit-identical (AdamW)
  for name in r0:
    assert np.array_equal(r0[name], r1[name]), name             # BN statistics too
  assert res["steps"] == 40 and res["train_examples"] == len(subset)
  # Random conv features + a linear head still learn KMNIST well above chance (0.1).
  assert res["test_accuracy"] > 0.18, res["test_accuracy"]
  assert sum(map(sum, res["test_confusion"])) == 1000

  res, state = trainer.run(transfer.transfer_model(source, cfg, 10, 0), "finetune_last",
                           subset, 0)
  p2 = _leaves(state.params)
  for name in p0:
    frozen = name.startswith("['convs']")         # the cnn's conv stages: blocks 0, 1
    assert np.array_equal(p0[name], p2[name]) == frozen, name


def test_chunked_run_is_bit_identical_and_stops_between_chunks(data_dir, kmnist,
                                                               monkeypatch):
  from kmnist_jax import stopping
  from kmnist_jax.errors import Preempted
  cfg = _cfg(data_dir)
  source = train.init_model(cfg, 10)
  tr, te = kmnist.splits["train"], kmnist.splits["test"]
  subset = transfer.few_shot_indices(tr.labels, 50, 10, 0)

  def trainer(chunk):
    return transfer.Trainer(tr, te, 10, cfg=cfg, steps=12, batch_size=64, head_lr=1e-2,
                            backbone_lr=1e-2, last_n=1, eval_batch=500,
                            chunk_steps=chunk)
  one, chunked = trainer(12), trainer(5)
  assert one.chunks(12) == [12] and chunked.chunks(12) == [5, 5, 2]
  a, sa = one.run(transfer.transfer_model(source, cfg, 10, 0), "finetune", subset, 0)
  b, sb = chunked.run(transfer.transfer_model(source, cfg, 10, 0), "finetune", subset, 0)
  for key in ("test_accuracy", "test_loss", "train_loss", "train_accuracy", "steps",
              "test_confusion", "per_class_accuracy"):
    assert a[key] == b[key], key
  assert a["steps"] == 12
  pa, pb = _leaves(sa.params), _leaves(sb.params)
  assert any(not np.array_equal(pa[n], v) for n, v in _leaves(
      models.split(transfer.transfer_model(source, cfg, 10, 0))[1]).items())  # it trained
  for name in pa:
    np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)

  # SIGTERM (as seen by stopping.requested) stops the run at the next chunk boundary.
  asked = iter([None, None, "SIGTERM"])
  monkeypatch.setattr(stopping, "requested", lambda: next(asked))
  with pytest.raises(Preempted, match=r"\(finetune, seed 0\) stopped by SIGTERM after "
                                      r"10 of 12 steps; .*redone from the start"):
    chunked.run(transfer.transfer_model(source, cfg, 10, 0), "finetune", subset, 0)
  with pytest.raises(UserError, match="chunk_steps=0 must be >= 1"):
    trainer(0)


def test_stop_request_is_visible_to_code_without_a_handler():
  from kmnist_jax import stopping
  assert stopping.requested() is None
  with stopping.StopOnSignal("test") as outer:
    assert stopping.requested() is None
    with stopping.StopOnSignal("inner") as inner:
      inner.signame = "SIGTERM"                 # what the handler records
      assert stopping.requested() == "SIGTERM"
    assert stopping.requested() is None and outer.signame is None
  assert stopping.requested() is None


def test_param_labels_per_mode(data_dir):
  cfg = _cfg(data_dir)
  model = train.init_model(cfg, 10)
  params = models.split(model)[1]
  assert transfer.num_blocks(model) == 3
  for mode, want in [("linear_probe", {"frozen", "head"}),
                     ("finetune", {"tune", "head"}),
                     ("scratch", {"tune", "head"})]:
    assert set(jax.tree.leaves(transfer.param_labels(model, params, mode))) == want
  labels = _leaves(transfer.param_labels(model, params, "finetune_last", last_n=2))
  assert {k: str(v) for k, v in labels.items() if "convs'][0]" in k} == {
      k: "frozen" for k in labels if "convs'][0]" in k}
  assert all(str(v) == "tune" for k, v in labels.items() if "dense" in k or "][1]" in k)
  with pytest.raises(UserError, match="1 <= last_n <= 3"):
    transfer.param_labels(model, params, "finetune_last", last_n=4)


def test_cka_of_real_activations(data_dir, kmnist):
  model = train.init_model(_cfg(data_dir), 10)
  acts = transfer.layer_activations(model, kmnist.splits["test"].images[:300], batch=100)
  assert list(acts) == ["stage1", "stage2", "features"]
  assert acts["stage1"].shape == (300, 14, 14, 8) and acts["features"].shape == (300, 32)
  f = acts["features"]
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(32, 32)))
  assert similarity.cka(f, f) == pytest.approx(1.0, abs=1e-9)
  assert similarity.cka(f, 2.0 * f @ q) == pytest.approx(1.0, abs=1e-9)
  assert 0.0 < similarity.cka(acts["stage1"], f) < 1.0
  # The last activation is exactly the model's features (eval mode).
  np.testing.assert_allclose(
      f[:20], np.asarray(model.features(models.preprocess(kmnist.splits["test"].images[:20]))),
      rtol=1e-5, atol=1e-6)
  mlp = train.init_model(tiny(data_dir, model="mlp", model_kwargs={"hidden": 16}), 10)
  assert list(transfer.layer_activations(mlp, kmnist.splits["test"].images[:50])) == [
      "features"]


# ---- Bad input ---------------------------------------------------------------------------

def test_bad_input_one_line_each(data_dir, tmp_path):
  with pytest.raises(UserError, match="unknown transfer mode 'probe'; valid choices: "
                                      "linear_probe, finetune, finetune_last, scratch"):
    transfer.check_mode("probe")
  with pytest.raises(UserError, match="source checkpoint .*nope.* does not exist"):
    transfer.load_source(str(tmp_path / "nope"))
  os.makedirs(tmp_path / "empty")
  with pytest.raises(UserError, match="no checkpoints"):
    transfer.load_source(str(tmp_path / "empty"))
  logreg = train.init_model(tiny(data_dir, model="logreg", model_kwargs={}), 10)
  with pytest.raises(UserError, match="has no features to probe"):
    transfer.transfer_model(logreg, tiny(data_dir, model="logreg", model_kwargs={}), 10, 0)


def _script(*args, workdir):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  return subprocess.run(
      [sys.executable, os.path.join(REPO, "experiments", "transfer_study.py"), "--config",
       os.path.join(REPO, "experiments", "configs", "transfer_reduced.py"), "--workdir",
       str(workdir), *args], capture_output=True, text=True, env=env, timeout=300)


def test_script_bad_input_exits_2_with_one_line(data_dir, tmp_path):
  for args, msg in [
      (("--config.transfer.modes=('linear_probe','probe')",),
       "error: unknown transfer mode 'probe'; valid choices: linear_probe, finetune, "
       "finetune_last"),
      (("--config.model=logreg", "--config.model_kwargs={}"),
       "has no features to probe"),
      ((f"--sources=mnist={tmp_path / 'missing'}",), "does not exist"),
      (("--config.transfer.shots=('1','7000')", "--config.transfer.gain_shots=1"),
       "k=7000 is larger than class"),
  ]:
    p = _script(*args, f"--config.data_dir={data_dir}", workdir=tmp_path / "w")
    assert p.returncode == 2, (args, p.stderr)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and msg in errors[0], (args, p.stderr)


# ---- The study's summary ------------------------------------------------------------------

def _study_plan(data_dir, **t):
  from kmnist_jax import config as config_lib
  from kmnist_jax.studies import transfer as study
  cfg = config_lib.load_file("transfer_reduced")
  cfg.data_dir = data_dir
  for k, v in t.items():
    cfg.transfer[k] = v
  return study, study.plan(cfg, "/tmp/unused")


def _fake_records(plan, acc_of):
  recs = []
  for r in plan.runs:
    if r.info["role"] == "run":
      acc, pc = acc_of(r)
      recs.append({"results": {"test_accuracy": acc, "per_class_accuracy": pc},
                   "wall_s": 1.0})
    elif r.info["role"] == "source":
      recs.append({"results": {"test_accuracy": 0.9}, "wall_s": 1.0})
    else:
      recs.append(None)
  return recs


def test_summary_gain_is_paired_by_seed(data_dir):
  study, plan = _study_plan(data_dir, directions=("mnist->kmnist",), modes=("linear_probe",),
                            shots=("1",), gain_shots="1", seeds=(0, 1), cka_models=())
  accs = {("scratch", 0): (0.20, [0.20] * 10), ("scratch", 1): (0.40, [0.40] * 10),
          ("linear_probe", 0): (0.30, [0.30] * 9 + [0.20]),
          ("linear_probe", 1): (0.44, [0.44] * 9 + [0.40])}
  summary = study.summarize(_fake_records(plan, lambda r: accs[(r.info["mode"], r.seed)]),
                            plan)
  row = next(r for r in summary["rows"] if r["mode"] == "linear_probe")
  assert row["acc_mean"] == pytest.approx(0.37)
  assert row["gain_mean"] == pytest.approx(0.07)
  assert row["gain_std"] == pytest.approx(np.std([0.10, 0.04], ddof=1))
  assert row["gain_significant"]                      # 0.07 > 0.042
  assert not row["gain_t_test"]                       # t = 2.3 < 12.706 (1 dof)
  assert row["per_class_gain"][:9] == pytest.approx([0.07] * 9)
  assert row["per_class_gain"][9] == 0.0
  table = study.render_table(summary)
  assert "| 1 | 30.0 ± 14.1 | 37.0 ± 9.9 (+7.0*) |" in table
  assert [list(r) for r in study.table_rows(summary)][0] == list(study.TABLE_COLUMNS)
  assert summary["missing"] == []
  json.dumps(summary)


def test_study_report_from_a_summary(data_dir, tmp_path):
  report = pytest.importorskip("kmnist_jax.reports")
  from kmnist_jax import io, plots
  study, plan = _study_plan(data_dir, directions=("mnist->kmnist", "kmnist->mnist"),
                            modes=("linear_probe", "finetune"), shots=("1", "all"),
                            gain_shots="1", seeds=(0, 1), cka_models=("mnist",))
  rng = np.random.default_rng(0)

  def acc(r):
    pc = rng.uniform(0.2, 0.9, 10).tolist()
    return float(np.mean(pc)), pc

  recs = _fake_records(plan, acc)
  recs[-1] = {"results": {"dataset": "kmnist", "examples": 10, "layers": ["stage1",
                                                                           "features"],
                          "debiased": True, "pairs": [{"a": "mnist", "b": "random init",
                                                       "matrix": [[1.0, 0.5],
                                                                  [0.4, 0.9]]}]}}
  summary = study.summarize(recs, plan)
  with io.atomic_dir(str(tmp_path / "out")) as tmp:
    rep = report.Report(tmp)
    study.render(summary, rep)
    rep.write()
  out = tmp_path / "out"
  for name in ("accuracy_vs_shots.png", "per_class_gain.png", "cka.png"):
    assert plots.png_size(str(out / name))[0] > 100, name
  csv_text = (out / "table.csv").read_text().splitlines()
  assert csv_text[0].startswith("direction,mode,k,seeds,acc_mean,acc_std,gain_mean,gain_std")
  assert len(csv_text) == 1 + 2 * 3 * 2
  assert "mnist vs random init" in (out / "report.md").read_text()


def test_committed_headline_table_has_the_study_schema():
  import csv

  from kmnist_jax.studies import transfer as study
  with open(os.path.join(REPO, "results", "transfer_study", "cpu_zen3", "report",
                         "table.csv")) as f:
    header = next(csv.reader(f))
  assert header == list(study.TABLE_COLUMNS)
  assert header[:8] == ["direction", "mode", "k", "seeds", "acc_mean", "acc_std",
                        "gain_mean", "gain_std"]
