r"""Which classes does a trained model confuse, and why: numbers, pictures, a report.

  python experiments/analyze.py --workdirs=workdirs/kmnist_cnn
      [--step=best|latest|N] [--dataset=kmnist|mnist|fashion_mnist|k49]
      [--split=test|validation|train] [--out=DIR] [--interval=wilson|bootstrap]
      [--cjk_font=auto|none|FAMILY|FILE] [--limit=N] [--compare_out=DIR]

An alias of experiments/evaluate.py --config=experiments/configs/evals/classification.py
with the folders this script has always written: each checkpoint's analysis, restored
from the checkpoint alone, into ``<workdir>/analysis/`` (or --out), replaced whole:
report.md, metrics.json (the record), confusion.png, per_class_accuracy.png,
confused_pairs.png, reliability.png, learning_curves.png, per_class_error_epochs.png
and the tables as .md / .csv / .json. With several workdirs also a side-by-side table
(seeds as mean ± std) in ``comparison/`` of their common parent (or --compare_out).
"""

import os

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)
from absl import flags, logging

from kmnist_jax import cli
from kmnist_jax.errors import UserError
from kmnist_jax.experiments.configs.evals import classification as preset
from kmnist_jax.studies import evaluate

F = flags
F.DEFINE_list("workdirs", None, "Training workdir(s) (or checkpoint step folders).")
F.DEFINE_string("step", "best", "Checkpoint: best (highest validation accuracy), "
                "latest, or a step number.")
F.DEFINE_string("dataset", "", "Dataset to evaluate on (default: the checkpoint's).")
F.DEFINE_enum("split", "test", ["test", "validation", "train"], "Split to evaluate on.")
F.DEFINE_string("out", "", "Output folder (default: <workdir>/analysis); one workdir.")
F.DEFINE_string("compare_out", "", "Comparison folder (default: <common parent>/"
                "comparison).")
F.DEFINE_string("data_dir", "", "Datasets folder (default: the checkpoint's).")
F.DEFINE_string("data_source", "", "auto | files | tfds (default: the checkpoint's).")
F.DEFINE_integer("limit", 0, "Evaluate the first N examples of the split only (0: all).")
F.DEFINE_integer("top_k", 5, "Confused pairs shown with pictures.")
F.DEFINE_enum("interval", "wilson", ["wilson", "bootstrap"], "Per-class interval.")
F.DEFINE_string("cjk_font", "auto", "Hiragana font: auto, none, or a family / file.")
F.DEFINE_integer("batch_size", 1000, "Evaluation batch size.")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)  # Orbax warns about every read-only open
  v = F.FLAGS
  workdirs = [w for w in v.workdirs if w]
  if v.out and len(workdirs) > 1:
    raise UserError(f"--out names one folder but {len(workdirs)} workdirs were given; "
                    "drop --out (each gets <workdir>/analysis) and use --compare_out")
  parents = [os.path.dirname(os.path.abspath(w.rstrip("/"))) for w in workdirs]
  cfg = preset.get_config().to_dict()
  cfg["evals"]["classification"].update(
      limit=v.limit, top_k=v.top_k, interval=v.interval, batch_size=v.batch_size,
      data_source=v.data_source)
  cfg.update(cjk_font=v.cjk_font, title=f"Comparison of {len(workdirs)} runs")
  evaluate.run_config(
      workdirs, cfg, step=v.step, dataset=v.dataset, split=v.split,
      data_dir=v.data_dir or None, each=v.out or evaluate.WORKDIR + "/analysis",
      out=(v.compare_out or os.path.join(os.path.commonpath(parents), "comparison"))
      if len(workdirs) > 1 else None,
      side_by_side=True, options={"classification": {"details": False}})


if __name__ == "__main__":
  F.mark_flags_as_required(["workdirs"])
  cli.run(main, write_flag="--out (and --compare_out)")
