#!/usr/bin/env bash
# One lease of a GPU machine, one command: prove the GPU path, then train reference
# models side by side on the stream of fresh mini-CLEVR scenes, and pack what they reached.
#
#   MINUTES=6 bash benchmarks/reference_gpu.sh                        # the default presets
#   MINUTES=6 bash benchmarks/reference_gpu.sh brn_c16 brn_c16_static # or some
#   MINUTES=3 bash benchmarks/reference_gpu.sh brn_c16@1 brn_c16@2 brn_c16_static@1 ...
#       # PRESET@SEED: another seed (--seed), into the run folder PRESET_sSEED
#   MINUTES=6 bash benchmarks/reference_gpu.sh brn_c16+attrv brn_c16_static+attr
#       # our labelled arm (--attribute-loss-weight $ATTR_WEIGHT, default 1): PRESET+attrv with the
#       # loss kept out of the router (--attribute-loss-reach visual) into the run folder
#       # PRESET_attrv, PRESET+attr with it reaching every parameter (all) into PRESET_attr (a
#       # static twin has no router: its +attr is the static arm of both); PRESET+attrv@SEED:
#       # PRESET_attrv_sSEED
#   CHECK_S=0 DEVICE=cpu MINUTES=0.3 bash benchmarks/reference_gpu.sh brn_c16   # a smoke here
#
# 1. device.txt: the machine (GPU, driver, torch, cores).
# 2. The demo profile's val/test splits (train 0: the stream needs none), generated with every
#    core while 3. runs: identical to the CPU runs' (per-scene pure, seed 0).
# 3. gpu_check.py throughput (synthetic batches, bf16 autocast + channels-last, no loader),
#    CHECK_S seconds at most (0: skip).
# 4. The presets trained at once, one process each (the GPU is launch-bound at batch 64, so
#    processes share it well), with the paper's recipe (the demo profile's TrainConfig: Adam,
#    batch 64, lr 3e-4 after warmup, bf16 autocast + channels-last on CUDA), on the stream
#    (REUSE batches per rendered group of scenes; WORKERS rendering processes per run), each
#    for MINUTES of training. Checkpoints every CKPT steps, validation every EVAL_EVERY steps.
#    A run folder that exists is continued (--resume) for MINUTES more: fit's --max-minutes
#    counts training minutes over all the run's calls, so the script passes the minutes its
#    checkpoint has already trained (on any machine) plus MINUTES.
#    DEADLINE_S after the start, runs still going are stopped (their last checkpoint stays).
# 5. Packs the run folders into one archive in 15 MiB parts ($OUT/runs.tar.gz.partNN), plus
#    gpu_check.json, the training logs and device.txt: the files the device tool brings back
#    (8 at most, 16 MiB each).
#
# OUT defaults to results/reference; the runs go to $RUNS (default $OUT/runs). Uses
# `python -m qgmrn.cli` (the console script may not be installed there).
set -uo pipefail

