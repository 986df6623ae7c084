r"""Transfer study, reduced budget: minutes on the 2-core CPU, end to end.

  python experiments/transfer_study.py --config experiments/configs/transfer_reduced.py \
      --workdir workdirs/transfer_reduced

MNIST->KMNIST, KMNIST->MNIST, Fashion-MNIST->KMNIST; linear_probe, finetune,
finetune_last and scratch; k = 1, 5, 10, 50, 100, all; seeds 0-2: 198 runs of a small
CNN (widths 8,16), each 100 steps of batch 64; sources 2 epochs on 20,000 images. The
learning rates (head 3e-2, backbone 3e-3): a 3e-3 head underfits in 100 steps.

Result: sources at 97.61% MNIST, 86.04% KMNIST; at this budget MNIST features do not
help KMNIST (k = 10: probe -12.0 pp), KMNIST features help MNIST at k = 1 (+6.7 pp):
results/transfer_study_reduced/cpu/,
docs/transfer.md. As a training config, the KMNIST source model alone:

  python experiments/train.py --config experiments/configs/transfer_reduced.py \
      --workdir /tmp/transfer_source_kmnist
"""

import ml_collections

from kmnist_jax.experiments.configs import kmnist_cnn


def get_config():
  c = kmnist_cnn.get_config()
  # The source models (one per source dataset; `dataset` is set per source).
  c.model_kwargs = ml_collections.ConfigDict(dict(widths=(8, 16), depth=1, dense=64,
                                                  dropout=0.1))
  c.num_epochs = 2
  c.train_limit = 20000
  c.val_size = 0
  c.progress = False
  c.tensorboard = False
  c.checkpoint_every = 1
  c.keep_checkpoints = 1

  t = c.transfer = ml_collections.ConfigDict()
  t.directions = ("mnist->kmnist", "kmnist->mnist", "fashion_mnist->kmnist")
  t.modes = ("linear_probe", "finetune", "finetune_last")
  t.shots = ("1", "5", "10", "50", "100", "all")
  t.seeds = (0, 1, 2)
  t.steps = 100              # training steps of every run (transfer and scratch)
  t.steps_all = 0            # >0: another budget for k = all
  t.batch_size = 64          # drawn with replacement from the k-shot subset
  t.optimizer = "adamw"
  t.schedule = "cosine"
  t.weight_decay = 5e-4
  t.head_lr = 3e-2           # the new head, and every part of the scratch model
  t.backbone_lr = 3e-3       # fine-tuned backbone blocks (10x lower than the head)
  t.last_n = 1               # finetune_last: how many backbone blocks train
  t.test_limit = 0           # >0: first N test images only
  t.gain_shots = "10"        # per-class gain plot at this k
  t.cka_models = ("mnist", "kmnist", "fashion_mnist")   # source models compared by CKA
  t.cka_dataset = "kmnist"
  t.cka_examples = 2000
  t.cka_debiased = True     # unbiased HSIC: conv layers are wider than the sample
  t.sources = ""             # DATASET=DIR,...: use these training workdirs as sources
  return c
