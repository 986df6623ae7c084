"""TensorBoard without TensorFlow: a tiny run's event file read back with tensorboard's
EventAccumulator (per-chunk loss, per-epoch val/test metrics, hparams, the confusion
image), the self-describing workdir (config.json, env.json, results.json), and no TF
import on the writer's path."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kmnist_jax import config as config_lib
from kmnist_jax import tensorboard as tb_lib
from kmnist_jax import train

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")


def _tiny(data_dir):
  c = config_lib.base()
  c.data_dir, c.data_source = data_dir, "files"
  c.dataset = "kmnist"
  c.train_limit, c.test_limit, c.val_size = 1024, 300, 256
  c.model = "mlp"
  c.model_kwargs = {"hidden": 32}
  c.batch_size, c.eval_batch_size = 32, 100
  c.num_epochs = 2
  c.progress = False
  c.progress_updates_per_epoch = 4
  c.eval_test_every_epoch = True
  c.tensorboard = True
  c.parallel = "single"
  return c


def _accumulator(logdir):
  acc = event_accumulator.EventAccumulator(
      str(logdir), size_guidance={event_accumulator.SCALARS: 0,
                                  event_accumulator.IMAGES: 0,
                                  event_accumulator.TENSORS: 0})
  acc.Reload()
  return acc


def test_training_run_writes_everything(data_dir, tmp_path):
  workdir = tmp_path / "run"
  res = train.train_and_evaluate(_tiny(data_dir), str(workdir), log=lambda m: None)
  steps_per_epoch = 1024 // 32  # train_limit applies after carving validation

  acc = _accumulator(workdir / "tensorboard")
  tags = acc.Tags()
  scalars = set(tags["scalars"])
  # Per chunk: 4 per epoch (8 steps each), at increasing steps, finite losses.
  chunk = acc.Scalars("train/loss_chunk")
  assert [e.step for e in chunk] == [8 * k for k in range(1, 9)]
  assert all(np.isfinite(e.value) and e.value > 0 for e in chunk)
  assert "train/accuracy_chunk" in scalars
  # Per epoch: train, validation and test metrics at the epoch's last step.
  for tag in ("train/loss", "train/accuracy", "val/accuracy", "val/loss", "test/accuracy",
              "lr"):
    steps = [e.step for e in acc.Scalars(tag)]
    assert steps == [steps_per_epoch, 2 * steps_per_epoch], tag
  hist = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  np.testing.assert_allclose([e.value for e in acc.Scalars("val/accuracy")],
                             [h["val_accuracy"] for h in hist], rtol=1e-6)
  final = acc.Scalars("final/test_accuracy")
  assert len(final) == 1 and final[0].value == pytest.approx(res["test_accuracy"])
  # The validation confusion matrix as a PNG image, once per epoch.
  imgs = acc.Images("val/confusion")
  assert len(imgs) == 2
  assert imgs[0].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
  assert imgs[0].width > 200 and imgs[0].height > 200
  # The config as hparams: the hparams plugin's session start info holds it.
  from tensorboard.plugins.hparams import plugin_data_pb2
  content = acc.PluginTagToContent("hparams")
  assert "_hparams_/experiment" in content and "_hparams_/session_start_info" in content
  ssi = plugin_data_pb2.HParamsPluginData.FromString(
      content["_hparams_/session_start_info"]).session_start_info
  assert ssi.hparams["model"].string_value == "mlp"
  assert ssi.hparams["batch_size"].number_value == 32
  exp = plugin_data_pb2.HParamsPluginData.FromString(
      content["_hparams_/experiment"]).experiment
  assert "val/accuracy" in [m.name.tag for m in exp.metric_infos]

  # Self-describing workdir.
  cfg = json.load(open(workdir / "config.json"))
  env = json.load(open(workdir / "env.json"))
  assert cfg["model"] == "mlp" and cfg["val_size"] == 256
  assert env["versions"]["jax"] and env["devices"]["backend"] == "cpu"
  assert "command" in env and "time_utc" in env
  text = open(workdir / "results.json").read()
  results = json.loads(text)
  assert results["config"] == cfg and results["env"]["versions"] == env["versions"]
  conf = results["test_confusion"]
  assert len(conf) == 10 and sum(map(sum, conf)) == 300
  lines = [line.strip().rstrip(",") for line in text.splitlines()]
  for row in conf:  # one line per confusion row
    assert json.dumps(row) in lines, row
  assert len(text.splitlines()) < 150


def test_flat_hparams_and_tags():
  flat = tb_lib.flat_hparams({"a": 1, "b": {"c": (8, 16), "d": None}, "e": "x",
                              "f": True, "g": np.float32(0.5)})
  assert flat == {"a": 1, "b.c": "(8, 16)", "b.d": "None", "e": "x", "f": True, "g": 0.5}
  assert tb_lib.scalar_tag("val_accuracy") == "val/accuracy"
  assert tb_lib.scalar_tag("test_loss_epoch") == "test/loss_epoch"
  assert tb_lib.scalar_tag("elapsed_s") == "elapsed_s"


def test_writer_imports_no_tensorflow(tmp_path):
  """The writer's whole path (import, scalars, hparams, image) loads no TensorFlow or
  PyTorch and prints nothing, even where TF or torch is installed."""
  code = (
      "import sys\n"
      "from kmnist_jax import tensorboard as t\n"
      f"log = t.TrainLog({str(tmp_path)!r}, {{'dataset': 'kmnist', 'lr': 0.1}})\n"
      "log.chunk(1, 0.5, 0.9)\n"
      "log.epoch({'epoch': 1, 'step': 2, 'val_accuracy': 0.5,\n"
      "           'val_confusion': [[int(i == j) * 5 for j in range(10)]"
      " for i in range(10)]})\n"
      "log.close()\n"
      "bad = [m for m in sys.modules\n"
      "       if m.split('.')[0] in ('tensorflow', 'clu', 'torch')]\n"
      "assert not bad, bad\n"
      "assert sys.modules.get('torch', 0) is not None  # no absent-marker left behind\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, MPLBACKEND="Agg"))
  assert out.returncode == 0, out.stderr
  assert out.stderr.strip() == "" and out.stdout.strip() == "", out.stderr
  acc = _accumulator(tmp_path)
  assert [e.value for e in acc.Scalars("val/accuracy")] == [0.5]
  assert len(acc.Images("val/confusion")) == 1
