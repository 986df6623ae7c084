r"""The rois-codh Keras benchmark: simple CNN, Adadelta (lr 1.0), batch 128, 12 epochs.

Matches the Keras script of github.com/rois-codh/kmnist (benchmarks/kuzushiji_mnist_cnn.py):
conv32-conv64-maxpool-dropout0.25-dense128-dropout0.5-dense10, categorical
cross-entropy, no augmentation, all 60,000 training images (no validation split).

  python experiments/train.py --config experiments/configs/kmnist_keras_cnn.py \
      --workdir /tmp/kmnist_keras_cnn

Published: 94.63% KMNIST test accuracy (99.06% MNIST with --config.dataset=mnist).
Result: 95.01% +- 0.07 over seeds 0-2 on an H100
(results/accuracy/gpu_h100/accuracy_gpu_h100.md).
"""

from kmnist_jax import config as config_lib


def get_config():
  c = config_lib.base()
  c.dataset = "kmnist"
  c.model = "keras_cnn"
  c.optimizer = "adadelta"
  c.learning_rate = 1.0
  c.weight_decay = 0.0
  c.schedule = "constant"
  c.batch_size = 128
  c.num_epochs = 12
  c.val_size = 0
  return c
