"""The throughput levers of the demo presets, one at a time, each with its measurement.

    .venv/bin/python benchmarks/bench_levers.py [--quick] [--steps 30] [--skip-compile]

The issue: "the demo presets train at >= 300 samples/s on this 2-core CPU, end to end (data
included). Show the levers you pulled ... each with its measurement." Every row changes ONE thing
in the `demo` configuration of brn_c16 (and, for a subset, frn) and reports training samples/s
relative to the unchanged demo configuration, measured the same way:

- level "fit": `qgmrn.engine.fit` end to end (data loading included) on a small generated
  mini-CLEVR, `--steps` optimizer steps, samples/s from metrics.jsonl over the second half
  (`bench_train.fit_throughput`). Levers: input size (64 demo / 96 / 128), visual widths (demo;
  the prototype's stem 32 + stem max pool; the paper's stage widths), torch threads (1 / 2),
  DataLoader workers (0 / 1 / 2 demo), CPU precision and memory format (fp32 / bf16 autocast x
  contiguous / channels_last: `TrainConfig.cpu_amp`, `cpu_channels_last`), the activations'
  layout (the loader's images are channels-last in memory, so every activation in fit is
  channels-last even with `cpu_channels_last` off; the lever makes them NCHW), batch building (the
  dataset's batched `__getitems__` vs per-item `__getitem__` + collate, the latter by hiding
  `__getitems__` from the DataLoader).
  torch.compile of the model inside fit (`TrainConfig.compile`, ours; `--skip-compile` drops it).
  Batch size (64 / 128 / 256; ours, a labelled lever only: the paper-faithful runs keep 64).
  `--only LEVER`: brn_c16's baseline and that lever's fit rows, nothing else.
- level "model": forward + backward + Adam step on one synthetic batch, no data
  (`bench_model.interleaved_samples_per_s`), the variants interleaved step by step with an
  eager contiguous twin: channels_last (fit: `runtime.use_channels_last`) and torch.compile (fit
  does not compile). A compile failure is recorded, not raised. The twin's synthetic images are
  NCHW-contiguous, which fit's never are: the channels_last row measures the activations'
  layout, which fit already has (the "image layout" fit rows).
- level "loader": the training DataLoader alone (0 workers, demo size and batch): batch
  building in isolation, `__getitems__` vs per-item.

Writes results/bench/levers.json (atomically) and prints a markdown table. Expected duration of
the full run on a quiet 2-core machine: 12 fits of 30 steps (about 3-5 minutes if the demo
baseline is near 300 samples/s; the 128x128 and paper-width rows cost 2-3x a baseline fit) plus
inductor compiling brn_c16 once (not measured here: likely 0.5-2 minutes; `--skip-compile` drops
it): under 8 minutes. `--quick`: every measurement smoke-sized (2 steps, batch 8, 1 thread,
compile with the "eager" backend), about 15 s, to check that the script runs: its numbers mean
nothing. Exit status 1 when a measurement other than torch.compile failed (recorded in its row).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
import torch.multiprocessing
from bench_model import ANSWERS, VOCAB, inputs, interleaved_samples_per_s, train_step
from bench_train import data_scenes, fit_throughput, make_data
from machine import describe, load_average

from qgmrn.config import ExperimentConfig, get_config
from qgmrn.engine.runtime import cpu_has_native_bf16
from qgmrn.fileio import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
TARGET = 800.0  # samples/s, the speed goal set for the demo BRN presets


@dataclasses.dataclass(frozen=True)
class Plan:
    steps: int  # fit: optimizer steps per setting, the second half timed
    batch_size: int  # every level
    model_steps: int  # model level: timed interleaved rounds
    model_warmup: int  # model level: untimed rounds first (after compiling)
    loader_batches: int  # loader level: timed batches per variant
    max_threads: int | None  # cap on torch threads (settings above it are skipped)
    compile_backend: str


FULL = Plan(30, 64, 12, 2, 40, None, "inductor")
QUICK = Plan(2, 8, 2, 1, 3, 1, "eager")


def _error(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _row(preset, lever, setting, level, sps=None, ref=None, note="", **extra) -> dict:
    return {
        "preset": preset,
        "lever": lever,
        "setting": setting,
        "level": level,
        "samples_per_s": None if sps is None else round(sps, 1),
        "relative": None if sps is None or not ref else round(sps / ref, 3),
        "note": note,
        **extra,
    }


def _hide_getitems():
    """The DataLoader's fetcher uses `dataset.__getitems__` when it is truthy, else one
    `__getitem__` per index and `collate` over the list; forked workers inherit the patch."""
    from qgmrn.data.dataset import ClevrQuestions

    return mock.patch.object(ClevrQuestions, "__getitems__", None)


def _contiguous_images():
    """The batch's images made NCHW-contiguous before the model: the loader hands them over
    channels-last in memory (a permuted (B, H, W, 3) array), and every conv then keeps that
    layout, so fit's baseline runs its activations channels-last whatever `cpu_channels_last`
    (which only adds the weights' layout) says."""
    import qgmrn.engine.loop

    real = qgmrn.engine.loop.batch_images

    def contiguous(batch, device, channels_last):
        images = real(batch, device, channels_last)
        return images if channels_last else images.contiguous()

    return mock.patch.object(qgmrn.engine.loop, "batch_images", contiguous)


class FitLevers:
    """End-to-end rows: `fit` on variations of one preset's demo configuration."""

    def __init__(self, plan: Plan, data: Path, tmp: Path, device: str):
        self.plan, self.data, self.tmp, self.device = plan, data, tmp, device
        self.runs = 0

    def demo(self, preset: str) -> ExperimentConfig:
        cfg = get_config(preset, "demo")
        train = dataclasses.replace(cfg.train, batch_size=self.plan.batch_size)
        if self.plan.max_threads:
            threads = min(train.threads or self.plan.max_threads, self.plan.max_threads)
            train = dataclasses.replace(train, threads=threads)
        return dataclasses.replace(cfg, train=train)

    def measure(self, cfg: ExperimentConfig, patch=None) -> tuple[float | None, dict]:
        self.runs += 1
        threads = cfg.train.threads or torch.get_num_threads()
        try:
            with patch if patch is not None else contextlib.nullcontext():
                out = self.tmp / f"run{self.runs}"
                r = fit_throughput(cfg, self.data, out, self.plan.steps, self.device)
        except Exception as err:  # recorded in the row; the other levers still run
            return None, {"error": _error(err), "threads": threads}
        return r["samples_per_s"], {**r, "threads": threads}


def fit_rows(
    fl: FitLevers,
    preset: str,
    full_set: bool,
    compile_backend: str | None = None,
    only: str | None = None,
) -> list[dict]:
    """`only`: the baseline and that lever's rows (a lever name as in the table)."""
    rows: list[dict] = []
    base_cfg = fl.demo(preset)
    base, base_detail = fl.measure(base_cfg)
    base_threads = base_detail["threads"]

    def emit(lever, setting, cfg=None, note="", patch=None, same_as_base=False):
        if only is not None and lever not in ("baseline", only):
            return
        if same_as_base:
            sps, detail, note = base, base_detail, note or "the demo setting (= baseline)"
        else:
            sps, detail = fl.measure(cfg, patch)
        rows.append(_row(preset, lever, setting, "fit", sps, base, note, detail=detail))
        print(_line(rows[-1]), flush=True)

    def data(**kw):
        return dataclasses.replace(base_cfg, data=dataclasses.replace(base_cfg.data, **kw))

    def model(**kw):
        return dataclasses.replace(base_cfg, model=dataclasses.replace(base_cfg.model, **kw))

    def train(**kw):
        return dataclasses.replace(base_cfg, train=dataclasses.replace(base_cfg.train, **kw))

    h, w = base_cfg.data.image_size
    m = base_cfg.model
    emit("baseline", f"demo ({h}x{w}, {base_cfg.data.num_workers} workers, {base_threads} thr)",
         same_as_base=True, note="the demo configuration as shipped")  # fmt: skip
    if full_set:
        emit("input size", f"{h}x{w}", same_as_base=True)
        for s in (96, 128):
            emit("input size", f"{s}x{s}", data(image_size=(s, s)),
                 "cache resized from the demo's 96x64 renders")  # fmt: skip
        if m.arch == "brn":
            widths = ",".join(map(str, m.brn_widths))
            emit("widths", f"demo [{widths}], stem {m.stem_width}, no pool", same_as_base=True)
            emit("widths", f"prototype [{widths}], stem 32 + max pool",
                 model(stem_width=32, stem_pool=True),
                 f"y_L {h // 32}x{w // 32} at {h}x{w} (demo: {h // 16}x{w // 16})")  # fmt: skip
            emit("widths", "paper [64,128,256,256]", model(brn_widths=(64, 128, 256, 256)),
                 f"stage widths only; stem {m.stem_width}, no pool as in demo")  # fmt: skip
    # CPU precision and memory format (ours: TrainConfig.cpu_amp / cpu_channels_last; bf16 only
    # counts where the CPU has it natively, see runtime.cpu_has_native_bf16)
    native = "native bf16" if cpu_has_native_bf16() else "no native bf16: cpu_amp ignored, fp32"
    t0 = base_cfg.train
    for amp, cl in ((False, False), (True, False), (False, True), (True, True)):
        setting = f"{'bf16 autocast' if amp else 'fp32'}, {'channels_last' if cl else 'contiguous'}"
        if (amp, cl) == (t0.cpu_amp, t0.cpu_channels_last):
            emit("CPU precision", setting, same_as_base=True)
        else:  # every preset: the lever differs by architecture (BN vs GroupNorm)
            emit("CPU precision", setting, train(cpu_amp=amp, cpu_channels_last=cl),
                 f"TrainConfig.cpu_amp={amp}, cpu_channels_last={cl}; {native}")  # fmt: skip
    # the activations' layout (ours): what the loader's channels-last images are worth in fit
    if not t0.cpu_channels_last:
        emit("image layout", "channels-last in memory, as the loader gives them", same_as_base=True)
        emit("image layout", "NCHW-contiguous", base_cfg,
             "images made .contiguous() before the model: every activation NCHW",
             patch=_contiguous_images())  # fmt: skip
    for t in (1, 2):
        if t == base_threads:
            emit("threads", str(t), same_as_base=True)
        elif fl.plan.max_threads and t > fl.plan.max_threads and only in (None, "threads"):
            rows.append(
                _row(
                    preset,
                    "threads",
                    str(t),
                    "fit",
                    note="skipped: threads capped (--quick, --threads)",
                )
            )
            print(_line(rows[-1]), flush=True)
        elif full_set or t == 1:
            emit("threads", str(t), train(threads=t), "TrainConfig.threads")
    for nw in (0, 1, 2):
        if nw == base_cfg.data.num_workers:
            emit("loader workers", str(nw), same_as_base=True)
        elif full_set or nw == 0:
            emit("loader workers", str(nw), data(num_workers=nw))
    # a larger batch: ours, a labelled lever only (the paper and its faithful runs keep 64);
    # samples/s, not what a sample teaches (a larger batch takes fewer, larger steps)
    b0 = base_cfg.train.batch_size
    for b in (b0, 2 * b0, 4 * b0) if full_set else ():
        if b == b0:
            emit("batch size", str(b), same_as_base=True)
        else:
            emit("batch size", str(b), train(batch_size=b),
                 "ours, a labelled lever only (paper-faithful runs: 64); same lr")  # fmt: skip
    if compile_backend:  # TrainConfig.compile: torch.compile of the model inside fit (ours)
        emit("torch.compile", "off", same_as_base=True)
        emit("torch.compile", compile_backend, train(compile=compile_backend),
             "TrainConfig.compile in fit (automatic dynamic shapes); compiling falls in the "
             "untimed first half")  # fmt: skip
    if full_set:
        emit("batch building", "__getitems__ (batched)", same_as_base=True)
        method = torch.multiprocessing.get_start_method()
        if method == "fork" or base_cfg.data.num_workers == 0:
            emit("batch building", "per-item __getitem__ + collate", base_cfg,
                 "__getitems__ hidden from the DataLoader", patch=_hide_getitems())  # fmt: skip
        elif only in (None, "batch building"):  # spawned workers re-import the class
            note = f"skipped: start method {method!r}; see the loader-level rows"
            rows.append(_row(preset, "batch building", "per-item", "fit", note=note))
            print(_line(rows[-1]), flush=True)
    return rows


def model_rows(preset: str, plan: Plan, compile_too: bool) -> list[dict]:
    """channels_last and torch.compile against an eager contiguous twin, interleaved."""
    cfg = get_config(preset, "demo")
    torch.manual_seed(0)
    eager = build_model_cfg(cfg)
    images, questions, lengths, answers = inputs(plan.batch_size, cfg.data.image_size)
    batch = (images, questions, lengths, answers)
    variants: dict[str, tuple[torch.nn.Module, tuple]] = {"eager": (eager, batch)}
    cl_model = copy.deepcopy(eager).to(memory_format=torch.channels_last)
    cl_images = images.contiguous(memory_format=torch.channels_last)
    variants["channels_last"] = (cl_model, (cl_images, questions, lengths, answers))
    opts = {k: torch.optim.Adam(mod.parameters(), lr=3e-4) for k, (mod, _) in variants.items()}
    steppers: dict[str, Callable[[], float]] = {
        k: functools.partial(train_step, mod, opts[k], b) for k, (mod, b) in variants.items()
    }
    compile_info: dict = {"backend": plan.compile_backend}
    if compile_too:
        twin = copy.deepcopy(eager)
        opt = torch.optim.Adam(twin.parameters(), lr=3e-4)
        try:
            compiled = torch.compile(twin, backend=plan.compile_backend)
            t0 = time.perf_counter()
            for _ in range(2):  # compile forward and backward (the 2nd step: no recompile)
                train_step(compiled, opt, batch)
            compile_info["compile_s"] = round(time.perf_counter() - t0, 1)
            steppers["compile"] = functools.partial(train_step, compiled, opt, batch)
        except Exception as err:  # inductor needs a C++ compiler and Python headers
            compile_info["error"] = _error(err)
            torch._dynamo.reset()
    speed = interleaved_samples_per_s(
        steppers, plan.model_steps, plan.batch_size, plan.model_warmup
    )
    ref = speed["eager"]
    threads = torch.get_num_threads()
    common = {"threads": threads, "batch_size": plan.batch_size, "steps": plan.model_steps}
    note = "model step, no data; fit: TrainConfig.channels_last (CUDA), cpu_channels_last (CPU)"
    rows = [
        _row(preset, "channels_last", "off (contiguous)", "model", ref, ref, note, detail=common),
        _row(preset, "channels_last", "on", "model", speed["channels_last"], ref, note,
             detail=common),
    ]  # fmt: skip
    if compile_too:
        note = "model step, no data, fixed question length; fit does not compile"
        rows.append(_row(preset, "torch.compile", "off (eager)", "model", ref, ref, note,
                         detail=common))  # fmt: skip
        if "compile" in speed:
            detail = {**common, **compile_info}
            rows.append(_row(preset, "torch.compile", f"on ({plan.compile_backend})", "model",
                             speed["compile"], ref, note, detail=detail))  # fmt: skip
        else:
            rows.append(_row(preset, "torch.compile", f"on ({plan.compile_backend})", "model",
                             note="compile failed", detail={**common, **compile_info}))  # fmt: skip
    for r in rows:
        print(_line(r), flush=True)
    return rows


def build_model_cfg(cfg: ExperimentConfig) -> torch.nn.Module:
    from qgmrn.model import build_model

    return build_model(cfg.model, VOCAB, ANSWERS)


def loader_rows(preset: str, plan: Plan, data: Path) -> list[dict]:
    """The training DataLoader alone, 0 workers: the batch-building cost by itself."""
    from qgmrn.data import ClevrQuestions, build_vocab, make_loader

    cfg = get_config(preset, "demo")
    size = tuple(cfg.data.image_size)  # its cache was built by the baseline fit
    ds = ClevrQuestions(data, "train", build_vocab(data), size)

    def measure(per_item: bool) -> float:
        with _hide_getitems() if per_item else contextlib.nullcontext():
            loader = make_loader(ds, plan.batch_size, shuffle=True, num_workers=0, device="cpu")

            def forever():
                while True:
                    yield from loader

            batches = forever()
            next(batches)  # warm-up
            t0, n = time.perf_counter(), 0
            for _ in range(plan.loader_batches):
                n += len(next(batches))
            return n / (time.perf_counter() - t0)

    fast = measure(False)
    slow = measure(True)
    note = f"DataLoader alone, 0 workers, {size[0]}x{size[1]}, batch {plan.batch_size}"
    detail = {"batches": plan.loader_batches, "batch_size": plan.batch_size}
    rows = [
        _row(preset, "batch building", "__getitems__ (batched)", "loader", fast, fast, note,
             detail=detail),
        _row(preset, "batch building", "per-item __getitem__ + collate", "loader", slow, fast,
             note, detail=detail),
    ]  # fmt: skip
    for r in rows:
        print(_line(r), flush=True)
    return rows


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _line(r: dict) -> str:
    return (
        f"| {r['preset']} | {r['lever']} | {r['setting']} | {r['level']} "
        f"| {_fmt(r['samples_per_s'], '.1f')} | {_fmt(r['relative'], '.2f')} "
        f"| {r['note']}{'; ' + r['detail']['error'] if r.get('detail', {}).get('error') else ''} |"
    )


def table(rows: list[dict]) -> str:
    head = "| preset | lever | setting | level | samples/s | vs baseline | note |\n"
    head += "|---|---|---|---|---:|---:|---|\n"
    return head + "\n".join(_line(r) for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-sized: checks it runs")
    parser.add_argument("--steps", type=int, help="fit steps per setting, half timed (30)")
    parser.add_argument("--skip-compile", action="store_true", help="no torch.compile rows")
    parser.add_argument("--compile-backend", help="inductor (default), eager under --quick")
    parser.add_argument("--device", default="cpu", help="fit's device (model level: CPU)")
    parser.add_argument(
        "--only", help="fit level only, brn_c16: the baseline and this lever (e.g. torch.compile)"
    )
    parser.add_argument(
        "--threads", type=int, help="cap torch threads (one-thread-per-run trainings: 1)"
    )
    parser.add_argument("--out", help="default results/bench/levers.json (levers_<only>.json)")
    args = parser.parse_args()
    if args.out is None:
        slug = "".join(c if c.isalnum() else "_" for c in args.only or "").strip("_")
        if args.threads:
            slug = f"{slug}_{args.threads}thr".strip("_")
        args.out = str(
            ROOT / "results" / "bench" / (f"levers_{slug}.json" if slug else "levers.json")
        )
    plan = QUICK if args.quick else FULL
    if args.steps:
        plan = dataclasses.replace(plan, steps=max(args.steps, 2))
    if args.compile_backend:
        plan = dataclasses.replace(plan, compile_backend=args.compile_backend)
    if args.threads:
        plan = dataclasses.replace(plan, max_threads=args.threads)
    if plan.max_threads:
        torch.set_num_threads(min(torch.get_num_threads(), plan.max_threads))
    machine = describe(args.device)  # its load average is the one at the start
    t_start = time.perf_counter()
    rows: list[dict] = []
    print(table([]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # enough scenes for the largest batch's steps within one epoch (the batch size lever)
        largest = 4 * plan.batch_size if args.only in (None, "batch size") else plan.batch_size
        data = make_data(tmp / "data", data_scenes(plan.steps, largest))
        fl = FitLevers(plan, data, tmp, args.device)
        backend = None if args.skip_compile else plan.compile_backend
        rows += fit_rows(fl, "brn_c16", full_set=True, compile_backend=backend, only=args.only)
        if args.only is None:
            rows += loader_rows("brn_c16", plan, data)
            rows += model_rows("brn_c16", plan, compile_too=not args.skip_compile)
            rows += fit_rows(fl, "frn", full_set=False)
            rows += model_rows("frn", plan, compile_too=False)
    wall = time.perf_counter() - t_start
    errors = [r for r in rows if r.get("detail", {}).get("error") and r["lever"] != "torch.compile"]
    report = {
        "benchmark": "throughput levers of the demo presets, one at a time (bench_levers.py)",
        "goal": f">= {TARGET:.0f} training samples/s end to end on a 2-core CPU, demo presets",
        "quick": args.quick,
        "plan": dataclasses.asdict(plan),
        "levels": {
            "fit": "qgmrn.engine.fit end to end, data loading included; relative to the preset's "
            "demo baseline fit",
            "model": "train step on one synthetic batch, no data, variants interleaved; relative "
            "to the eager contiguous twin",
            "loader": "DataLoader alone, 0 workers; relative to the batched __getitems__ path",
        },
        "machine": {**machine, "load_average_at_end": load_average()},
        "python": sys.version.split()[0],
        "wall_s": round(wall, 1),
        "note": "CPU timings; with other jobs on the cores the numbers are lower bounds"
        + ("; --quick: smoke-sized, the numbers mean nothing" if args.quick else ""),
        "rows": rows,
    }
    out = atomic_write_json(args.out, report, indent=2, trailing_newline=True)
    print(f"\n{table(rows)}\n\nwall {wall:.0f} s; wrote {out}")
    if errors:
        print(f"{len(errors)} measurement(s) failed: see their notes", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