T0=$(date +%s)
OUT=${OUT:-results/reference}
RUNS=${RUNS:-$OUT/runs}
MINUTES=${MINUTES:-6}
DEADLINE_S=${DEADLINE_S:-560}
CHECK_S=${CHECK_S:-60}
DATA=${DATA:-data/mini-clevr}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
REUSE=${REUSE:-4}
EVAL_EVERY=${EVAL_EVERY:-2000}  # steps between validations (2000 x 64 = 128k samples)
CKPT=${CKPT:-1000}              # steps between checkpoints
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PRESETS=("$@")
[ ${#PRESETS[@]} -gt 0 ] || PRESETS=(brn_c16 brn_c16_static film)
CORES=$(nproc)
N=${#PRESETS[@]}
WORKERS=${WORKERS:-$(( (CORES - N) / N > 1 ? (CORES - N) / N : 1 ))}
mkdir -p "$OUT" "$RUNS"
elapsed() { echo $(( $(date +%s) - T0 )); }

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  echo "cpu cores: $CORES, runs: ${PRESETS[*]}, stream workers per run: $WORKERS, reuse: $REUSE"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

if [ ! -f "$DATA/summary.json" ]; then
    "$PYTHON" -m qgmrn.cli generate "$DATA" --profile demo --train-scenes 0 \
        --workers "$CORES" --no-progress > "$OUT/generate.log" 2>&1 &
    GEN=$!
fi
if [ "$CHECK_S" -gt 0 ]; then
    "$PYTHON" benchmarks/gpu_check.py --device "$DEVICE" --out "$OUT" --skip-train \
        --presets brn_c16,brn_c16_static,brn_c32,frn,film --budget-s "$CHECK_S" \
        --warmup 10 --steps 50 || echo "gpu_check failed (rc $?)"
fi
[ -z "${GEN:-}" ] || wait "$GEN" || { echo "generate failed:"; cat "$OUT/generate.log"; exit 1; }
echo "[$(elapsed)s] data ready; training ${PRESETS[*]} for $MINUTES min each"

PIDS=()
NAMES=()
for spec in "${PRESETS[@]}"; do
    preset=${spec%@*}
    seed_args=()
    attr_args=()
    if [ "${preset%+attrv}" != "$preset" ]; then
        preset=${preset%+attrv}
        attr_args=(--attribute-loss-weight "${ATTR_WEIGHT:-1.0}" --attribute-loss-reach visual)
        name="${preset}_attrv"
    elif [ "${preset%+attr}" != "$preset" ]; then
        preset=${preset%+attr}
        attr_args=(--attribute-loss-weight "${ATTR_WEIGHT:-1.0}" --attribute-loss-reach all)
        name="${preset}_attr"
    else
        name=$preset
    fi
    if [ "$spec" != "${spec%@*}" ]; then name="${name}_s${spec#*@}"; seed_args=(--seed "${spec#*@}"); fi
    NAMES+=("$name")
    budget=$MINUTES  # an existing run: its minutes so far (checkpoint.pt) + MINUTES
    if [ -f "$RUNS/$name/checkpoint.pt" ]; then
        budget=$("$PYTHON" -c 'import sys, torch
c = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
print(c.get("extra", {}).get("train_seconds", 0.0) / 60 + float(sys.argv[2]))' \
            "$RUNS/$name/checkpoint.pt" "$MINUTES") || budget=$MINUTES
        echo "[$(elapsed)s] $name: continuing to $budget training minutes in all"
    fi
    "$PYTHON" -m qgmrn.cli train --preset "$preset" --profile demo --data-dir "$DATA" \
        --out "$RUNS/$name" --device "$DEVICE" --max-minutes "$budget" --epochs 100000 \
        --train-source stream --scene-reuse "$REUSE" --num-workers "$WORKERS" "${seed_args[@]}" "${attr_args[@]}" \
        --eval-every-steps "$EVAL_EVERY" --checkpoint-every-steps "$CKPT" --resume \
        --no-progress > "$OUT/train_$name.log" 2>&1 &
    PIDS+=($!)
done
while :; do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || break
    if [ "$(elapsed)" -ge "$DEADLINE_S" ]; then
        echo "[$(elapsed)s] deadline: stopping the runs still going"
        for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
        sleep 3
        break
    fi
    sleep 5
done
echo "[$(elapsed)s] training done"

DONE=()
for preset in "${NAMES[@]}"; do
    run="$RUNS/$preset"
    [ -d "$run" ] || continue
    DONE+=("$preset")
    "$PYTHON" - "$run" <<'EOF'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
train = [r for r in rows if "kind" not in r and "samples_per_s" in r]
vals = [r for r in rows if r.get("kind") == "val"]
sps = sorted(r["samples_per_s"] for r in train)
print(run.name, f"steps {train[-1]['step'] if train else 0}",
      f"samples/s median {sps[len(sps) // 2]:.0f}" if sps else "",
      "val", [round(v.get("overall", v.get("acc", 0)), 3) for v in vals][-6:])
EOF
done
# one archive of every run folder, in 15 MiB parts (the device tool returns 8 files of 16 MiB
# at most): here, `cat runs.tar.gz.part* | tar -xz -C results/reference/runs`
if [ ${#DONE[@]} -gt 0 ]; then
    tar -czf "$OUT/runs.tar.gz" -C "$RUNS" "${DONE[@]}"
    split -b 15M -d "$OUT/runs.tar.gz" "$OUT/runs.tar.gz.part"
    rm "$OUT/runs.tar.gz"
fi
cat "$OUT"/train_*.log > "$OUT/train_logs.txt" 2>/dev/null
rm -f "$OUT"/train_*.log
ls -la "$OUT"
echo "[$(elapsed)s] packed"
