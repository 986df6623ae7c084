r"""Augmentation study, reduced budget: minutes on a 2-core CPU.

  python experiments/augmentation_study.py \
      --config experiments/configs/augment_study_reduced.py --workdir workdirs/augment_reduced

4 policies (none, affine, elastic, affine+elastic+cutout) x MNIST, KMNIST x 3 seeds = 24
runs of a small CNN (widths 8,16) for 4 epochs on the first 10,000 training images,
tested on the full test sets; outputs in <workdir>/report (or --out). It checks the
machinery, not the question: without augmentation 97.44% MNIST and 85.99% KMNIST, and
augmentation costs accuracy at this budget (docs/augmentation.md); augment_robustness.py
is the real study. As a training config (the `study` and `evals` blocks are ignored by
training), one run without augmentation:

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
