r"""Augmentation study, full budget: every op alone and in combinations, default CNN.

  python experiments/augmentation_study.py \
      --config experiments/configs/augment_study_full.py --workdir workdirs/augment_full

13 policies (none, each of the 8 ops alone, 4 combinations) x MNIST, KMNIST x 3 seeds
= 78 runs of the default CNN for 12 epochs on 55,000 training images (without
augmentation it reaches about 99.4% MNIST, 96-97% KMNIST); restart-safe
(finished runs are skipped, partial ones resume). Not run yet: an estimated ~13 h on a
2-core CPU, minutes a run on one GPU. The 6-epoch study that was run:
studies/augment_robustness.py (README, Studies). As a training config (the `study`
block is ignored by training), one run without augmentation:

  python experiments/train.py --config experiments/configs/augment_study_full.py \
      --workdir /tmp/augment_full_one
"""

import ml_collections

from kmnist_jax.experiments.configs import kmnist_cnn


def get_config():
  c = kmnist_cnn.get_config()
  c.num_epochs = 12
  c.progress = False
  c.tensorboard = False

  c.study = ml_collections.ConfigDict()
  c.study.policies = (
      "none",
      # Each op alone, with its defaults (python -m kmnist_jax.augment lists them).
      "affine", "elastic", "cutout", "erase", "noise", "crop", "mixup", "cutmix",
      # Combinations.
      "affine+elastic",
      "affine(rot=15,shift=2)+elastic(alpha=34,sigma=4)+cutout(size=8)",
      "crop(pad=2)+erase",
      "affine+cutmix",
  )
  c.study.datasets = ("mnist", "kmnist")
  c.study.seeds = (0, 1, 2)
  c.study.grid_examples = 10
  c.study.measure_costs = True
  c.study.cost_batch_size = 128
  c.study.pgd_eps = 0.1            # the table's PGD column (with an attack evaluator)
  c.evals = ml_collections.ConfigDict()
  return c
