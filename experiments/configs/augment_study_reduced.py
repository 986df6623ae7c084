r"""Augmentation study, reduced budget: finishes on a 2-core CPU in 7-12 minutes.

  python experiments/augmentation_study.py \
      --config experiments/configs/augment_study_reduced.py --workdir workdirs/augment_reduced

4 policies (none, affine, elastic, and the combination affine+elastic+cutout) x
MNIST, KMNIST x 3 seeds = 24 runs of a small CNN (widths 8,16) for 4 epochs on the
first 10,000 training images, tested on the full 10,000-image test sets. Writes
table.csv / .md / .json, report.md, metrics.json, samples_<dataset>.png and
per_class_gain_<dataset>.png into <workdir>/report (or --out); each run lives in
<workdir>/runs/<name>-<key>/ (kmnist_jax.studies.runner), so re-running the command
skips finished runs and resumes partial ones. Side by side (--parallel=2) vs one at a
time, 4 of these runs on the shared 2-core CPU: 72-77 s vs 77-79 s, within the noise;
on smaller runs side by side is slower (kmnist_jax.studies.runner.DEFAULT_PARALLEL).

Expected (measured with the earlier study script, the same runs, not re-run through
the runner yet, on the 2-core CPU shared with other jobs): 6 min 50 s in all (10-36 s
a run, depending on the load; budget up to ~12 min on a busy machine).
Without augmentation 97.44% +- 0.02 MNIST and 85.99% +- 0.32 KMNIST test accuracy. At
this budget (40,000 images seen by a small network) augmentation costs accuracy:
-0.2 to -1.1 pp on MNIST, -3.0 (elastic) to -8.2 pp (the combination) on KMNIST;
only KMNIST's o and wo gain (+3 to +4 pp with affine or elastic). The network
probably underfits, so harder inputs mostly slow it down; augment_study_full.py asks the real
question.

This file is also a training config (kmnist_jax.config.base() plus `study` and
`evals` blocks, ignored by training): one run of it without augmentation is

  python experiments/train.py --config experiments/configs/augment_study_reduced.py \
      --workdir /tmp/augment_reduced_one
"""

import ml_collections

from kmnist_jax.experiments.configs import kmnist_cnn


def get_config():
  c = kmnist_cnn.get_config()
  c.model_kwargs = ml_collections.ConfigDict(dict(widths=(8, 16), depth=1, dense=64,
                                                  dropout=0.1))
  c.num_epochs = 4
  c.train_limit = 10000
  c.val_size = 0
  c.checkpoint_every = 1
  c.keep_checkpoints = 1
  c.progress = False
  c.tensorboard = False

  c.study = ml_collections.ConfigDict()
  c.study.policies = (
      "none",
      "affine(rot=15,scale=0.1,shear=10,shift=2)",
      "elastic(alpha=34,sigma=4)",
      "affine(rot=15,scale=0.1,shear=10,shift=2)+elastic(alpha=34,sigma=4)"
      "+cutout(size=8)",
  )
  c.study.datasets = ("mnist", "kmnist")
  c.study.seeds = (0, 1, 2)
  c.study.grid_examples = 10       # columns of the sample grid (one per class)
  c.study.measure_costs = True     # ms per batch of each policy and of each op alone
  c.study.cost_batch_size = 128
  c.study.pgd_eps = 0.1            # the table's PGD column (with an attack evaluator)
  # Evaluators of every run (kmnist_jax.evaluators; e.g. corruption, attack): their
  # numbers join the table. None at this budget.
  c.evals = ml_collections.ConfigDict()
  return c
