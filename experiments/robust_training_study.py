r"""The robust-training study: method (none, noise, fgsm_rs, pgd, trades) x dataset x
seed, one training run each, measured by the attack ensemble, mCE and smoothing.

  python experiments/robust_training_study.py \
      --config experiments/configs/studies/robust_training.py \
      --workdir workdirs/robust_training [--parallel=2] [--records DIR]
      [--out DIR] [--slurm [--dry_run]] [--report_only] [--config.study.seeds=(0,)]

kmnist_jax.studies.robust_training holds the study, kmnist_jax.studies.plan the cache
(each run keyed by its full resolved config: the same command skips finished runs and
resumes interrupted ones). Writes into --out (default <workdir>/report, replaced
whole): table.csv / .md / .json, report.md, metrics.json, and per dataset
clean_vs_robust, robust_vs_eps, per_class_robust and certified figures.
"""

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)

from kmnist_jax import cli
from kmnist_jax.studies import robust_training

if __name__ == "__main__":
  cli.study_script(robust_training,
                   default_config="experiments/configs/studies/robust_training.py")
