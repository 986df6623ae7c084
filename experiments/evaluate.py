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
Bad input: one `error:` line, exit 2 (kmnist_jax/studies/evaluate.py: main).
"""

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)
from absl import app, flags
from ml_collections import config_flags

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

if __name__ == "__main__":
  app.run(evaluate.main, flags_parser=evaluate.parse_flags)
