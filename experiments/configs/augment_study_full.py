r"""Augmentation study, full budget: every op alone and in combinations, default CNN.

  python experiments/augmentation_study.py \
      --config experiments/configs/augment_study_full.py --workdir workdirs/augment_full

13 policies (none, each of the 8 ops alone with its defaults, 4 combinations) x MNIST,
KMNIST x 3 seeds = 78 runs of the default CNN (experiments/configs/kmnist_cnn.py:
widths 32,64, dense 256, dropout 0.3, AdamW + one-cycle) for 12 epochs on the full
55,000 training images (5,000 held out for validation), tested on the 10,000 test
images. Restart-safe: stop it any time and run the same command again; finished runs are skipped and partial ones resume from their last
epoch. The table and pictures are rewritten after every run.

Expected runtime: about 13 hours on a 2-core CPU (estimated: 12 epochs at the default
config's measured 5 min 18 s per 6 epochs, ~10 min a run, x 78; augmentation adds a
few ms per step of ~100-150 ms), minutes per run on one GPU (add
--config.conv_impl=auto, the default). Expected accuracy without augmentation: about
99.4% MNIST and 96-97% KMNIST; the study measures what each policy adds to that.

This file is also a training config (kmnist_jax.config.base() plus a `study` block,
ignored by training): one run of it without augmentation is

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
