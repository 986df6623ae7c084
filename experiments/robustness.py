r"""Robustness of trained checkpoints: MNIST-C / KMNIST-C corruptions and L-inf attacks.

  python experiments/robustness.py --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --baseline=mnist=workdirs/mnist_logreg,kmnist=workdirs/kmnist_logreg \
      [--out=DIR] [--corruptions=all|NAME,...] [--severities=1,2,3,4,5] [--limit=N]
      [--corrupted_dir=DATASET=DIR,...] [--adversarial=fgsm,pgd|none] [--epsilons=...]
      [--pgd_steps=10] [--adv_limit=1000] [--dataset=NAME] [--step=best|latest|N]

An alias of experiments/evaluate.py --config=experiments/configs/evals/robustness.py
(the corruption and attack evaluators) with this script's flags and folder: --out,
default robustness/ beside the first workdir, replaced whole: report.md, metrics.json,
table.md / .csv / .json (models x corruptions), attack.md / .csv / .json,
attack_per_class.*, corruption_grid_<dataset>.png, error_vs_severity_<dataset>.png,
per_class_corruption_<model>.png, accuracy_vs_epsilon.png, robust_per_class_<model>.png,
and corrupted/ (the sets built on first use, carried from one report to the next). One
column per workdir, named by its folder. A baseline given as a bare DIR (or the older
DATASET:DIR) is read as the dataset it was trained on; a baseline or prebuilt set for a
dataset no model is evaluated on is refused.
"""

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)
from absl import flags, logging

from kmnist_jax import cli
from kmnist_jax.experiments.configs.evals import robustness as preset
from kmnist_jax.robustness import attacks
from kmnist_jax.studies import evaluate

F = flags
F.DEFINE_list("workdirs", None, "Training workdirs.")
F.DEFINE_list("baseline", [], "DATASET=DIR per dataset (a logreg run), or DIR.")
F.DEFINE_string("step", "best", "Checkpoint: best, latest, or a step number.")
F.DEFINE_string("dataset", "", "Evaluate every model on this dataset (default: own).")
F.DEFINE_string("corruptions", "all", "all, or a comma-separated list.")
F.DEFINE_string("severities", "1,2,3,4,5", "Comma-separated severities in 1..5.")
F.DEFINE_list("corrupted_dir", [], "Prebuilt sets: DATASET=DIR (make_corrupted.py).")
F.DEFINE_integer("limit", 0, "First N test examples only (0: all).")
F.DEFINE_integer("seed", 0, "Seed of the corruptions and of PGD's random start.")
F.DEFINE_string("adversarial", "fgsm,pgd", "Attacks: a comma list of "
                ", ".join(attacks.ATTACKS) + ", both (fgsm,pgd) or none; claims "
                "need autoattack.")
F.DEFINE_string("epsilons", ",".join(map(str, attacks.DEFAULT_EPSILONS)), "L-inf radii.")
F.DEFINE_integer("pgd_steps", 10, "PGD iterations.")
F.DEFINE_float("pgd_step_size", 0.0, "PGD step size (0: 2.5 * eps / steps).")
F.DEFINE_integer("adv_limit", 1000, "First N test examples for the attacks (0: all).")
F.DEFINE_float("per_class_epsilon", 0.1, "Epsilon of the per-class robust figure.")
F.DEFINE_string("out", "", "Output folder (default: robustness/ beside workdirs[0]).")
F.DEFINE_string("data_dir", "", "Datasets folder (default: $KMNIST_JAX_DATA_DIR).")
F.DEFINE_integer("batch_size", 1000, "Evaluation batch size.")
F.DEFINE_integer("grid_examples", 3, "Examples per cell of the corruption grid.")
F.DEFINE_string("cjk_font", "auto", "Font for hiragana: auto, none, or a family / file.")


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  workdirs = [w for w in F.FLAGS.workdirs if w]
  cfg, out = preset.from_flags(F.FLAGS, workdirs)
  evaluate.run_config(
      workdirs, cfg, step=F.FLAGS.step, out=out, dataset=F.FLAGS.dataset,
      data_dir=F.FLAGS.data_dir or None, by="workdir", side_by_side=True,
      keep=("corrupted",),
      options={"corruption": {"table": "table", "grid_examples": F.FLAGS.grid_examples}})


if __name__ == "__main__":
  F.mark_flags_as_required(["workdirs"])
  cli.run(main)
