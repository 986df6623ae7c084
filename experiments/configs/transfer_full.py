r"""Transfer study, real budget: MNIST <-> KMNIST, Fashion-MNIST -> KMNIST, default CNN.

  python experiments/transfer_study.py --config experiments/configs/transfer_full.py \
      --workdir workdirs/transfer_full --out results/transfer_study/cpu_zen3/report \
      --records results/transfer_study/cpu_zen3/runs --parallel=2

The grid of transfer_reduced.py (linear_probe, finetune, finetune_last, scratch; k = 1,
5, 10, 50, 100, all; seeds 0-2: 198 runs) with the default CNN: sources train like
kmnist_cnn.py (6 epochs), each cell 300 steps of batch 128 (3000 for k = all, so that
scratch is properly trained), CKA on 5,000 test images.

Result: scratch at k = all 96.7 +- 0.1% KMNIST; fine-tuning from MNIST gains 4.9-6.3 pp
on KMNIST at k = 5-10; Fashion-MNIST never helps (results/transfer_study/cpu_zen3/,
README: Studies). As a training config, one source model:

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
