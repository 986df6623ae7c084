r"""Multinomial logistic regression on MNIST pixels (the MNIST-C baseline of the mCE).

  python experiments/train.py --config experiments/configs/mnist_logreg.py \
      --workdir /tmp/mnist_logreg

Expected: about 92% MNIST test accuracy (a linear model). Result: 92.33% (seed 0,
10 epochs; results/robustness/cpu/robustness_cpu.md, where it is the mCE baseline).
"""

from kmnist_jax.experiments.configs import kmnist_logreg


def get_config():
  c = kmnist_logreg.get_config()
  c.dataset = "mnist"
  return c
