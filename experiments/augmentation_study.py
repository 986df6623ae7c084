r"""The augmentation study: policy x dataset x seed, one training run each, one report.

  python experiments/augmentation_study.py \
      --config experiments/configs/augment_study_reduced.py --workdir workdirs/augment_reduced
      [--config.study.seeds=(0,1) --config.num_epochs=2 ...] [--parallel=2]
      [--out results/augmentation_study/<kind>] [--slurm [--dry_run]] [--report_only]

The config is a training config plus a `study` block (policies, datasets, seeds) and
an optional `evals` block; kmnist_jax.studies.augmentation holds the study and
kmnist_jax.studies.plan the cache (each run keyed by its full resolved config, so
the same command skips finished runs and resumes interrupted ones). Writes into --out
(default <workdir>/report, replaced whole): table.csv / .md / .json (the headline
table), report.md, metrics.json, per_class_gain_<dataset>.png, samples_<dataset>.png,
accuracy_vs_mce.png (with a corruption evaluator).
"""

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)

from kmnist_jax import cli
from kmnist_jax.studies import augmentation

if __name__ == "__main__":
  cli.study_script(augmentation,
                   default_config="experiments/configs/augment_study_reduced.py")
