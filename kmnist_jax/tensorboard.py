"""TensorBoard event files without TensorFlow (tensorboardX's pure-Python writer).

One run folder (``<workdir>/tensorboard``) gets:
- ``train/loss_chunk``, ``train/accuracy_chunk``: every training chunk (the compiled
  multi-step call; ``progress_updates_per_epoch`` of them per epoch);
- the per-epoch record: ``train/*``, ``val/*``, ``lr``, timings, and ``test/*`` when
  ``config.eval_test_every_epoch`` (``val_accuracy`` is written as ``val/accuracy``);
- the final ``test/*`` metrics of the run (``final/test_*``);
- the config as hparams (the HParams dashboard lists the run with its final metrics);
- the validation confusion matrix each epoch as an image (``val/confusion``), drawn
  by :func:`kmnist_jax.plots.confusion_heatmap`.

Reading them back needs only the ``tensorboard`` package (``tensorboard --logdir``);
nothing here imports TensorFlow, so starting a run prints no TF log lines.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

# The metrics the HParams dashboard shows beside each run's config.
HPARAM_METRICS = ("val/accuracy", "test/accuracy", "train/loss", "final/test_accuracy",
                  "final/test_balanced_accuracy")

_PREFIXES = ("train_", "val_", "test_")


def scalar_tag(key: str) -> str:
  """'val_accuracy' -> 'val/accuracy'; other keys ('lr', 'elapsed_s') unchanged."""
  for p in _PREFIXES:
    if key.startswith(p):
      return p[:-1] + "/" + key[len(p):]
  return key


def flat_hparams(config: dict, prefix: str = "") -> dict:
  """Nested config -> {'a.b': bool | int | float | str}: lists and None as text."""
  out = {}
  for k, v in config.items():
    name = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flat_hparams(v, name + "."))
    elif isinstance(v, (bool, int, float, str)) and not isinstance(v, np.generic):
      out[name] = v
    elif isinstance(v, np.generic):
      out[name] = v.item()
    else:
      out[name] = str(v)
  return out


def _tensorboardx():
  """tensorboardX, imported without PyTorch. Its package import runs `import torch`
  (writer.py, only so that torch tensors count as arrays; this writer passes numpy and
  protos), which costs seconds and drags torch into every training process wherever
  torch is installed (the benchmark environment). While the import runs, torch is
  marked absent (`sys.modules['torch'] = None` makes `import torch` raise ImportError,
  which tensorboardX catches); a torch imported before is left alone."""
  import importlib
  import sys
  hide = "torch" not in sys.modules and "tensorboardX" not in sys.modules
  if hide:
    sys.modules["torch"] = None
  try:
    return importlib.import_module("tensorboardX")
  finally:
    if hide and sys.modules.get("torch", 0) is None:
      del sys.modules["torch"]


class Writer:
  """Writes one run's event file; every call is flushed (a killed run loses nothing)."""

  def __init__(self, logdir: str):
    tbx = _tensorboardx()
    from tensorboardX.proto import summary_pb2
    self._pb = summary_pb2
    self.logdir = str(logdir)
    self._w = tbx.FileWriter(self.logdir, flush_secs=5)

  def _add(self, values, step: int) -> None:
    self._w.add_summary(self._pb.Summary(value=values), int(step), time.time())

  def scalars(self, step: int, values: dict) -> None:
    vals = [self._pb.Summary.Value(tag=k, simple_value=float(v))
            for k, v in values.items()
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
            and np.isfinite(v)]
    if vals:
      self._add(vals, step)

  def image_png(self, tag: str, step: int, png: bytes, height: int, width: int) -> None:
    img = self._pb.Summary.Image(height=int(height), width=int(width), colorspace=4,
                                 encoded_image_string=png)
    self._add([self._pb.Summary.Value(tag=tag, image=img)], step)

  def hparams(self, config: dict, metrics=HPARAM_METRICS) -> None:
    """The config as hparams of this run (the HParams plugin's experiment and session
    records), with `metrics` (scalar tags) as its columns."""
    from tensorboardX.summary import hparams  # loaded by __init__ (_tensorboardx)
    exp, ssi, _ = hparams(flat_hparams(config), {m: None for m in metrics})
    for s in (exp, ssi):
      self._w.add_summary(s, 0, time.time())

  def flush(self) -> None:
    self._w.flush()

  def close(self) -> None:
    self._w.close()


def confusion_png(confusion, dataset: str, title: str) -> tuple[bytes, int, int]:
  """(PNG bytes, height, width) of the confusion heatmap of `dataset`'s classes."""
  from kmnist_jax import data, plots
  info = data.get_info(dataset)
  labels = plots.class_labels(info.class_names, info.class_glyphs)
  fd, path = tempfile.mkstemp(suffix=".png")
  os.close(fd)
  try:
    plots.confusion_heatmap(np.asarray(confusion), labels, path, title=title)
    w, h = plots.png_size(path)
    with open(path, "rb") as f:
      return f.read(), h, w
  finally:
    os.unlink(path)


class TrainLog:
  """What training writes to TensorBoard: see the module docstring."""

  def __init__(self, logdir: str, config: dict | None = None):
    self.writer = Writer(logdir)
    self.dataset = (config or {}).get("dataset")
    if config:
      self.writer.hparams(config)
      self.writer.flush()

  def chunk(self, step: int, loss: float, accuracy: float | None = None) -> None:
    vals = {"train/loss_chunk": loss}
    if accuracy is not None:
      vals["train/accuracy_chunk"] = accuracy
    self.writer.scalars(step, vals)

  def epoch(self, record: dict) -> None:
    step = record["step"]
    self.writer.scalars(step, {scalar_tag(k): v for k, v in record.items()
                               if k not in ("epoch", "step")})
    conf = record.get("val_confusion")
    if conf is not None and self.dataset:
      png, h, w = confusion_png(conf, self.dataset,
                                f"validation confusion, epoch {record['epoch']}")
      self.writer.image_png("val/confusion", step, png, h, w)
    self.writer.flush()

  def final(self, step: int, results: dict) -> None:
    self.writer.scalars(step, {f"final/{k}": v for k, v in results.items()
                               if k.startswith("test_")})
    self.writer.flush()

  def close(self) -> None:
    self.writer.close()
