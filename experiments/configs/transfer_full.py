r"""Transfer study, real budget: the default CNN; 2.97 h on the 2-core Zen 3 (measured, 202 runs).

  python experiments/transfer_study.py --config experiments/configs/transfer_full.py \
      --workdir workdirs/transfer_full --out results/transfer_study \
      --records results/transfer_study_runs --parallel=2

The same grid as transfer_reduced.py (MNIST->KMNIST, KMNIST->MNIST,
Fashion-MNIST->KMNIST; linear_probe, finetune, finetune_last and scratch; k = 1, 5,
10, 50, 100, all; seeds 0, 1, 2: 198 runs) with the default CNN (widths 32,64, dense
256). The sources train like kmnist_cnn.py: 6 epochs on all 55,000 training images,
>= 99% MNIST and ~96% KMNIST test accuracy. Each run is 300 steps of batch 128 for
k <= 100 (>= 38 passes over a k = 100 subset), and 3000 steps (~7 epochs) for k = all.
CKA uses 5000 test images.

The budget was chosen so that scratch at k = all is properly trained. Measured: the
scratch-kmnist-kall-s0 cell (3000 steps) reaches 96.72% KMNIST test accuracy (the issue
asks >= 95%; the default config gets 96.30%).

Measured on the 2-core AMD EPYC Zen 3 (family 25 model 1, the slowest of the project's
CPU kinds; jax 0.10.2) with --parallel=2, all 202 runs: 10,676 s (2.97 h) over four
starts of the command above (6,440 + 474 + 266 + 3,496 s; the first start was stopped
with two runs in flight, which were redone); the runs' own wall-clock sums to 349.1 min.
Mean wall-clock per run (two side by side, compilation included): source 463 s; CKA
376 s; k = all, KMNIST / MNIST target: finetune 514 / 469 s, scratch 513 / 462 s,
linear_probe 258 / 264 s, finetune_last 237 / 212 s; k <= 100: 29-62 s. About half
that expected on a Zen 4 or an Intel Xeon (their default-CNN throughput; not run there).
Results (seeds 0-2; results/transfer_study/): scratch at k = all 96.7 +- 0.1% KMNIST
and 99.3 +- 0.1% MNIST; fine-tuning from MNIST gains 4.9-6.3 pp on KMNIST at k = 5-10,
from KMNIST 7-14 pp on MNIST at k = 1-5; Fashion-MNIST never helps (README, Studies).

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
  t.steps = 300             # k <= 100
  t.steps_all = 3000        # k = all
  t.batch_size = 128
  t.cka_examples = 5000
  return c
