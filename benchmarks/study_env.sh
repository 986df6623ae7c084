# Sourced by the study scripts for a lent GPU (run_gpu_studies.sh, run_gpu_robust.sh;
# TINY=1 runs them on a CPU): sets PY (PYTHON, default python3), KIND (cpu, or the
# card's results folder from gpu_env.sh, e.g. gpu_h100) and PARALLEL (runs side by
# side, default 4).
PY="${PYTHON:-python3}"
KIND="cpu"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
  source benchmarks/gpu_env.sh
fi
PARALLEL="${PARALLEL:-4}"
