r"""Does augmentation buy adversarial robustness? The augmentation study's `none` and
`noise` policies re-measured with the attack ensemble beside PGD-10.

  python experiments/augmentation_study.py \
      --config experiments/configs/studies/augment_adversarial.py \
      --workdir workdirs/augment_adversarial \
      --out results/augment_adversarial/<kind>/report \
      --records results/augment_adversarial/<kind>/runs --parallel=2

2 policies x MNIST, KMNIST x 3 seeds = 12 runs of the default CNN (kmnist_cnn.py: 6
epochs), each attacked on the first 1,000 test images at L-inf eps 0.05 / 0.1 / 0.2 by
PGD-10 (one start) and by `autoattack` (APGD-CE -> APGD-T, 9 targets -> Square),
with the masking check at eps 0.5. Square gets 1,000 queries here (AutoAttack's
standard is 5,000) to fit the CPU; the masking check says whether it found anything
the gradient attacks missed. Current result (3 seeds): at eps 0.1 noise buys +13.4 pp
(MNIST) and +3.7 pp (KMNIST) under the ensemble where PGD-10 credits +27.6 / +12.6; at
eps 0.05 +16.6 / +25.6 (README table, docs/augmentation.md).
"""

from kmnist_jax.experiments.configs.studies import augment_robustness


def get_config():
  c = augment_robustness.get_config()
  c.study.policies = ("none", "noise")
  c.study.grid_examples = 0
  c.study.measure_costs = False
  c.evals = {}
  c.evals.attack = dict(type="attack", attacks=("pgd", "autoattack"),
                        epsilons=(0.0, 0.05, 0.1, 0.2), pgd_steps=10, limit=1000,
                        square_queries=1000, masking_eps=0.5)
  return c
