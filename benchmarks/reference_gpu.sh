#!/usr/bin/env bash
# Reference runs on a lent GPU machine: the routed demo BRN (brn_c16), its static twin
# (brn_c16_static) and two baselines (cnn_lstm, film), each with the same wall-clock budget, on the
# demo mini-CLEVR. Run from the repository root:
#
#   MINUTES=1.5 bash benchmarks/reference_gpu.sh              # all four presets
#   MINUTES=1.5 bash benchmarks/reference_gpu.sh film         # or some of them
#
# Writes $OUT/reference/runs/<preset>/ (OUT defaults to results). A preset whose eval.json exists
# is skipped, and an interrupted run continues (--resume; the budget is summed over resumes), so
# the script can be spread over several commands. Uses `python -m qgmrn.cli` (the console
# script may not be installed there).
set -euo pipefail

OUT=${OUT:-results}
MINUTES=${MINUTES:-1.5}   # --max-minutes of training per preset (evaluation not counted)
DATA=${DATA:-data/mini-clevr}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python}
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
PRESETS=("$@")
[ ${#PRESETS[@]} -gt 0 ] || PRESETS=(brn_c16 brn_c16_static cnn_lstm film)
WORKERS=$(( $(nproc) < 8 ? $(nproc) : 8 ))

# demo data (5000/500/100 scenes, 96x64 PNGs, with CLEVR-Humans-style paraphrases), once
if [ ! -f "$DATA/summary.json" ]; then
    time "$PYTHON" -m qgmrn.cli generate "$DATA" --profile demo --humans \
        --workers "$WORKERS" --no-progress
fi

for preset in "${PRESETS[@]}"; do
    run="$OUT/reference/runs/$preset"
    if [ -f "$run/eval.json" ]; then echo "$preset: done ($run/eval.json)"; continue; fi
    time "$PYTHON" -m qgmrn.cli train --preset "$preset" --profile demo --data "$DATA" \
        --out "$run" --device "$DEVICE" --max-minutes "$MINUTES" --resume --no-progress
done
