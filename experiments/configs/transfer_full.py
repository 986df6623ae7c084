r"""Transfer study, full budget: the default CNN, 1000-step runs; ~3 h on an idle 2-core CPU.

  python experiments/transfer_study.py --config experiments/configs/transfer_full.py \
      --workdir workdirs/transfer_full

The same grid as transfer_reduced.py (MNIST->KMNIST, KMNIST->MNIST,
Fashion-MNIST->KMNIST; linear_probe, finetune, finetune_last and scratch; k = 1, 5,
10, 50, 100, all; seeds 0, 1, 2: 198 runs) with the default CNN (widths 32,64, dense
256), sources trained like kmnist_cnn.py (6 epochs on all 55,000 training images,
>= 99% MNIST and ~96% KMNIST test accuracy), each run 1000 steps of batch 128 (3000
for k = all, about 6.4 epochs), CKA on 5000 test images.

Runtime (estimated from measured step times, not run to the end): on the 2-core CPU at
load ~8.5 (shared), 0.40 s per fine-tuning / scratch step of batch 128, 0.09 s with
only the dense block and head training, 0.06 s for a linear probe, 6.7 s per test-set
evaluation: 24,000 steps per (direction or target, mode) -> finetune 8.0 h + scratch
5.3 h + finetune_last 1.8 h + linear_probe 1.3 h + evaluations 0.4 h + sources ~0.8 h,
about 17-18 h. The README's 1,800 img/s for this CNN on the idle machine (0.07 s a step,
5.6x faster) scales that to about 3 h; on an H100 a few minutes. Expected: source
accuracies >= 99% MNIST and ~96% KMNIST test (the kmnist_cnn / mnist_cnn figures).

This file is also a training config (kmnist_jax.config.base() plus a `transfer`
block): one source model is

  python experiments/train.py --config experiments/configs/transfer_full.py \
      --workdir /tmp/transfer_full_source_kmnist
"""

from kmnist_jax.experiments.configs import kmnist_cnn, transfer_reduced


def get_config():
  c = kmnist_cnn.get_config()          # the source models: the default CNN, 6 epochs
  c.progress = False
  c.tensorboard = False
  t = c.transfer = transfer_reduced.get_config().transfer
  t.steps = 1000
  t.steps_all = 3000
  t.batch_size = 128
  t.cka_examples = 5000
  return c
