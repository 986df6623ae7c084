r"""Evaluates checkpoints with any list of evaluators and writes one report folder.

  python experiments/evaluate.py --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --config=experiments/configs/evals/classification.py \
      [--step=best|latest|N] [--out=DIR] [--dataset=NAME] [--split=test|validation|train]
      [--config.evals.classification.limit=1000 ...]

Presets (experiments/configs/evals/): classification (what analyze.py gives), embed
(embed.py), robustness (corruptions + attacks), all. Every evaluator of the preset's
``config.evals`` runs on every workdir (kmnist_jax.evaluators); runs that differ only in
their seed are summarised as mean ± std, different settings (MNIST and KMNIST models)
side by side. --out defaults to <first workdir>/evaluation/<preset> and is replaced
whole: report.md, metrics.json (every record, with the run metadata), tables as .md /
.csv / .json, figures. --dataset / --split override the evaluators that have them.
Bad input: one `error:` line, exit 2 (kmnist_jax.cli.run).
"""

import os

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)
from absl import flags, logging
from ml_collections import config_flags

from kmnist_jax import cli
from kmnist_jax.errors import UserError
from kmnist_jax.studies import evaluate

flags.DEFINE_list("workdirs", None, "Training workdirs (or checkpoints/<step> folders).")
config_flags.DEFINE_config_file("config", None, "Evaluator preset: "
                                "experiments/configs/evals/<preset>.py.")
flags.DEFINE_string("step", "best", "Checkpoint: best, latest or a step number.")
flags.DEFINE_string("out", "", "Report folder (default <first workdir>/evaluation/"
                    "<preset>).")
flags.DEFINE_string("dataset", "", "Evaluate on this dataset (default: each one's own).")
flags.DEFINE_string("split", "", "Evaluate on this split: test, validation or train.")
flags.DEFINE_string("data_dir", "", "Datasets folder (default: the checkpoint's, else "
                    "$KMNIST_JAX_DATA_DIR).")

FLAGS = flags.FLAGS


def preset():
  """The loaded --config preset and its name (missing / broken: one line)."""
  if not FLAGS["config"].present:
    raise UserError("--config is required: experiments/configs/evals/<preset>.py")
  path = config_flags.get_config_filename(FLAGS["config"])
  try:
    cfg = FLAGS.config
    cfg.to_dict()
  except Exception as e:  # noqa: BLE001 - loading the user's config file
    raise UserError(f"--config={path} cannot be loaded: {cli.first_line(e)}") from None
  return cfg, os.path.splitext(os.path.basename(path))[0]


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)  # Orbax warns about every read-only open
  if not FLAGS.workdirs:
    raise UserError("--workdirs is required: one or more training workdirs")
  cfg, name = preset()
  evaluate.run_config(FLAGS.workdirs, cfg, step=FLAGS.step, out=FLAGS.out,
                      dataset=FLAGS.dataset, split=FLAGS.split,
                      data_dir=FLAGS.data_dir or None, preset=name)


if __name__ == "__main__":
  cli.run(main, config_flag="config")
