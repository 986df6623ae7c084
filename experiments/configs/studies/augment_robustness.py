r"""Augmentation x robustness at the default budget: 8 policies x MNIST, KMNIST x 3 seeds.

  python experiments/augmentation_study.py \
      --config experiments/configs/studies/augment_robustness.py \
      --workdir workdirs/augment_robustness \
      --out results/augmentation_study/cpu_zen3/report \
      --records results/augmentation_study/cpu_zen3/runs --parallel=2 [--max_minutes=M]

none, affine, elastic, cutout, noise, mixup, cutmix, affine+elastic+cutout: 48 runs of
the default CNN (6 epochs) plus one logistic-regression baseline per dataset (the mCE
reference). Each run: 20 corruptions x 5 severities of the first 1,000 test images and
PGD-Linf (10 steps) at eps 0.05, 0.1, 0.2 on 500. Records in --records double as the
cache, so the same command continues the study on another machine.

Result: noise lowers mCE on both datasets (MNIST -9.3 pp, KMNIST -4.3), affine lowers
KMNIST mCE (-6.8), no policy gains clean accuracy on both machine kinds measured
(results/augmentation_study/cpu_zen3/ and cpu_intel/, README: Studies).
"""

import ml_collections

from kmnist_jax.experiments.configs import kmnist_cnn


def get_config():
  c = kmnist_cnn.get_config()
  c.progress = False
  c.tensorboard = False

  c.study = ml_collections.ConfigDict()
  c.study.policies = (
      "none", "affine", "elastic", "cutout", "noise", "mixup", "cutmix",
      "affine(rot=15,shift=2)+elastic(alpha=34,sigma=4)+cutout(size=8)",
  )
  c.study.datasets = ("mnist", "kmnist")
  c.study.seeds = (0, 1, 2)
  c.study.grid_examples = 10
  c.study.measure_costs = True
  c.study.cost_batch_size = 128
  c.study.pgd_eps = 0.1                    # the table's PGD column
  c.study.baseline_config = "{dataset}_logreg"   # experiments/configs/<...>.py

  c.evals = ml_collections.ConfigDict()
  c.evals.corruption = dict(type="corruption", corruptions="all",
                            severities=(1, 2, 3, 4, 5), limit=1000,
                            baseline="study")
  c.evals.attack = dict(type="attack", attacks=("pgd",), epsilons=(0.0, 0.05, 0.1, 0.2),
                        pgd_steps=10, limit=500)
  return c
