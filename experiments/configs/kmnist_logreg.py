r"""Multinomial logistic regression on KMNIST pixels (the corruption-study baseline).

  python experiments/train.py --config experiments/configs/kmnist_logreg.py \
      --workdir /tmp/kmnist_logreg

Expected: about 70% KMNIST test accuracy (it is a linear model; about 92% on MNIST).
Measured: 70.03% (seed 0, H100; results/accuracy/gpu_h100/accuracy_gpu_h100_more.md).
"""

from kmnist_jax import config as config_lib


def get_config():
  c = config_lib.base()
  c.dataset = "kmnist"
  c.model = "logreg"
  c.optimizer = "adam"
  c.learning_rate = 1e-3
  c.weight_decay = 0.0
  c.schedule = "cosine"
  c.batch_size = 128
  c.num_epochs = 10
  return c
