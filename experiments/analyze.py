r"""Which classes does a trained model confuse, and why: numbers, pictures, a report.

  python experiments/analyze.py --workdirs=workdirs/kmnist_cnn
      [--step=best|latest|N] [--dataset=kmnist|mnist|fashion_mnist|k49]
      [--split=test|validation|train] [--out=DIR] [--interval=wilson|bootstrap]
      [--cjk_font=auto|none|FAMILY|FILE] [--limit=N] [--compare_out=DIR]

The classification evaluator (kmnist_jax/evaluators/classification.py) on each
checkpoint, restored from the checkpoint alone, into ``<workdir>/analysis/`` (or --out),
replaced whole: report.md, metrics.json, confusion.png, per_class_accuracy.png,
confused_pairs.png, reliability.png, learning_curves.png, per_class_error_epochs.png
and the tables as .md / .csv / .json. With several workdirs also a side-by-side table
(seeds as mean ± std) in ``comparison/`` of their common parent (or --compare_out).
Equivalent: experiments/evaluate.py --config=experiments/configs/evals/classification.py
"""

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)
from absl import flags, logging

from kmnist_jax import cli
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
  evaluate.analyze(
      v.workdirs, step=v.step, dataset=v.dataset, split=v.split, out=v.out,
      compare_out=v.compare_out, data_dir=v.data_dir or None,
      data_source=v.data_source, limit=v.limit, top_k=v.top_k, interval=v.interval,
      cjk_font=evaluate.font(v.cjk_font), batch_size=v.batch_size)


if __name__ == "__main__":
  F.mark_flags_as_required(["workdirs"])
  cli.run(main, write_flag="--out (and --compare_out)")
