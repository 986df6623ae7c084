r"""Transfer study, real budget: the default CNN; ~3.0 h on the 2-core Zen 3 (126 of 202 runs measured).

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

Measured on the 2-core AMD EPYC Zen 3 (the slowest of the project's CPU kinds) with
--parallel=2: 126 of the 202 runs (the 3 sources, MNIST->KMNIST and scratch KMNIST
complete, Fashion-MNIST->KMNIST but 3 seed-2 k = all cells) took 6,440 s, with a sum
of per-run wall-clock of 213.8 min. Mean wall-clock per run (two side by side,
compilation included): source 463 s; k = all: finetune 524 s, scratch 513 s,
linear_probe 259 s, finetune_last 241 s; k <= 100: finetune 61 s, scratch 62 s,
linear_probe 34 s, finetune_last 33 s. Over all 202 runs that is ~355 min of run time,
~3.0 h of study at two side by side (about half that on a Zen 4 or an Intel Xeon). The
first estimate (2.7 h) assumed 300 s per 3000-step run; a full-backbone k = all run
takes 510-525 s. A second start ran the 3 missing Fashion seed-2 k = all cells (129 of
202 committed). The rest (KMNIST->MNIST, CKA) resumes from the committed
records with the command above.

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
