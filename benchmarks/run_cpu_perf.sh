#!/usr/bin/env bash
# The prepared CPU check of the performance issue: one command per machine kind, the
# figures the README's Performance section needs, one heavy job at a time.
#
#   bash benchmarks/run_cpu_perf.sh [TAG]    # TAG: default the CPU kind (intel, zen3, zen4)
#   DRY_RUN=1 bash benchmarks/run_cpu_perf.sh   # print the commands only
#
#   1. training throughput vs PyTorch, 5 round-robin repetitions (needs PyTorch:
#      pip install torch==2.13.0, the CPU build)  -> results/throughput/<kind>/
#   2. time to accuracy, fresh process per seed: mnist_fast 99%, kmnist_fast 98%, seeds
#      0-4                                        -> results/time_to_accuracy/<kind>/
#   3. what parallel='auto' should pick here: pmap vs sharded (cpu_variants' default
#      variant), 6 paired repetitions
#                                                 -> results/cpu_variants/<kind>/
# Each step waits for a quiet machine (--wait_idle) and goes on if the one before
# failed; the exit status is the number of failed steps. 38 min on the Zen 4 (measured),
# about as long on the Intel Xeon, about 70 min on the Zen 3 (half the training rate).
set -u
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
PY="${PYTHON:-python}"
if ! "$PY" -c "import kmnist_jax.io" 2>/dev/null; then
  echo "error: '$PY' cannot import kmnist_jax (bash launch/local.sh lint makes .venv;" \
       "or set PYTHON=/path/to/python)" >&2
  exit 2
fi
if [ $# -gt 1 ] || [[ "${1:-}" == -* ]]; then
  echo "usage: bash benchmarks/run_cpu_perf.sh [TAG]  (TAG: letters, digits, _ or -)" >&2
  exit 2
fi
TAG="${1:-$("$PY" -c "
from kmnist_jax import io
m = io.cpu_model()
print('zen4' if 'Zen 4' in m else 'zen3' if 'Zen 3' in m else
      'intel' if 'Intel' in m else 'cpu')")}"
if ! [[ "$TAG" =~ ^[A-Za-z0-9_-]+$ ]]; then     # the benchmarks' own --tag rule
  echo "error: bad TAG '$TAG' (letters, digits, _ or -)" >&2
  exit 2
fi
STEPS=(
  "$PY benchmarks/throughput.py --seconds 8 --jax_modes single,pmap,sharded --torch_variants eager,channels_last --wait_idle 30 --retries 1 --repeats 5 --tag ${TAG}_perf"
  "$PY benchmarks/time_to_accuracy.py --runs mnist_fast:0.99,kmnist_fast:0.98 --seeds 0,1,2,3,4 --wait_idle 30 --platform_tag cpu_${TAG}_perf"
  "$PY benchmarks/cpu_variants.py --models keras_cnn,cnn --variants default,pmap --repeats 6 --seconds 8 --wait_idle 20 --tag ${TAG}_perf"
)
if [ "${DRY_RUN:-0}" != 0 ]; then
  printf '%s\n' "${STEPS[@]}"
  exit 0
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "note: PyTorch is not installed (pip install torch==2.13.0, the CPU build):" \
       "the throughput step will time JAX only" >&2
fi
failed=0
for cmd in "${STEPS[@]}"; do
  echo "== $(date -u +%H:%M:%S) $cmd"
  $cmd || { echo "== failed (exit $?): $cmd" >&2; failed=$((failed + 1)); }
done
echo "== done, $failed step(s) failed; results in results/{throughput,time_to_accuracy,cpu_variants}/cpu_*/*_${TAG}_perf.*"
exit "$failed"
