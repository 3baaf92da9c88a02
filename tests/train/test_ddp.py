"""DistributedDataParallel on CPU (gloo): 2 processes with half the batch each take the same
steps as 1 process with the whole batch."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from qgmrn.checkpoint import read_checkpoint
from qgmrn.train import fit

from . import make_tiny_clevr, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config():
    # the question-only LSTM: no BatchNorm and no Gumbel noise, so the two set-ups compute the
    # same gradients (BN statistics and routing noise would differ per process by design)
    return tiny_config("lstm", epochs=2, checkpoint_every_steps=100)


def _worker(rank: int, world: int, port: int, data_dir: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
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
