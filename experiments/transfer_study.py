r"""The transfer study: do MNIST features help KMNIST (and the reverse), how much, for
which classes, and with how few labels.

  python experiments/transfer_study.py --config experiments/configs/transfer_reduced.py \
      --workdir workdirs/transfer_reduced
      [--sources=mnist=DIR,kmnist=DIR,...] [--config.transfer.seeds=(0,1) ...]
      [--parallel=2] [--out results/transfer_study/<kind>] [--slurm [--dry_run]]
      [--report_only]

The config is a training config (the source models' architecture and schedule) plus a
`transfer` block (directions, modes, shots, seeds, budget, learning rates, CKA);
kmnist_jax.studies.transfer holds the study, kmnist_jax.studies.plan the cache: the
source models, every (direction, mode, k, seed) cell, its scratch baseline and the CKA
are runs keyed by their full resolved config, a transfer run's key including its
source's, so a changed source setting redoes the source and the runs built on it.
Writes into --out (default <workdir>/report, replaced whole): table.csv / .md / .json
(the headline table), report.md, metrics.json, accuracy_vs_shots.png,
per_class_gain.png, cka.png. Bad input (an unknown mode, dataset or direction, k
larger than a class, a source checkpoint that does not exist or has no features) stops
before any training with one line on stderr, exit code 2.
"""

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)

from kmnist_jax import cli
from kmnist_jax.studies import transfer

if __name__ == "__main__":
  cli.study_script(transfer, default_config="experiments/configs/transfer_reduced.py",
                   sources_flag=True)
