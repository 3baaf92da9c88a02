"""GPU check: prove the CUDA training path and measure training-step throughput, in minutes.

    PYTHONPATH=. python benchmarks/gpu_check.py [--out DIR] [--data DIR]    # on a GPU machine
    PYTHONPATH=. python benchmarks/gpu_check.py --device cpu --quick        # smoke, seconds

The one prepared script for a lent GPU (H100/H200); it is meant to finish in under ~4 minutes.
1. env: torch / CUDA / cuDNN versions, device name, bf16 support, memory.
2. data: a small mini-CLEVR (the demo profile's generation settings, 300 train / 60 val scenes)
   generated into a temporary folder, or into `--data DIR` (reused when it already holds one).
3. train_check: `qgmrn.engine.fit` on the device (bf16 autocast and channels-last from
   TrainConfig) for a few dozen steps on brn_c16 and frn at the demo profile (warmup shortened so
   the loss can move), then `fit(resume=True)` (what `qgmrn train --resume` calls) continues to
   more steps. Checked: every logged loss finite, the loss lower on average over the last third
   of the logged rows than over the first third, the run files written (checkpoint.pt, best.pt,
   eval.json, ...), the resumed run picking up at the checkpoint's step.
4. throughput: training-step samples/s (forward + backward + Adam step under bf16 autocast,
   channels-last, on a synthetic batch already on the device: the data loader is not measured)
   for brn_c16, brn_c16_static, brn_c32, frn and film at the demo profile (64x64, batch 64 and
   256) and at the paper profile (224x224; frn 480x320; batch 64). Timed with
   torch.cuda.synchronize around `--steps` steps after `--warmup` untimed ones; peak memory is
   torch.cuda.max_memory_allocated over the config. Configs left when `--budget-s` is spent are
   recorded as skipped.
5. Writes DIR/gpu_check.json (atomically, after every phase, so a killed run leaves what it had)
   with DIR = `--out`, else $OUT, else results/bench; copies each check run's metrics.jsonl and
   eval.json to DIR/gpu_check_runs/<preset>/; prints a compact table. Exit status 1 when a check
   failed.

`--quick` (for CPU tests) uses the smoke profile everywhere: tiny data, tiny models, a handful of
steps; its loss-decrease result is recorded but not required (too few steps to judge).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_model import ANSWERS, PAPER_SIZES, VOCAB, inputs

from qgmrn.config import get_config
from qgmrn.engine.history import device_name
from qgmrn.engine.losses import load_balance_loss, vqa_loss
from qgmrn.model import build_model

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PRESETS = ("brn_c16", "frn")
SPEED_PRESETS = ("brn_c16", "brn_c16_static", "brn_c32", "frn", "film")
RUN_FILES = (
    "config.json",
    "vocab.json",
    "metrics.jsonl",
    "checkpoint.pt",
    "best.pt",
    "eval.json",
    "routing_paths.npz",
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes of one invocation: the full GPU check, or the smoke-sized `--quick` one."""

    profile_data: str  # the profile whose generation settings the data uses
    train_scenes: int
    val_scenes: int
    questions_per_scene: int | None  # None: the profile's
    train_profile: str
    steps: int  # first fit: max_steps
    resume_steps: int  # resumed fit: max_steps (total)
    log_every: int
    checkpoint_every: int
    warmup_steps: int
    # throughput configs: (profile, batch, image (H, W) or None for the profile's / PAPER_SIZES)
    speed: tuple[tuple[str, int], ...]


# full: 300 scenes x 10 questions = 46 steps of 64 per epoch, so the resumed fit (to step 48)
# also crosses an epoch end (validation pass, new sampler epoch)
FULL = Plan("demo", 300, 60, None, "demo", 24, 48, 2, 12, 5, (("demo", 64), ("demo", 256),
            ("paper", 64)))  # fmt: skip
QUICK = Plan("smoke", 16, 4, 4, "smoke", 4, 6, 1, 2, 2, (("smoke", 4),))


# --------------------------------------------------------------------------------------------
# helpers


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def env_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "device": str(device),
        "device_name": device_name(device),
        "bf16_supported": None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device_name=torch.cuda.get_device_name(device),
            bf16_supported=torch.cuda.is_bf16_supported(),
            capability=f"{props.major}.{props.minor}",
            total_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
        )
    return info


