#!/usr/bin/env bash
# One training run on a Cloud TPU VM (a single host or a pod slice), with gcloud:
#
#   bash launch/tpu_vm.sh [--dry-run] ACTION... --name NAME --zone ZONE \
#       [--accelerator v4-8] [--version tpu-ubuntu2204-base] [--project P] \
#       [--config experiments/configs/kmnist_cnn.py] [--workdir gs://BUCKET/PATH] \
#       [--data-dir DIR] [-- extra experiments/train.py flags]
#
# ACTIONs, in the order given (default: create setup train):
#   create  gcloud compute tpus tpu-vm create (the VM; a slice has several workers)
#   setup   copy this checkout to every worker (--worker=all) and install it there:
#           python3.11 (apt) + a virtualenv with this package (constraints.txt) and jax[tpu]
#   train   run experiments/train.py on all workers at once with
#           --config.distributed=True: jax.distributed.initialize() finds the other
#           workers by itself on TPU VMs, so one command serves any slice size
#   delete  delete the VM (billing stops)
#
# --workdir must be gs://: every worker writes the same Orbax checkpoint (each its own
# shards) and process 0 the metrics, which needs storage all workers share. Data: with
# no --data-dir each worker downloads the dataset through tfds (TPU VMs have internet).
# --dry-run prints the exact commands (ready to paste) and runs nothing.
# Environment defaults: TPU_NAME, TPU_ZONE, TPU_ACCELERATOR, TPU_VERSION, TPU_PROJECT,
# TPU_WORKDIR, TPU_PYTHON (default python3.11).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

DRY_RUN=0
NAME="${TPU_NAME:-}"
ZONE="${TPU_ZONE:-}"
ACCELERATOR="${TPU_ACCELERATOR:-v4-8}"
VERSION="${TPU_VERSION:-tpu-ubuntu2204-base}"
PROJECT="${TPU_PROJECT:-}"
CONFIG="experiments/configs/kmnist_cnn.py"
WORKDIR="${TPU_WORKDIR:-}"
DATA_DIR=""
REMOTE_DIR="kmnist-jax"
JAX_TPU="jax[tpu]==0.10.2"
PY="${TPU_PYTHON:-python3.11}"  # the package needs Python >= 3.11 (Ubuntu 22.04 has 3.10)
ACTIONS=()
EXTRA=()

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | grep -v '^#SBATCH' | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }
need() { [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "$1 needs a value"; printf '%s' "$2"; }

while (($#)); do
  case "$1" in
    --dry-run|--dry_run) DRY_RUN=1 ;;
    --name=*) NAME="${1#*=}" ;;              --name) NAME="$(need "$@")"; shift ;;
    --zone=*) ZONE="${1#*=}" ;;              --zone) ZONE="$(need "$@")"; shift ;;
    --accelerator=*) ACCELERATOR="${1#*=}" ;; --accelerator) ACCELERATOR="$(need "$@")"; shift ;;
    --version=*) VERSION="${1#*=}" ;;        --version) VERSION="$(need "$@")"; shift ;;
    --project=*) PROJECT="${1#*=}" ;;        --project) PROJECT="$(need "$@")"; shift ;;
    --config=*) CONFIG="${1#*=}" ;;          --config) CONFIG="$(need "$@")"; shift ;;
    --workdir=*) WORKDIR="${1#*=}" ;;        --workdir) WORKDIR="$(need "$@")"; shift ;;
    --data-dir=*|--data_dir=*) DATA_DIR="${1#*=}" ;;
    --data-dir|--data_dir) DATA_DIR="$(need "$@")"; shift ;;
    create|setup|train|delete) ACTIONS+=("$1") ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1'; valid: create, setup, train, delete, --dry-run, --name, \
--zone, --accelerator, --version, --project, --config, --workdir, --data-dir, -- (train.py flags)" ;;
  esac
  shift
