#!/usr/bin/env bash
# The prepared device check of the performance issue, for one call on a lent GPU:
#   1. time to accuracy (fresh process per run, compilation included, one run at a time):
#      MNIST 99% (mnist_cnn), KMNIST 98% (kmnist_cnn_aug, the CPU config, and a wider one);
#   2. the accuracy push (experiments/configs/kmnist_push.py), seeds 0-2 run side by side
#      on the one GPU (each with 30% of its memory), test accuracy recorded every epoch;
#      their time to 98% / 99% is read from those curves (three runs shared the card, so
#      these times are upper bounds for a run alone).
#   bash benchmarks/run_gpu_perf.sh   # results in $OUT/time_to_accuracy/gpu_<card>/ and
#                                     # $OUT/accuracy_push/gpu_<card>/ (OUT default: results)
# Expects the datasets in $KMNIST_JAX_DATA_DIR (default ./.gpu_data) and, where the
# machine lacks them, pure-Python wheels (ml_collections) in ./.whl.
set -u
source "$(dirname "$0")/gpu_env.sh"
TTA_OUT="${OUT:-results}/time_to_accuracy/$KIND"
OUT="${OUT:-results}/accuracy_push/$KIND"
mkdir -p "$OUT" "$TTA_OUT"

echo "== time to accuracy"
timeout "${TTA_TIMEOUT:-140}" python3 benchmarks/time_to_accuracy.py \
    --runs "mnist_cnn:0.99,kmnist_cnn_aug:0.98,kmnist_cnn_aug:0.98:model_kwargs.widths=(64,128,256)" \
    --platform_tag gpu --out "$TTA_OUT" --timeout 120 2>&1 | grep -v -i warning

echo "== accuracy push: seeds 0-2 side by side"
for s in 0 1 2; do
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.30 timeout "${PUSH_TIMEOUT:-400}" python3 experiments/train.py \
      --config experiments/configs/kmnist_push.py --workdir "/tmp/push_s$s" \
      --config.seed=$s --config.progress=False --config.tensorboard=False \
      --config.eval_test_every_epoch=True > "$OUT/push_s$s.log" 2>&1 &
done
# Copy the curves out as they grow: a run cut off by the time limit still reports.
( while sleep 15; do for s in 0 1 2; do mkdir -p "$OUT/push_s$s"
    cp /tmp/push_s$s/metrics.jsonl "$OUT/push_s$s/" 2>/dev/null; done; done ) &
COPIER=$!
wait $(jobs -p | grep -v "^$COPIER$")
kill $COPIER 2>/dev/null
for s in 0 1 2; do
  mkdir -p "$OUT/push_s$s"
  cp /tmp/push_s$s/metrics.jsonl /tmp/push_s$s/results.json "$OUT/push_s$s/" 2>/dev/null
  grep -v -i warning "$OUT/push_s$s.log" | tail -4
done
python3 - "$OUT" <<'EOF'
import json, os, sys, statistics
out = sys.argv[1]
rows = []
for s in range(3):
  d = os.path.join(out, f"push_s{s}")
  hist = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))] \
      if os.path.exists(os.path.join(d, "metrics.jsonl")) else []
  res = json.load(open(os.path.join(d, "results.json"))) \
      if os.path.exists(os.path.join(d, "results.json")) else None
  first = lambda t: next((h for h in hist if h.get("test_accuracy", 0) >= t), None)
  r = {"seed": s, "epochs": len(hist),
       "final_test_accuracy": res["test_accuracy"] if res else None,
       "best_epoch_test_accuracy": max((h.get("test_accuracy", 0) for h in hist), default=None),
       "elapsed_s": hist[-1]["elapsed_s"] if hist else None}
  for t in (0.98, 0.99, 0.994):
    h = first(t)
    r[f"time_to_{t}"] = None if h is None else [h["epoch"], h["elapsed_s"]]
  rows.append(r)
  print(r)
accs = [r["final_test_accuracy"] for r in rows if r["final_test_accuracy"] is not None]
summary = {"rows": rows, "n": len(accs),
           "mean": statistics.mean(accs) if accs else None,
           "std": statistics.stdev(accs) if len(accs) > 1 else None}
print("push final test accuracy:", summary["mean"], "+-", summary["std"], "over", len(accs))
json.dump(summary, open(os.path.join(out, "push_summary.json"), "w"), indent=1)
EOF
