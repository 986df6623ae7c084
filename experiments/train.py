r"""Trains a model from a config file, evaluates it, saves Orbax checkpoints.

  python experiments/train.py --config experiments/configs/kmnist_cnn.py \
      --workdir /tmp/kmnist_cnn [--config.num_epochs=10 --config.parallel=pmap ...]

Re-running the same command on the same workdir resumes from the latest checkpoint.
Writes <workdir>/metrics.jsonl (one line per epoch), <workdir>/tensorboard/,
<workdir>/checkpoints/<step>/ and <workdir>/results.json; prints the test accuracy.
Data come from --config.data_dir, else $KMNIST_JAX_DATA_DIR, else ~/kmnist_jax_data.
Multi-host (N processes, one per host or per GPU, all running this same command):
--config.distributed=True calls jax.distributed.initialize(), which finds the
coordinator, process count and id on Cloud TPU VMs and under SLURM / Open MPI. Elsewhere
give them as flags (or $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, $JAX_PROCESS_ID):
  python experiments/train.py --config ... --workdir ... \
      --coordinator_address=HOST0:1234 --num_processes=2 --process_id=0   # and =1
Processes that disagree on the config or the data refuse to start (exit 2).

One run per workdir: a second one is refused (exit 2) naming the first (host, pid).
SIGTERM / SIGINT (preemption, `timeout`, Ctrl-C) stop the run at the next chunk
boundary, save a checkpoint of that exact step and exit 75; the same command resumes
bit-identically. A damaged checkpoint is reported and the newest intact one is used.
Exit codes: 0 done, 2 a user error (one `error:` line), 75 preempted (resumable).
"""

import _bootstrap  # noqa: F401  (XLA:CPU defaults before JAX starts)
from absl import flags, logging
from ml_collections import config_flags

from kmnist_jax import cli, train_cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Training config file (experiments/configs/*.py).",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.DEFINE_string("coordinator_address", "",
                    "Multi-host: HOST:PORT of process 0 (default $JAX_COORDINATOR_ADDRESS; "
                    "auto-detected on TPU VMs and SLURM).")
flags.DEFINE_integer("num_processes", 0, "Multi-host: number of processes "
                     "(default $JAX_NUM_PROCESSES or auto-detected).")
flags.DEFINE_integer("process_id", -1, "Multi-host: this process's id, 0..N-1 "
                     "(default $JAX_PROCESS_ID or auto-detected).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  train_cli.run(FLAGS.config, FLAGS.workdir, coordinator_address=FLAGS.coordinator_address,
                num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)


if __name__ == "__main__":
  cli.run(main, config_flag="config", write_flag="--workdir")