done
((${#ACTIONS[@]})) || ACTIONS=(create setup train)

[[ -n "$NAME" ]] || die "--name (or \$TPU_NAME) is required: the TPU VM's name"
[[ -n "$ZONE" ]] || die "--zone (or \$TPU_ZONE) is required, e.g. us-central2-b (v4), europe-west4-a (v5e)"
[[ "$NAME" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] \
  || die "--name '$NAME' is not a valid TPU name (lowercase letters, digits and '-', starting with a letter)"
for a in "${ACTIONS[@]}"; do
  if [[ "$a" == train ]]; then
    [[ -n "$WORKDIR" ]] || die "train needs --workdir gs://BUCKET/PATH (storage every worker shares)"
    [[ "$WORKDIR" == gs://?* ]] \
      || die "--workdir '$WORKDIR' must be a gs:// path: all workers write one checkpoint, a local path would only exist on each worker's own disk"
    [[ -f "$ROOT/$CONFIG" ]] || die "--config '$CONFIG' does not exist (give a path relative to the repository, e.g. experiments/configs/kmnist_cnn.py)"
  fi
done

# One shell word: as is when safe, else single-quoted.
q() { if [[ "$1" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then printf '%s' "$1"; else printf '%s' "${1@Q}"; fi; }

# Prints a command (quoted so that it can be pasted) or runs it.
run() {
  if ((DRY_RUN)); then
    local out="" a
    for a in "$@"; do out+="$(q "$a") "; done
    echo "${out% }"
  else
    "$@"
  fi
}

GCLOUD=(gcloud compute tpus tpu-vm)
COMMON=("--zone=$ZONE")
[[ -n "$PROJECT" ]] && COMMON+=("--project=$PROJECT")

for action in "${ACTIONS[@]}"; do
  case "$action" in
    create)
      run "${GCLOUD[@]}" create "$NAME" "${COMMON[@]}" "--accelerator-type=$ACCELERATOR" \
        "--version=$VERSION"
      ;;
    setup)
      # This checkout (tracked and untracked files, not .venv / workdirs) to every worker.
      TARBALL="${TMPDIR:-/tmp}/kmnist-jax-src.tar.gz"
      run tar -C "$ROOT" --exclude=.venv --exclude=workdirs --exclude=.git \
        --exclude=__pycache__ -czf "$TARBALL" .
      run "${GCLOUD[@]}" scp "$TARBALL" "$NAME:kmnist-jax-src.tar.gz" "${COMMON[@]}" --worker=all
      run "${GCLOUD[@]}" ssh "$NAME" "${COMMON[@]}" --worker=all --command="set -e; \
mkdir -p $REMOTE_DIR && tar -xzf kmnist-jax-src.tar.gz -C $REMOTE_DIR && cd $REMOTE_DIR && \
(command -v $PY >/dev/null || (sudo apt-get update -q && sudo apt-get install -y -q $PY $PY-venv)) && \
$PY -m venv .venv && \
.venv/bin/pip install -q -U pip && .venv/bin/pip install -q -e . -c constraints.txt && \
.venv/bin/pip install -q \"$JAX_TPU\" && .venv/bin/python -c \"import jax; print(jax.process_index(), jax.devices())\""
      ;;
    train)
      ENV="TF_CPP_MIN_LOG_LEVEL=2"
      [[ -n "$DATA_DIR" ]] && ENV+=" KMNIST_JAX_DATA_DIR=$(q "$DATA_DIR")"
      ARGS="$(q "--config=$CONFIG") $(q "--workdir=$WORKDIR") --config.distributed=True"
      for a in "${EXTRA[@]}"; do ARGS+=" $(q "$a")"; done
      run "${GCLOUD[@]}" ssh "$NAME" "${COMMON[@]}" --worker=all --command="cd $REMOTE_DIR && \
$ENV .venv/bin/python experiments/train.py $ARGS"
      ;;
    delete)
      run "${GCLOUD[@]}" delete "$NAME" "${COMMON[@]}" --quiet
      ;;
  esac
done
