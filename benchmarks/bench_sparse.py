"""Sparse inference (qgmrn.nn.sparse) against the dense masked forward: latency at batch 1 and
throughput at batch 64, for the routed presets at demo size (and at the paper's 224 x 224 size,
batch 1), at forced execution ratios.

The gates are forced: every module of every layer is open with probability `ratio`, drawn per
sample (batch 64: the union over the batch is what the sparse path computes, so at batch 64 it
pays only where whole branches stay closed for the batch, e.g. the per-question paths of a
trained router that agree within a batch). Only the routed trunk (`RoutedResNet.forward` vs
`.forward_sparse`) is timed, eval mode, no grad, one thread by default. Dense and sparse calls
are interleaved (`--repeats` rounds of `--iters` calls each) and each row reports the medians,
so a slow spell of a shared machine hits both alike. The forced gates stay the same from call to
call, so the sparse trunk reuses the weights it sliced for them (`PATHS_PER_BLOCK` open sets kept
per block: a trained router's repeated paths); at batch 1 each row also times the sparse trunk
with nothing kept (`sparse_fresh_ms`, `speedup_fresh`: every call a path met for the first time).

Ratio 0 is the floor: every module closed, the trunk still runs its stem, its downsampling
shortcuts and the third norms (on a 1x1 map: a layer with every gate closed skips its block's
work). It bounds what skipping can buy (Amdahl): at ratio r the sparse trunk cannot beat
dense / (floor + r * (dense - floor)), written as `bound` in each row. That bound is loose: a
block with any branch open still runs the work no branch decides (its third norm and residual
add on the full map, the ops' dispatch). `--blocks` measures that work: every routed block at
batch 1, dense and with a fraction of its branches open, down to one (`block_rows`; writes
results/bench/sparse_blocks.json), and estimates the trunk at each fraction from it. `--runs`
times trained runs on their own routing paths (`measure_run`: the router's gates for the first
256 validation questions, batch 64 and batch 1; writes results/bench/sparse_runs.json).
The images are channels-last in memory by default, as the loaders hand them to `qgmrn
evaluate` (`--nchw`: NCHW-contiguous, this script's layout before 2026-12-01).
Writes results/bench/sparse.json with the load average at the start.

    python benchmarks/bench_sparse.py [--presets brn_c32 brn_c16 frn] [--paper-presets brn_c32]
    python benchmarks/bench_sparse.py --blocks [--presets brn_c32 brn_c16]
    python benchmarks/bench_sparse.py --runs results/reference/runs/brn_c32 [...]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe

from qgmrn.config import get_config
from qgmrn.fileio import atomic_write_json
from qgmrn.model import build_model
from qgmrn.nn import sparse as sparse_mod

ROOT = Path(__file__).resolve().parents[1]
RATIOS = (0.0, 0.3, 0.5, 0.57, 0.7, 1.0)


def _time_pair(dense, sparse, iters: int, repeats: int) -> tuple[float, float, float]:
    """Median seconds per call of each, and the median of the per-round ratios dense / sparse."""
    dense(), sparse()
    d, s = [], []
    for _ in range(repeats):
        for fn, out in ((dense, d), (sparse, s)):
            t = time.perf_counter()
            for _ in range(iters):
                fn()
            out.append((time.perf_counter() - t) / iters)
    ratios = [a / b for a, b in zip(d, s, strict=True)]
    return statistics.median(d), statistics.median(s), statistics.median(ratios)


@contextlib.contextmanager
def _no_path_cache():
    """Sparse calls that keep no sliced weights (`qgmrn.nn.sparse.PATHS_PER_BLOCK` = 0)."""
    kept = sparse_mod.PATHS_PER_BLOCK
    sparse_mod.PATHS_PER_BLOCK = 0
    try:
        yield
    finally:
        sparse_mod.PATHS_PER_BLOCK = kept


def _timing(layout, batch, ratio, union, dense: float, sparse: float, speedup: float) -> dict:
    """The fields every timing row has (seconds in, milliseconds out)."""
    return {
        "image_layout": layout,
        "batch": batch,
        "ratio": ratio,
        "union_open": union,
        "dense_ms": 1000 * dense,
        "sparse_ms": 1000 * sparse,
        "speedup": speedup,
    }


def measure(
    preset: str,
    profile: str,
    batch: int,
    ratios,
    iters: int,
    repeats: int,
    channels_last: bool = True,
) -> list:
    """`channels_last`: the images' memory layout, channels-last as the loaders (and so `qgmrn
    evaluate`) give them; False: NCHW-contiguous (this script before 2026-12-01)."""
    torch.manual_seed(0)
    cfg = get_config(preset, profile)
    model = build_model(cfg.model, 100, 28).eval()
    H, W = cfg.data.image_size
    x = torch.randn(batch, 3, H, W)  # (B, 3, H, W)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    trunk = model.backbone
    rows = []
    for ratio in ratios:
        gen = torch.Generator().manual_seed(1)
        gates = [(torch.rand(batch, m, generator=gen) < ratio).float() for m in model.gate_sizes]
        with torch.no_grad():
            dense, sparse, speedup = _time_pair(
                lambda g=gates: trunk(x, g),
                lambda g=gates: trunk.forward_sparse(x, g),
                iters,
                repeats,
            )
            fresh = {}
            if batch == 1:  # the same path with nothing kept: a path met for the first time
                with _no_path_cache():
                    _, fresh_s, fresh_x = _time_pair(
                        lambda g=gates: trunk(x, g),
                        lambda g=gates: trunk.forward_sparse(x, g),
                        iters,
                        repeats,
                    )
                fresh = {"sparse_fresh_ms": 1000 * fresh_s, "speedup_fresh": fresh_x}
        union = float(torch.cat([(g.amax(0) > 0).float() for g in gates]).mean())
        layout = "channels_last" if channels_last else "nchw"
        rows.append(
            {
                "preset": preset,
                "profile": profile,
                "image_size": [H, W],
                **_timing(layout, batch, ratio, union, dense, sparse, speedup),
                **fresh,
            }
        )
    floor = rows[0]["sparse_ms"] if rows[0]["ratio"] == 0.0 else None
    for r in rows:  # the Amdahl bound from the measured floor and the dense time
        if floor is not None:
            gated = max(r["dense_ms"] - floor, 0.0)
            r["bound"] = r["dense_ms"] / (floor + r["union_open"] * gated)
    return rows


BLOCK_FRACTIONS = (1.0, 0.7, 0.57, 0.3, 0.0)  # 0.0: one branch open per block


def block_rows(
    preset: str,
    profile: str,
    fractions=BLOCK_FRACTIONS,
    iters: int = 20,
    repeats: int = 7,
    channels_last: bool = True,
) -> list[dict]:
    """Where the sparse trunk's batch-1 time goes, block by block. Every routed bottleneck is
    timed on the map it sees in the trunk, densely (`block(x, gates)`) and sparsely
    (`bottleneck_sparse`) with the first S of its M branches open, S = round(fraction * M) and at
    least 1 (fraction 0: one branch, the least a block that runs at all computes); its grouped
    3x3 conv (conv2) is timed alone with S groups, as the sparse block calls it. One row per
    fraction, medians summed over the blocks, beside the dense trunk's time (`RoutedResNet`
    forward, all gates open), so that `trunk_estimate_ms` = trunk - dense blocks + sparse blocks
    is what the sparse trunk would take with every block at that fraction, and `speedup_estimate`
    its ratio: an Amdahl bound that counts the per-block work no branch decides (shortcut, third
    norm and residual add on the full map, the ops' dispatch). Calls are timed round-robin."""
    import torch.nn.functional as F

    from qgmrn.nn.blocks import RoutedBottleneck
    from qgmrn.nn.sparse import bottleneck_sparse

    torch.manual_seed(0)
    cfg = get_config(preset, profile)
    model = build_model(cfg.model, 100, 28).eval()
    H, W = cfg.data.image_size
    x = torch.randn(1, 3, H, W)  # (1, 3, H, W)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    seen = []  # (block, its input) of each routed bottleneck
    blocks = [m for m in model.modules() if isinstance(m, RoutedBottleneck)]
    hooks = [b.register_forward_hook(lambda m, i, o: seen.append((m, i[0]))) for b in blocks]
    all_open = [torch.ones(1, m) for m in model.gate_sizes]
    with torch.no_grad():
        model.backbone(x, all_open)
    for h in hooks:
        h.remove()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    calls = {"trunk": [lambda: model.backbone(x, all_open)]}  # kind -> one call per block
    for f in fractions:
        calls[("sparse", f)], calls[("conv2", f)] = [], []
    calls["dense"] = []
    for block, xi in seen:
        m = block.groups
        ones = torch.ones(1, m)  # (1, M): the dense block's cost does not depend on its gates
        calls["dense"].append(lambda b=block, xi=xi, g=ones: b(xi, g))
        c = block.conv2
        cpg = c.in_channels // m
        with torch.no_grad():
            y = block.relu(block.bn1(block.conv1(xi)))  # conv2's input, all branches
        for f in fractions:
            s = max(1, round(f * m))
            gates = (torch.arange(m) < s).float()[None]  # (1, M): the first S open
            calls[("sparse", f)].append(lambda b=block, xi=xi, g=gates: bottleneck_sparse(b, xi, g))
            yi = y[:, : s * cpg].contiguous(memory_format=fmt)  # (1, S * cpg, H', W')
            w = c.weight[: s * cpg].contiguous()
            calls[("conv2", f)].append(lambda yi=yi, w=w, s=s, c=c: F.conv2d(
                yi, w, None, c.stride, c.padding, c.dilation, s))  # fmt: skip
    times = {k: [[] for _ in fns] for k, fns in calls.items()}
    with torch.no_grad():
        for fns in calls.values():
            for fn in fns:
                fn()
        for _ in range(repeats):
            for k, fns in calls.items():
                for i, fn in enumerate(fns):
                    t = time.perf_counter()
                    for _ in range(iters):
                        fn()
                    times[k][i].append((time.perf_counter() - t) / iters)
    ms = {k: 1000 * sum(statistics.median(ts) for ts in per) for k, per in times.items()}
    rows = []
    for f in fractions:
        estimate = ms["trunk"] - ms["dense"] + ms[("sparse", f)]
        rows.append(
            {
                "preset": preset,
                "profile": profile,
                "image_size": [H, W],
                "batch": 1,
                "blocks": len(seen),
                "fraction": f,
                "open_per_block": [max(1, round(f * b.groups)) for b, _ in seen],
                "trunk_dense_ms": ms["trunk"],
                "blocks_dense_ms": ms["dense"],
                "blocks_sparse_ms": ms[("sparse", f)],
                "conv2_ms": ms[("conv2", f)],
                "trunk_estimate_ms": estimate,
                "iters": iters,
                "speedup_estimate": ms["trunk"] / estimate,
            }
        )
    return rows


def measure_run(
    run_dir: str | Path,
    data_dir: str | Path,
    questions: int = 256,
    single: int = 64,
    iters: int = 2,
    repeats: int = 5,
) -> list[dict]:
    """Dense against sparse trunk on a trained run's own routing paths: its best.pt in eval mode
    (fp32) on the first `questions` validation questions of `data_dir`, images channels-last as
    the loaders give them. The gates are the router's for each question ([sigmoid > 0.5], sec.
    3.3), so the execution ratio is the checkpoint's, not a forced one. Batch 64: the val
    batches in order (the sparse trunk computes each block's union over the batch). Batch 1:
    the first `single` questions one at a time, summed; "kept" reuses the sliced weights of the
    paths met before (as a server answering many questions does), "new" clears them before every
    question. Rows as `measure`'s (times: medians per call; `speedup`: the median of the
    per-round ratios), with `ratio` the mean execution ratio of the questions timed and `iters`
    the calls per round (batch 64: one pass over the batches)."""
    from qgmrn.data import ClevrQuestions
    from qgmrn.engine.evaluate import eval_loader, load_run
    from qgmrn.engine.runtime import batch_images, ensure_cache

    torch.manual_seed(0)
    cfg, vocab, model, c = load_run(run_dir, "best")
    size = tuple(cfg.data.image_size)
    ensure_cache(Path(data_dir), "val", size, 0, False)
    ds = ClevrQuestions(Path(data_dir), "val", vocab, size)
    cpu = torch.device("cpu")
    batches = []  # (images (B, 3, H, W) channels-last, gates L x (B, M_l))
    with torch.no_grad():
        for batch in eval_loader(ds, 64, 0, cpu):
            images = batch_images(batch, cpu, False)
            out = model(images, batch.questions, batch.lengths)
            batches.append((images, [(g > 0.5).float() for g in out.gates]))
            if 64 * len(batches) >= questions:
                break
    trunk = model.backbone

    def row(batch, ratio, union, dense: float, sparse: float, speedup: float, **extra) -> dict:
        return {
            "run": Path(run_dir).name,
            "checkpoint_step": int(c["step"]),
            "arch": cfg.model.arch,
            "profile": cfg.profile,
            "image_size": list(size),
            **_timing("channels_last", batch, ratio, union, dense, sparse, speedup),
            **extra,
        }

    def ratio_of(gates) -> float:
        return float(torch.cat(gates, 1).mean())

    def union_of(gates) -> float:
        return float(torch.cat([g.amax(0) > 0 for g in gates]).float().mean())

    rows = []
    with torch.no_grad():
        calls = [(lambda x=x, g=g: trunk(x, g), lambda x=x, g=g: trunk.forward_sparse(x, g))
                 for x, g in batches]  # fmt: skip
        d, s, speedup = _time_pair(lambda: [f() for f, _ in calls], lambda: [f() for _, f in calls],
                             1, repeats)  # fmt: skip
        gates = [torch.cat(gs) for gs in zip(*(g for _, g in batches), strict=True)]
        n = sum(len(x) for x, _ in batches)
        rows.append(row(64, ratio_of(gates), float(np.mean([union_of(g) for _, g in batches])),
                        d / n * 64, s / n * 64, speedup, questions=n, iters=1))  # fmt: skip
        single = min(single, len(batches[0][0]))  # a small val split: what its first batch has
        x1 = [batches[0][0][i : i + 1] for i in range(single)]  # (1, 3, H, W) each
        g1 = [[g[i : i + 1] for g in batches[0][1]] for i in range(single)]
        dense = lambda: [trunk(x, g) for x, g in zip(x1, g1, strict=True)]  # noqa: E731
        sparse = lambda: [trunk.forward_sparse(x, g) for x, g in zip(x1, g1, strict=True)]  # noqa: E731
        d, s, speedup = _time_pair(dense, sparse, iters, repeats)
        with _no_path_cache():
            _, s_new, speedup_new = _time_pair(dense, sparse, iters, repeats)
        first = [torch.cat(g) for g in zip(*g1, strict=True)]
        rows.append(row(1, ratio_of(first), ratio_of(first), d / single, s / single, speedup,
                        sparse_fresh_ms=1000 * s_new / single, speedup_fresh=speedup_new,
                        questions=single, iters=iters))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["brn_c32", "brn_c16", "frn"])
    p.add_argument("--paper-presets", nargs="*", default=["brn_c32"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--nchw",
        action="store_true",
        help="NCHW-contiguous images (default: channels-last, as the loaders give)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--blocks",
        action="store_true",
        help="only time the routed blocks at batch 1, dense and with a fraction of their branches "
        "open (`block_rows`; default out: results/bench/sparse_blocks.json)",
    )
    mode.add_argument(
        "--runs",
        nargs="+",
        default=None,
        help="only time trained runs on their own routing paths (`measure_run`), e.g. "
        "results/reference/runs/brn_c32 (default out: results/bench/sparse_runs.json)",
    )
    p.add_argument("--data", default=str(ROOT / "data" / "mini-clevr"), help="with --runs")
    p.add_argument("--out", default=None, help="default: results/bench/sparse.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = describe()  # with the load average at the start
    if args.blocks:
        return _blocks_main(args, machine)
    if args.runs:
        return _runs_main(args, machine)
    plan = [(pr, "demo", b) for pr in args.presets for b in (1, 64)]
    plan += [(pr, "paper", 1) for pr in args.paper_presets]
    rows = []
    for preset, profile, batch in plan:
        iters = max(1, args.iters // (1 if batch == 1 else 5))
        for r in measure(preset, profile, batch, RATIOS, iters, args.repeats, not args.nchw):
            rows.append(r)
            bound = f"  bound x{r['bound']:.2f}" if "bound" in r else ""
            if "speedup_fresh" in r:
                bound += f"  (a new path: {r['sparse_fresh_ms']:.2f} ms, x{r['speedup_fresh']:.2f})"
            print(
                f"{preset:8s} {profile:5s} batch {batch:2d} ratio {r['ratio']:.2f} "
                f"(union {r['union_open']:.2f}): dense {r['dense_ms']:7.2f} ms  "
                f"sparse {r['sparse_ms']:7.2f} ms  x{r['speedup']:.2f}{bound}",
                flush=True,
            )
    return _write(args, "sparse.json", "bench_sparse", machine, rows, iters=args.iters)


def _write(args, name: str, benchmark: str, machine: dict, rows: list, **extra) -> int:
    """Writes results/bench/NAME (or --out): the settings, the machine and the rows."""
    layout = "nchw" if args.nchw else "channels_last"
    atomic_write_json(
        args.out or ROOT / "results" / "bench" / name,
        {
            "benchmark": benchmark,
            "threads": args.threads,
            "repeats": args.repeats,
            "image_layout": layout,
            **extra,
            "machine": machine,
            "runs": rows,
        },
        indent=1,
        trailing_newline=True,
    )
    return 0


def _runs_main(args, machine: dict) -> int:
    rows = []
    for run in args.runs:
        for r in measure_run(run, args.data, repeats=args.repeats):
            rows.append(r)
            fresh = ""
            if "speedup_fresh" in r:
                fresh = f"  (new paths: {r['sparse_fresh_ms']:.2f} ms, x{r['speedup_fresh']:.2f})"
            print(
                f"{r['run']:14s} batch {r['batch']:2d} ratio {r['ratio']:.2f} (union "
                f"{r['union_open']:.2f}): dense {r['dense_ms']:7.2f} ms  sparse "
                f"{r['sparse_ms']:7.2f} ms  x{r['speedup']:.2f}{fresh}",
                flush=True,
            )
    data = Path(args.data).resolve()
    data = data.relative_to(ROOT) if data.is_relative_to(ROOT) else data
    name, bench = "sparse_runs.json", "bench_sparse --runs"
    # measure_run feeds the images in the loaders' layout, whatever --nchw says
    return _write(args, name, bench, machine, rows, data=str(data), image_layout="channels_last")


def _blocks_main(args, machine: dict) -> int:
    rows = []
    plan = [(pr, "demo") for pr in args.presets] + [(pr, "paper") for pr in args.paper_presets]
    for preset, profile in plan:
        if get_config(preset, profile).model.arch != "brn":
            continue  # the FRN's blocks are basic blocks: this breakdown is the BRN's
        for r in block_rows(preset, profile, repeats=args.repeats, channels_last=not args.nchw):
            rows.append(r)
            print(
                f"{preset:8s} {profile:5s} batch 1, {r['blocks']} blocks at {r['fraction']:.2f} "
                f"(open {min(r['open_per_block'])}-{max(r['open_per_block'])}): blocks dense "
                f"{r['blocks_dense_ms']:.2f} ms, sparse {r['blocks_sparse_ms']:.2f} (conv2 "
                f"{r['conv2_ms']:.2f}); trunk dense {r['trunk_dense_ms']:.2f} -> "
                f"{r['trunk_estimate_ms']:.2f} ms, x{r['speedup_estimate']:.2f}",
                flush=True,
            )
    return _write(args, "sparse_blocks.json", "bench_sparse --blocks", machine, rows)


if __name__ == "__main__":
    raise SystemExit(main())
