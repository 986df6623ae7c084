r"""Which adversarial-training method buys how much robustness, at what clean accuracy
and training cost, on MNIST and KMNIST: the robust-training study.

  python experiments/robust_training_study.py \
      --config experiments/configs/studies/robust_training.py \
      --workdir workdirs/robust_training \
      --out results/robust_training/<kind>/report \
      --records results/robust_training/<kind>/runs --parallel=2

none, noise (Gaussian, std 0.25), fgsm_rs, pgd (5 steps), trades (5 steps, beta 6) x
MNIST (train eps 0.3), KMNIST (train eps 0.1) x seeds 0-2: 30 runs of the default CNN
without dropout, 3 epochs on 20,000 training images (eps ramped over the first), plus a
logistic-regression run per dataset (the mCE reference). Each model: the ensemble
(APGD-CE, APGD-T over 3 targets, Square 1,000 queries) on the first 200 test images
at MNIST eps 0.1 / 0.2 / 0.3, KMNIST 0.05 / 0.1 / 0.2, the masking checks, MNIST-C /
KMNIST-C mCE on 1,000, smoothing (sigma 0.25, n = 1,000) on 100, each on the run's best
checkpoint. Budget: sized for ~3 h on the 2-core CPU; the anchors train far longer
(fast FGSM 10 epochs, PGD-40 ~83, TRADES 100 epochs on all 60,000 images). Result
(3 seeds): MNIST at eps 0.3 pgd 72.8 +- 0.8%, trades 39.7 +- 12.7%, fgsm_rs 0.7%,
none 0.0%; KMNIST at eps 0.1 pgd 74.8 +- 0.8%, fgsm_rs 68.0 +- 2.8%, none 0.2%
(results/robust_training/cpu_zen/report, docs/training.md); measured ~3.3 h of
wall-clock for the whole study, over the ~3 h sizing.
"""

import ml_collections

from kmnist_jax.experiments.configs import kmnist_cnn


def get_config():
  c = kmnist_cnn.get_config()
  c.progress = False
  c.tensorboard = False
  c.model_kwargs.dropout = 0.0
  c.num_epochs = 3
  c.train_limit = 20000
  c.adversarial.eps_warmup_epochs = 1.0
  c.adversarial.check_images = 256
  c.adversarial.check_steps = 10

  c.study = ml_collections.ConfigDict()
  c.study.methods = ("none", "noise", "fgsm_rs", "pgd", "trades")
  c.study.overrides = ml_collections.ConfigDict(dict(
      noise=dict(augment="noise(std=0.25)"),
      fgsm_rs=dict(adversarial=dict(method="fgsm_rs")),
      pgd=dict(adversarial=dict(method="pgd", steps=5)),
      trades=dict(adversarial=dict(method="trades", steps=5, beta=6.0)),
  ))
  c.study.datasets = ("mnist", "kmnist")
  c.study.seeds = (0, 1, 2)
  c.study.train_eps = ml_collections.ConfigDict(dict(mnist=0.3, kmnist=0.1))
  c.study.epsilons = ml_collections.ConfigDict(dict(mnist=(0.0, 0.1, 0.2, 0.3),
                                                    kmnist=(0.0, 0.05, 0.1, 0.2)))
  c.study.baseline_config = "{dataset}_logreg"   # experiments/configs/<...>.py

  c.evals = ml_collections.ConfigDict()
  c.evals.attack = dict(type="attack", attacks=("autoattack",), apgd_steps=100,
                        apgd_targets=3,
                        square_queries=1000, limit=200, masking_eps=0.5)
  c.evals.corruption = dict(type="corruption", corruptions="all",
                            severities=(1, 2, 3, 4, 5), limit=1000, baseline="study")
  c.evals.smoothing = dict(type="smoothing", sigmas=(0.25,), n0=100, n=1000,
                           radii=(0.0, 0.25, 0.5), limit=100)
  return c
