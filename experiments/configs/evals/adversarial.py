r"""Adversarial robustness: the AutoAttack-grade ensemble (APGD-CE -> APGD-T -> Square)
beside PGD-10 at L-inf eps up to 0.3, per class and per attack, with the
gradient-masking checks; and randomized-smoothing certificates (Cohen et al.) at
sigma 0.25 against the L2 radius.

  python experiments/evaluate.py --workdirs=workdirs/mnist_cnn,workdirs/kmnist_cnn \
      --config=experiments/configs/evals/adversarial.py \
      [--config.evals.attack.limit=0]        # all 10,000 test images

Defaults: attacks on the first 1,000 test images, Square with AutoAttack's 5,000
queries; CERTIFY with n = 10,000 noisy copies on the first 100 images (the paper's
n = 100,000: --config.evals.smoothing.n=100000). Results: docs/robustness.md.
"""

import ml_collections

from kmnist_jax.experiments.configs.evals import smoothing


def get_config():
  c = ml_collections.ConfigDict()
  c.title = "Adversarial robustness"
  c.cjk_font = "auto"
  c.evals = ml_collections.ConfigDict()
  c.evals.attack = dict(
      type="attack",
      dataset="",
      attacks=("pgd", "autoattack"),
      epsilons=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3),   # radii, pixels in [0, 1]
      norm="linf",                 # or l2 (then ensemble=("apgd-ce", "apgd-t"))
      pgd_steps=10, pgd_step_size=0.0, pgd_restarts=1, pgd_loss="ce",  # ce, dlr, margin
      apgd_steps=100, apgd_restarts=1, apgd_targets=9,
      square_queries=5000, square_p_init=0.8,
      ensemble=("apgd-ce", "apgd-t", "square"),    # autoattack's members, in order
      masking_eps=0.5,             # sanity radius of the masking check (0: off)
      limit=1000,
      seed=0,
      per_class_epsilon=0.1,
      batch_size=500,
  )
  c.evals.smoothing = {**smoothing.get_config().evals.smoothing, "sigmas": (0.25,)}
  return c
