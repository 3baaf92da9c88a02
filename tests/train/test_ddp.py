"""DistributedDataParallel on CPU (gloo): 2 processes with half the batch each take the same
steps as 1 process with the whole batch; a rank that dies stops the others, and the run resumes
with as many processes."""

from __future__ import annotations

import dataclasses
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from qgmrn.engine import fit
from qgmrn.engine.checkpoint import CheckpointError, read_checkpoint

from . import make_tiny_clevr, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config():
    # the question-only LSTM: no BatchNorm and no Gumbel noise, so the two set-ups compute the
    # same gradients (BN statistics and routing noise would differ per process by design)
    return tiny_config("lstm", epochs=2, checkpoint_every_steps=100)


def _join(rank: int, world: int, port: int) -> None:
    """torchrun's environment for process `rank` of `world` on this host."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )


def _worker(rank: int, world: int, port: int, data_dir: str, out: str) -> None:
    _join(rank, world, port)
    fit(_config(), data_dir, out, progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_process_gloo_matches_one_process(tmp_path):
    data_dir = make_tiny_clevr(tmp_path / "clevr")
    single = fit(_config(), data_dir, tmp_path / "single", progress=False)
    mp.spawn(
        _worker,
        args=(2, _free_port(), str(data_dir), str(tmp_path / "ddp")),
        nprocs=2,
        join=True,
    )
    a = read_checkpoint(tmp_path / "single" / "checkpoint.pt")
    b = read_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert a["step"] == b["step"] == single["step"] == 8
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-5)
    ev_a = json.loads((tmp_path / "single" / "eval.json").read_text())
    ev_b = json.loads((tmp_path / "ddp" / "eval.json").read_text())
    assert ev_b["n"] == ev_a["n"] == 16  # the shards are put back together, nothing twice
    assert ev_b["overall"] == pytest.approx(ev_a["overall"])
    assert ev_b["train"]["world_size"] == 2 and ev_b["train"]["global_batch"] == 8


def _dying_worker(rank: int, world: int, port: int, data_dir: str, out: str, q) -> None:
    """Rank 1 kills itself (SIGKILL) as it begins step 5; every rank reports how it ended."""
    import signal
    import time

    import qgmrn.engine.loop as train_mod
    from qgmrn.engine import PeerProcessError

    _join(rank, world, port)
    original = train_mod.train_step

    def step(run, batch):
        if rank == 1 and run.state.step == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(run, batch)

    train_mod.train_step = step
    cfg = dataclasses.replace(
        _config(), train=dataclasses.replace(_config().train, checkpoint_every_steps=2)
    )
    start = time.monotonic()
    try:
        fit(cfg, data_dir, out, progress=False)
        q.put((rank, "finished", time.monotonic() - start))
    except PeerProcessError as e:
        q.put((rank, str(e), time.monotonic() - start))


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_a_rank_that_dies_stops_the_others_and_the_run_resumes_with_as_many(tmp_path):
    """SIGKILL of rank 1 of 2 (CPU, gloo): rank 0 stops at once with a message naming the step
    checkpoint.pt holds; --resume with 2 processes finishes as the uninterrupted run would, and
    a resume by 1 process is refused with the reason."""
    data_dir = make_tiny_clevr(tmp_path / "clevr")
    single = fit(_config(), data_dir, tmp_path / "single", progress=False)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    out = tmp_path / "ddp"
    port = _free_port()
    procs = [
        ctx.Process(target=_dying_worker, args=(r, 2, port, str(data_dir), str(out), q))
        for r in range(2)
    ]
    for p in procs:
        p.start()
    procs[0].join(timeout=120)
    assert not procs[0].is_alive(), "rank 0 hangs after its peer died"
    procs[1].join(timeout=10)
    assert procs[1].exitcode == -9
    rank, message, seconds = q.get(timeout=5)
    assert rank == 0 and seconds < 60
    assert "rank 0 of 2: another process of this run failed" in message
    assert "stopped at step 5" in message and "checkpoint.pt holds step 4" in message
    assert "with 2 processes again" in message
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 4

    with pytest.raises(CheckpointError, match=r"2 process\(es\), resumed by 1"):
        fit(_config(), data_dir, out, progress=False, resume=True)
    mp.spawn(_resuming_worker, args=(2, _free_port(), str(data_dir), str(out)), nprocs=2)
    a = read_checkpoint(tmp_path / "single" / "checkpoint.pt")
    b = read_checkpoint(out / "checkpoint.pt")
    assert a["step"] == b["step"] == single["step"] == 8
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-5)


def _resuming_worker(rank: int, world: int, port: int, data_dir: str, out: str) -> None:
    _join(rank, world, port)
    fit(_config(), data_dir, out, progress=False, resume=True)
