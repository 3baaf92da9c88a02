#!/usr/bin/env bash
# Reference runs on a lent GPU machine (issue 11): the routed BRN c=32, the FRN and the BRN's
# static twin, with the paper's recipe (bf16 autocast + channels-last on CUDA, Adam, batch 64,
# lr 3e-4 after warmup: the demo profile's TrainConfig, unchanged), trained on the stream of fresh
# mini-CLEVR scenes rendered by the device's CPU cores, scored on the same fixed val split as the
# CPU runs (same generator, seed 0). Run from the repository root:
#
#   MINUTES=3 bash benchmarks/reference_gpu.sh                 # brn_c32 frn brn_c32_static
#   MINUTES=3 bash benchmarks/reference_gpu.sh brn_c32         # or some of them
#
# Each run goes to $OUT/reference-gpu/runs/<preset>/ (OUT defaults to results) and writes its
# checkpoint every CKPT steps, so what a run reached comes back even if the machine's time runs
# out mid-run; a preset whose eval.json exists is skipped and an interrupted one continues
# (--resume; the budget is summed over resumes). metrics.jsonl holds samples/s and the loader
# wait of every logged interval (the throughput in the first seconds and after); device.txt
# records the machine. Uses `python -m qgmrn.cli` (the console script may not be installed).
set -euo pipefail

OUT=${OUT:-results}
MINUTES=${MINUTES:-3}     # --max-minutes of training per preset (evaluation not counted)
DATA=${DATA:-data/mini-clevr}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python}
SOURCE=${SOURCE:-stream}  # stream (fresh scenes) | fixed (needs the train split: TRAIN_SCENES)
REUSE=${REUSE:-1}         # stream: batches per group of rendered scenes
EVAL_EVERY=${EVAL_EVERY:-2000}  # steps between validations (2000 x 64 = 128k samples)
CKPT=${CKPT:-500}         # steps between checkpoints
TRAIN_SCENES=${TRAIN_SCENES:-0}  # the stream needs no train split; fixed needs e.g. 5000
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
PRESETS=("$@")
[ ${#PRESETS[@]} -gt 0 ] || PRESETS=(brn_c32 frn brn_c32_static)
CORES=$(nproc)
WORKERS=${WORKERS:-$(( CORES > 2 ? CORES - 2 : 1 ))}  # rendering workers; 2 cores for the trainer
RUNS="$OUT/reference-gpu/runs"
mkdir -p "$RUNS"

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  echo "cpu cores: $CORES, stream workers: $WORKERS, source: $SOURCE, reuse: $REUSE"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$OUT/reference-gpu/device.txt"

# the demo data's val/test splits (identical to the CPU runs': per-scene pure, seed 0), once
if [ ! -f "$DATA/summary.json" ]; then
    time "$PYTHON" -m qgmrn.cli generate "$DATA" --profile demo --train-scenes "$TRAIN_SCENES" \
        --workers "$CORES" --no-progress
fi

for preset in "${PRESETS[@]}"; do
    run="$RUNS/$preset"
    if [ -f "$run/eval.json" ]; then echo "$preset: done ($run/eval.json)"; continue; fi
    time "$PYTHON" -m qgmrn.cli train --preset "$preset" --profile demo --data "$DATA" \
        --out "$run" --device "$DEVICE" --max-minutes "$MINUTES" --epochs 100000 \
        --train-source "$SOURCE" --scene-reuse "$REUSE" --workers "$WORKERS" \
        --eval-every-steps "$EVAL_EVERY" --checkpoint-every-steps "$CKPT" --resume --no-progress
done
