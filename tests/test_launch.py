"""launch/tpu_vm.sh and launch/slurm.sbatch: their --dry-run prints the exact commands
(parsed here as a shell would), and bad arguments get one `error:` line."""

from __future__ import annotations

import os
import shlex
import subprocess

from script_checks import one_error_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args, env=None):
  """`bash launch/<script> args` with no SLURM_/TPU_ variables inherited."""
  clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TPU_"))}
  return subprocess.run(["bash", os.path.join("launch", script), *args], cwd=REPO,
                        env={**clean, **(env or {})}, capture_output=True, text=True,
                        timeout=60)


def commands(p):
  assert p.returncode == 0, p.stderr
  return [shlex.split(line) for line in p.stdout.splitlines()
          if line.strip() and not line.startswith("#")]


def one_error(p):
  return one_error_line(p, quiet_stdout=True)


def test_tpu_vm_dry_run_prints_every_step():
  cmds = commands(run("tpu_vm.sh", "--dry-run", "--name", "kmnist-v4-32", "--zone",
                      "us-central2-b", "--accelerator", "v4-32", "--project", "my-proj",
                      "--workdir", "gs://my-bucket/kmnist/run1", "--config",
                      "experiments/configs/kmnist_resnet18.py", "create", "setup",
                      "train", "delete", "--", "--config.num_epochs=3",
                      "--config.model_kwargs.widths=(64,128)"))
  gcloud = [c for c in cmds if c[0] == "gcloud"]
  assert [c[4] for c in gcloud] == ["create", "scp", "ssh", "ssh", "delete"]
  create = gcloud[0]
  assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "kmnist-v4-32"]
  assert {"--zone=us-central2-b", "--accelerator-type=v4-32", "--project=my-proj",
          "--version=tpu-ubuntu2204-base"} <= set(create)
  for c in gcloud[1:4]:                      # copy, install and train on every worker
    assert "--worker=all" in c and "--zone=us-central2-b" in c
  install = next(a for a in gcloud[2] if a.startswith("--command="))
  assert "pip install -q -e . -c constraints.txt" in install and '"jax[tpu]==0.10.2"' in install
  train_cmd = shlex.split(next(a for a in gcloud[3] if a.startswith("--command="))
                          [len("--command="):])
  i = train_cmd.index("experiments/train.py")
  assert train_cmd[i + 1:] == [
      "--config=experiments/configs/kmnist_resnet18.py",
      "--workdir=gs://my-bucket/kmnist/run1", "--config.distributed=True",
      "--config.num_epochs=3", "--config.model_kwargs.widths=(64,128)"]
  assert gcloud[4][-1] == "--quiet"
  # The tarball that scp copies is the one tar makes.
  tar = next(c for c in cmds if c[0] == "tar")
  assert tar[tar.index("-czf") + 1] == gcloud[1][5]


def test_tpu_vm_default_actions_and_env():
  cmds = commands(run("tpu_vm.sh", "--dry-run", env={
      "TPU_NAME": "t1", "TPU_ZONE": "europe-west4-a", "TPU_WORKDIR": "gs://b/w"}))
  assert [c[4] for c in cmds if c[0] == "gcloud"] == ["create", "scp", "ssh", "ssh"]


def test_tpu_vm_bad_input():
  base = ["--dry-run", "--name", "t1", "--zone", "z"]
  assert "gs://" in one_error(run("tpu_vm.sh", *base, "--workdir", "/tmp/run", "train"))
  assert "--workdir" in one_error(run("tpu_vm.sh", *base, "train"))
  msg = one_error(run("tpu_vm.sh", *base, "--workdir", "gs://b/w", "--config",
                      "experiments/configs/nope.py", "train"))
  assert "nope.py" in msg
  assert "--name" in one_error(run("tpu_vm.sh", "--dry-run", "--zone", "z", "delete"))
  msg = one_error(run("tpu_vm.sh", *base, "restart"))
  assert "'restart'" in msg and "create, setup, train, delete" in msg
  assert "--zone needs a value" in one_error(run("tpu_vm.sh", "--name", "t1", "--zone"))
  assert "Bad_Name" in one_error(run("tpu_vm.sh", "--dry-run", "--name", "Bad_Name",
                                     "--zone", "z", "delete"))


def test_slurm_dry_run_submit_and_job(tmp_path):
  args = ["--nodes", "4", "--gpus-per-node", "8", "--partition", "gpu", "--config",
          "experiments/configs/kmnist_resnet18.py", "--workdir", "/shared/runs/r18",
          "--", "--config.num_epochs=30"]
  cmds = commands(run("slurm.sbatch", "--dry-run", *args))
  sbatch, export, devices, srun = cmds
  assert sbatch[:5] == ["sbatch", "--nodes=4", "--ntasks-per-node=1", "--gpus-per-node=8",
                        "--partition=gpu"]
  assert sbatch[5] == "launch/slurm.sbatch" and sbatch[6:] == args   # pasteable as is
  assert export[0] == "export" and "scontrol show hostnames" in export[1]
  assert devices == ["export", "JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7"]  # all 8 GPUs
  assert srun[:3] == ["srun", "--nodes=4", "--ntasks-per-node=1"]
  i = srun.index("experiments/train.py")
  assert srun[i + 1:] == ["--config=experiments/configs/kmnist_resnet18.py",
                          "--workdir=/shared/runs/r18", "--config.distributed=True",
                          "--config.num_epochs=30"]
  # One process per GPU: 8 tasks per node; JAX binds each to GPU SLURM_LOCALID.
  cmds = commands(run("slurm.sbatch", "--dry-run", "--per-gpu", *args))
  assert len(cmds) == 3
  assert "--ntasks-per-node=8" in cmds[0] and "--ntasks-per-node=8" in cmds[2]
  # Inside the allocation: the coordinator is the first host scontrol lists.
  fake = tmp_path / "bin"
  fake.mkdir()
  (fake / "scontrol").write_text("#!/bin/sh\nprintf 'gpu-a17\\ngpu-a18\\n'\n")
  (fake / "scontrol").chmod(0o755)
  p = run("slurm.sbatch", "--dry-run", "--config", "experiments/configs/kmnist_cnn.py",
          "--workdir", "/shared/w", env={
              "PATH": f"{fake}:{os.environ['PATH']}", "SLURM_JOB_ID": "5000",
              "SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_ON_NODE": "4",
              "SLURM_JOB_NODELIST": "gpu-a[17-18]", "SLURM_SUBMIT_DIR": REPO})
  assert p.returncode == 0, p.stderr
  assert f"export JAX_COORDINATOR_ADDRESS=gpu-a17:{5000 % 4096 + 61440}" in p.stdout
  assert "export JAX_LOCAL_DEVICE_IDS=0,1,2,3" in p.stdout
  srun = shlex.split(p.stdout.splitlines()[-1])
  assert srun[:3] == ["srun", "--nodes=2", "--ntasks-per-node=1"]


def test_slurm_bad_input():
  assert "--config" in one_error(run("slurm.sbatch", "--dry-run", "--workdir", "/w"))
  assert "--workdir" in one_error(run("slurm.sbatch", "--dry-run", "--config",
                                      "experiments/configs/kmnist_cnn.py"))
  assert "--workdir needs a value" in one_error(run("slurm.sbatch", "--workdir",
                                                   "--config", "x.py"))
  assert "'--gpus'" in one_error(run("slurm.sbatch", "--dry-run", "--gpus", "8"))
  assert "--nodes" in one_error(run("slurm.sbatch", "--dry-run", "--nodes", "0",
                                    "--config", "experiments/configs/kmnist_cnn.py",
                                    "--workdir", "/w"))
