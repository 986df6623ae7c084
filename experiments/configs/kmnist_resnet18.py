r"""PreActResNet-18 (28x28 stem, no max-pool) on KMNIST: SGD + Nesterov, cosine, 30 epochs.

  python experiments/train.py --config experiments/configs/kmnist_resnet18.py \
      --workdir /tmp/kmnist_resnet18

Published (rois-codh, PreActResNet-18 without mixup): 97.82% KMNIST. Result: 98.54%
(seed 0, 80 s on an H100 including compilation;
results/accuracy/gpu_h100/accuracy_gpu_h100_more.md).
This config is for an accelerator: on the 2-core CPU one epoch takes about 25-30
minutes (about 3.4-4 s per step).
"""

import ml_collections

from kmnist_jax import config as config_lib


def get_config():
  c = config_lib.base()
  c.dataset = "kmnist"
  c.model = "preact_resnet18"
  c.model_kwargs = ml_collections.ConfigDict(dict(width=64))
  c.optimizer = "nesterov"
  c.learning_rate = 0.1
  c.momentum = 0.9
  c.weight_decay = 5e-4
  c.schedule = "cosine"
  c.warmup_epochs = 1.0
  c.label_smoothing = 0.0
  c.batch_size = 128
  c.num_epochs = 30
  return c
