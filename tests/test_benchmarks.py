"""The benchmarks' own logic, smoke-sized (their numbers are measured by running them, not here):
the image layouts bench_sparse feeds and the "image layout" lever of bench_levers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import qgmrn.engine.loop

CPU = torch.device("cpu")


@pytest.mark.parametrize("channels_last", [True, False])
def test_bench_sparse_rows_name_their_layout_and_bound(load_benchmark, channels_last):
    bench_sparse = load_benchmark("bench_sparse")
    rows = bench_sparse.measure("brn_c8", "smoke", 2, (0.0, 1.0), 1, 1, channels_last)
    assert [r["ratio"] for r in rows] == [0.0, 1.0]
    layout = "channels_last" if channels_last else "nchw"
    for r in rows:
        assert r["image_layout"] == layout and r["batch"] == 2
        assert r["dense_ms"] > 0 and r["sparse_ms"] > 0 and r["bound"] > 0
    assert rows[0]["union_open"] == 0.0 and rows[1]["union_open"] == 1.0


def test_block_rows_time_every_routed_bottleneck(load_benchmark):
    bench_sparse = load_benchmark("bench_sparse")
    rows = bench_sparse.block_rows("brn_c8", "smoke", (1.0, 0.5, 0.0), iters=1, repeats=1)
    model = bench_sparse.build_model(bench_sparse.get_config("brn_c8", "smoke").model, 100, 28)
    assert [r["fraction"] for r in rows] == [1.0, 0.5, 0.0]
    assert {r["blocks"] for r in rows} == {len(model.gate_sizes)}  # one routed block a layer
    assert rows[0]["open_per_block"] == list(model.gate_sizes)  # all branches
    assert rows[1]["open_per_block"] == [m // 2 for m in model.gate_sizes]
    assert rows[2]["open_per_block"] == [1] * len(model.gate_sizes)  # one branch at least
    for r in rows:
        assert r["batch"] == 1 and min(r["conv2_ms"], r["blocks_sparse_ms"]) > 0
        assert r["trunk_estimate_ms"] == pytest.approx(
            r["trunk_dense_ms"] - r["blocks_dense_ms"] + r["blocks_sparse_ms"]
        )


def test_image_layout_lever_makes_fits_images_nchw(load_benchmark):
    """The loaders' images are channels-last in memory; the lever's patch of
    `qgmrn.engine.loop.batch_images` hands the model NCHW-contiguous ones instead (and leaves a run
    that asks for channels-last alone), and is undone on leaving."""
    bench_levers = load_benchmark("bench_levers")
    batch = SimpleNamespace(
        images=torch.randint(0, 256, (2, 8, 12, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    )
    assert qgmrn.engine.loop.batch_images(batch, CPU, False).is_contiguous(
        memory_format=torch.channels_last
    )
    with bench_levers._contiguous_images():
        images = qgmrn.engine.loop.batch_images(batch, CPU, False)
        assert images.is_contiguous() and images.shape == (2, 3, 8, 12)
        kept = qgmrn.engine.loop.batch_images(batch, CPU, True)
        assert kept.is_contiguous(memory_format=torch.channels_last)
    assert not qgmrn.engine.loop.batch_images(batch, CPU, False).is_contiguous()