# --------------------------------------------------------------------------------------------
# 2. data


def make_data(data_dir: Path, plan: Plan, workers: int) -> dict[str, Any]:
    from qgmrn.synth.generate import generate_dataset

    d = get_config("brn_c16", plan.profile_data).data
    done = (data_dir / "questions" / "CLEVR_val_questions.json").exists()
    t0 = time.perf_counter()
    if not done:
        generate_dataset(
            data_dir,
            train_scenes=plan.train_scenes,
            val_scenes=plan.val_scenes,
            test_scenes=0,
            questions_per_scene=plan.questions_per_scene or d.questions_per_scene,
            render_size=d.render_size,
            min_objects=d.min_objects,
            max_objects=d.max_objects,
            framing=d.framing,
            workers=workers,
            progress=False,
        )
    return {
        "dir": str(data_dir),
        "generated": not done,
        "profile": plan.profile_data,
        "train_scenes": plan.train_scenes,
        "val_scenes": plan.val_scenes,
        "render_size": list(d.render_size),
        "workers": workers,
        "seconds": round(time.perf_counter() - t0, 2),
    }


# --------------------------------------------------------------------------------------------
# 3. training path


def _rows(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "kind" not in r]


def train_check(preset: str, data: Path, run_dir: Path, plan: Plan, device: str) -> dict:
    from qgmrn.engine import fit

    cfg = get_config(preset, plan.train_profile)
    cfg = dataclasses.replace(
        cfg,
        train=dataclasses.replace(
            cfg.train,
            epochs=10**6,
            max_minutes=None,
            warmup_steps=plan.warmup_steps,
            log_every=plan.log_every,
            checkpoint_every_steps=plan.checkpoint_every,
        ),
    )
    out: dict[str, Any] = {
        "preset": preset,
        "profile": plan.train_profile,
        "device": device,
        "amp": cfg.train.amp,
        "channels_last": cfg.train.channels_last,
        "batch_size": cfg.train.batch_size,
        "image_size": list(cfg.data.image_size),
        "warmup_steps": plan.warmup_steps,
        "steps": plan.steps,
        "resume_steps": plan.resume_steps,
    }
    t0 = time.perf_counter()
    first = fit(cfg, data, run_dir, device=device, progress=False, max_steps=plan.steps)
    out["fit_seconds"] = round(time.perf_counter() - t0, 2)
    files = {name: (run_dir / name).exists() for name in RUN_FILES}
    ev1 = json.loads((run_dir / "eval.json").read_text()) if files["eval.json"] else {}
    rows1 = _rows(run_dir)
    t0 = time.perf_counter()
    second = fit(
        cfg, data, run_dir, device=device, progress=False, resume=True, max_steps=plan.resume_steps
    )
    out["resume_seconds"] = round(time.perf_counter() - t0, 2)
    ev2 = json.loads((run_dir / "eval.json").read_text())
    rows = _rows(run_dir)
    losses = [r["loss"] for r in rows]
    steps = [r["step"] for r in rows]
    third = max(len(losses) // 3, 1)
    head, tail = losses[:third], losses[-third:]
    resumed = [s for s in steps if s > plan.steps]
    checks = {
        "files_written": all(files.values()),
        "first_stop_max_steps": first["stop_reason"] == "max_steps" and first["step"] == plan.steps,
        "eval_device": str(ev1.get("train", {}).get("device", "")).split(":")[0]
        == torch.device(device).type,
        "loss_finite": bool(losses) and all(math.isfinite(x) for x in losses),
        "loss_decreased": bool(losses) and sum(tail) / len(tail) < sum(head) / len(head),
        "resume_continued": second["step"] == plan.resume_steps
        and ev2["train"]["steps"] == plan.resume_steps
        and steps == sorted(set(steps))  # no step logged twice
        and bool(resumed)
        and min(resumed) == plan.steps + plan.log_every
        and len(rows) > len(rows1),
        "eval_overall_finite": ev2["overall"] is not None and math.isfinite(ev2["overall"]),
    }
    out.update(
        files=files,
        losses=[round(x, 4) for x in losses],
        loss_steps=steps,
        loss_first_third=round(sum(head) / len(head), 4) if losses else None,
        loss_last_third=round(sum(tail) / len(tail), 4) if losses else None,
        exec_ratio_last=rows[-1]["exec_ratio"] if rows else None,
        loader_samples_per_s_last=round(rows[-1]["samples_per_s"], 1) if rows else None,
        eval_overall=ev2["overall"],
        eval_n=ev2["n"],
        train_minutes=round(ev2["train"]["train_minutes"], 3),
        epochs_completed=ev2["train"]["epochs_completed"],
        checks=checks,
    )
    return out


# --------------------------------------------------------------------------------------------
# 4. throughput


def speed(
    preset: str,
    profile: str,
    batch: int,
    device: torch.device,
    warmup: int,
    steps: int,
) -> dict[str, Any]:
    cfg = get_config(preset, profile)
    hw = cfg.data.image_size
    if profile == "paper":
        hw = PAPER_SIZES.get(cfg.model.arch, (224, 224))
    cuda = device.type == "cuda"
    amp, channels_last = cfg.train.amp and cuda, cfg.train.channels_last and cuda
    row: dict[str, Any] = {
        "preset": preset,
        "profile": profile,
        "input_hw": list(hw),
        "batch": batch,
        "amp_bf16": amp,
        "channels_last": channels_last,
    }
    torch.manual_seed(0)
    model = build_model(cfg.model, VOCAB, ANSWERS).to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, betas=tuple(cfg.train.betas))
    images, questions, lengths, answers = (t.to(device) for t in inputs(batch, tuple(hw)))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    weight = cfg.train.load_balance_weight

    def step() -> torch.Tensor:  # as qgmrn.engine.loop.train_one_epoch does it
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(images, questions, lengths)
            loss = vqa_loss(out.logits.float(), answers)
            if out.gates:
                loss = loss + weight * load_balance_loss([g.float() for g in out.gates])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    seconds = time.perf_counter() - t0
    row.update(
        params=sum(p.numel() for p in model.parameters()),
        steps_timed=steps,
        warmup_steps=warmup,
        ms_per_step=round(1e3 * seconds / steps, 2),
        samples_per_s=round(batch * steps / seconds, 1),
        peak_mem_mib=round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None,
        loss_finite=bool(torch.isfinite(loss).item()),
    )
    return row


