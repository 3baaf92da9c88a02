"""The learnability study: which training data lets the demo models learn fastest?

Every arm trains one demo preset for the same wall-clock budget, one thread each, two runs at a
time on this 2-core CPU, validated every `EVAL_EVERY` steps (50k samples) on the same fixed val
split; only the training data differs:

    square5k     the fixed 5k-scene train split, squashed to 64x64 (the old demo input)
    fixed5k      the fixed 5k-scene train split at the true aspect, 64x96
    fixed50k     a fixed 50k-scene train split (data/mini-clevr-50k), 64x96
    stream       fresh scenes rendered in one DataLoader worker (qgmrn.data.stream), 64x96
    stream48     the stream at 48x72 (the 96x64 render resized, aspect kept): 1.6x the samples/s
    stream_curr  the stream with a curriculum: zero-hop programs for the first 40k samples,
                 up to one hop until 120k, then every family

Runs go to results/learnability/runs/<preset>__<arm>/; `--resume` continues stopped runs to the
(new) budget. The summary (`studies.learnability.summary`) is written to results/learnability/.

    python -m studies.learnability.run --presets brn_c16 --arms stream fixed5k
    python -m studies.learnability.run --summary-only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "results" / "learnability"
LOGS = Path(__file__).resolve().parent / "logs"  # the runs' console logs, beside the study code
EVAL_EVERY = 781  # steps of 64: 50k samples, the 5k set's epoch
ARMS: dict[str, list[str]] = {
    "square5k": ["--data-dir", "data/mini-clevr", "--image-size", "64", "64"],
    "fixed5k": ["--data-dir", "data/mini-clevr"],
    "fixed50k": ["--data-dir", "data/mini-clevr-50k"],
    "stream": ["--data-dir", "data/mini-clevr", "--train-source", "stream"],
    "stream48": [
        "--data-dir",
        "data/mini-clevr",
        "--train-source",
        "stream",
        "--image-size",
        "48",
        "72",
    ],
    "stream_curr": [
        "--data-dir",
        "data/mini-clevr",
        "--train-source",
        "stream",
        "--curriculum",
        "40000",
        "120000",
    ],
}


def command(preset: str, arm: str, minutes: float, resume: bool) -> list[str]:
    run = OUT / "runs" / f"{preset}__{arm}"
    cmd = [
        sys.executable,
        "-m",
        "qgmrn.cli",
        "train",
        "--preset",
        preset,
        "--profile",
        "demo",
        "--out",
        str(run),
        "--name",
        f"{preset}__{arm}",
        "--epochs",
        "1000",
        "--max-minutes",
        str(minutes),
        "--num-workers",
        "1",
        "--eval-every-steps",
        str(EVAL_EVERY),
        "--no-progress",
        *ARMS[arm],
    ]
    return cmd + (["--resume"] if resume else [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["brn_c16", "cnn_lstm"])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--minutes", type=float, default=30.0, help="training budget per run")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--resume", action="store_true", help="continue runs to the budget")
    p.add_argument("--summary-only", action="store_true")
    args = p.parse_args(argv)
    if not args.summary_only:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        queue = [(pr, arm) for arm in args.arms for pr in args.presets]
        running: list[tuple[subprocess.Popen, str]] = []
        LOGS.mkdir(parents=True, exist_ok=True)
        while queue or running:
            while queue and len(running) < args.parallel:
                preset, arm = queue.pop(0)
                log = open(LOGS / f"{preset}__{arm}.log", "a")  # noqa: SIM115
                cmd = command(preset, arm, args.minutes, args.resume)
                print(f"[study] start {preset} {arm}", flush=True)
                running.append(
                    (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log), arm)
                )
            time.sleep(5)
            for proc, arm in list(running):
                if proc.poll() is not None:
                    print(f"[study] done {arm}: exit {proc.returncode}", flush=True)
                    running.remove((proc, arm))
    from studies.learnability.summary import write_summary

    write_summary(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
