r"""Augmentation x robustness at the default config's budget (issue 16): not run yet.

  python experiments/augmentation_study.py \
      --config experiments/configs/studies/augment_robustness.py \
      --workdir workdirs/augment_robustness --out results/augmentation_study
      [--parallel=N] [--config.study.seeds=(0,1,2)] [--report_only]

8 policies (none, affine, elastic, cutout, noise, mixup, cutmix and
affine+elastic+cutout) x MNIST, KMNIST x 3 seeds = 48 runs of the default CNN
(experiments/configs/kmnist_cnn.py: 6 epochs on 55,000 images, so `none` should land
within 0.5 pp of that config's 96.30% KMNIST), plus one logistic-regression baseline
per dataset (the mCE reference, `study.baseline_config`), each policy run evaluated
by `evals`: every one of the 20 corruptions x 5 severities on the first 1,000 test
images (100,000 images a model) with mCE and relative mCE against the study's own
logreg baseline, and PGD-Linf (10 steps) at eps 0.05, 0.1, 0.2 on 500 test images.
The headline table (results/augmentation_study/table.csv, columns
kmnist_jax.studies.augmentation.TABLE_COLUMNS) is written into --out; the per-run
records stay in the workdir (copy runs/*/record.json under results/ to continue the
study elsewhere).

Budget (estimated, not measured): ~190 s a run on the quiet 2-core CPU (the default
config's 6 epochs) + ~10 s corruption + ~10 s PGD evaluation: 54 x 210 s ~ 3.2 h;
trim `study.seeds` to (0, 1) or the policies to fit 3 h. Minutes on one GPU.
Measured result: none yet.
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