# --------------------------------------------------------------------------------------------
# report


def table(report: dict) -> str:
    lines = []
    e = report["env"]
    lines.append(
        f"{e['device_name']} | torch {e['torch']} cuda {e['cuda']} | bf16 {e['bf16_supported']}"
    )
    if report.get("data"):
        d = report["data"]
        lines.append(
            f"data: {d['train_scenes']}/{d['val_scenes']} scenes in {d['seconds']}s "
            f"({'generated' if d['generated'] else 'reused'}) at {d['dir']}"
        )
    for t in report.get("train_check", []):
        if "error" in t:
            lines.append(f"train {t['preset']:<8} ERROR {t['error']}")
            continue
        bad = [k for k, v in t["checks"].items() if not v]
        lines.append(
            f"train {t['preset']:<8} {t['steps']}+{t['resume_steps'] - t['steps']} steps  "
            f"loss {t['loss_first_third']} -> {t['loss_last_third']}  val acc "
            f"{t['eval_overall']:.3f}  fit {t['fit_seconds']}s resume {t['resume_seconds']}s  "
            + ("ok" if not bad else "FAILED: " + ", ".join(bad))
        )
    if report.get("throughput"):
        lines.append(
            f"{'preset':<15} {'profile':<7} {'HxW':>8} {'batch':>5} {'samples/s':>10} "
            f"{'ms/step':>8} {'peak MiB':>9}"
        )
        for r in report["throughput"]:
            hw = "x".join(map(str, r["input_hw"]))
            head = f"{r['preset']:<15} {r['profile']:<7} {hw:>8} {r['batch']:>5}"
            if "samples_per_s" in r:
                mem = "-" if r["peak_mem_mib"] is None else f"{r['peak_mem_mib']:.0f}"
                lines.append(
                    f"{head} {r['samples_per_s']:>10.1f} {r['ms_per_step']:>8.2f} {mem:>9}"
                )
            else:
                lines.append(f"{head} {r.get('error') or r.get('skipped')}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    parser.add_argument("--quick", action="store_true", help="smoke-sized (CPU tests)")
    parser.add_argument("--out", default=None, help="folder for gpu_check.json")
    parser.add_argument("--data", default=None, help="data set folder (default: a temp folder)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per config")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per config")
    parser.add_argument("--presets", default=",".join(SPEED_PRESETS), help="throughput presets")
    parser.add_argument(
        "--budget-s", type=float, default=210.0, help="skip throughput configs after this"
    )
    parser.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends flag")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    plan = QUICK if args.quick else FULL
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    steps = args.steps if args.steps is not None else (2 if args.quick else 20)
    out_dir = Path(args.out or os.environ.get("OUT") or ROOT / "results" / "bench")
    json_path = out_dir / "gpu_check.json"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        msg = "CUDA is not available; use --device cpu --quick for a smoke run"
        env = env_info(torch.device("cpu"))
        write_json_atomic(json_path, {"benchmark": "gpu_check", "status": msg, "env": env})
        print(f"gpu_check: {msg} ({json_path})")
        return 2
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    report: dict[str, Any] = {
        "benchmark": "gpu_check",
        "status": "running",
        "quick": args.quick,
        "args": vars(args),
        "env": env_info(device),
        "data": None,
        "train_check": [],
        "throughput": [],
        "ok": None,
    }

    def save(status: str) -> None:
        report["status"] = status
        report["elapsed_s"] = round(time.monotonic() - t_start, 1)
        write_json_atomic(json_path, report)

    print(table(report), flush=True)
    save("running")
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        tmp = Path(tmp)
        if not args.skip_train:
            data = Path(args.data) if args.data else tmp / "data"
            report["data"] = make_data(data, plan, args.workers)
            print(table({"env": report["env"], "data": report["data"]}).splitlines()[-1])
            save("running")
            for preset in TRAIN_PRESETS:
                run_dir = tmp / "runs" / preset
                try:
                    r = train_check(preset, data, run_dir, plan, str(device))
                    required = dict(r["checks"])
                    if args.quick:  # too few steps to judge a trend
                        required.pop("loss_decreased")
                    failures += [f"{preset}:{k}" for k, v in required.items() if not v]
                except Exception as e:  # record and go on: the throughput is still wanted
                    r = {"preset": preset, "error": f"{type(e).__name__}: {e}"}
                    failures.append(f"{preset}:error")
                keep = out_dir / "gpu_check_runs" / preset
                keep.mkdir(parents=True, exist_ok=True)
                for name in ("metrics.jsonl", "eval.json"):
                    if (run_dir / name).exists():
                        shutil.copy2(run_dir / name, keep / name)
                report["train_check"].append(r)
                print(table({"env": report["env"], "train_check": [r]}).splitlines()[-1])
                save("running")
        if not args.skip_throughput:
            for profile, batch in plan.speed:
                for preset in args.presets.split(","):
                    if time.monotonic() - t_start > args.budget_s:
                        r = {"preset": preset, "profile": profile, "batch": batch}
                        r.update(input_hw=[], skipped=f"budget of {args.budget_s:.0f}s spent")
                    else:
                        try:
                            r = speed(preset, profile, batch, device, warmup, steps)
                            if not r["loss_finite"]:
                                failures.append(f"speed:{preset}:{profile}:{batch}:loss")
                        except Exception as e:
                            r = {"preset": preset, "profile": profile, "batch": batch}
                            r.update(input_hw=[], error=f"{type(e).__name__}: {e}"[:300])
                            failures.append(f"speed:{preset}:{profile}:{batch}:error")
                        finally:
                            if device.type == "cuda":
                                torch.cuda.empty_cache()
                    report["throughput"].append(r)
                    save("running")
    report["failures"] = failures
    report["ok"] = not failures
    save("complete")
    print(table(report))
    print(f"{'ok' if report['ok'] else 'FAILED: ' + ', '.join(failures)}  ({json_path})")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
