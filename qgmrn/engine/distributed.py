"""The little `torch.distributed` glue the training (`qgmrn.engine`) needs under torchrun.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; when
``WORLD_SIZE`` > 1 the trainer joins the process group (NCCL on CUDA, gloo on CPU), wraps the model
in DistributedDataParallel and shards every epoch with `ResumableSampler`. Multi-node runs use
torchrun's own arguments (``--nnodes``, ``--node_rank``, ``--rdzv_endpoint``); nothing here changes.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    created_group: bool = False  # this process called init_process_group (so it must destroy)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) outside it."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def setup(device_type: str, timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group when launched with WORLD_SIZE > 1 (no-op otherwise); a collective
    that waits longer than `timeout_minutes` for a peer raises instead of hanging."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), env_info()[2], False)
    rank, world, local = env_info()
    if world <= 1:
        return DistInfo(0, 1, 0, False)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(
        backend=backend,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(minutes=timeout_minutes),
    )
    return DistInfo(rank, world, local, True)


def teardown(info: DistInfo) -> None:
    if info.created_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_true(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any rank (e.g. the wall-clock budget is spent)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """`[obj of rank 0, obj of rank 1, ...]` on every rank (`[obj]` when not distributed)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` that can start part-way through an epoch.

    The order of epoch e is ``torch.randperm(n, generator=manual_seed(seed + e))`` (as
    DistributedSampler makes it), padded to a multiple of the world size and dealt round-robin
    to the ranks. `start` skips that many of this rank's samples: a resumed run continues with
    exactly the samples the interrupted one would have drawn next. With one process and
    ``shuffle=False`` it is the identity order.
    """

    def __init__(
        self,
        dataset,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        start: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self.set_epoch(epoch)
        self.start = int(start)

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)


class ShardSampler(torch.utils.data.Sampler):
    """Rank r's share ``range(r, n, world)`` of a data set, in order, without padding (eval)."""

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.indices = list(range(rank, n, num_replicas))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def peer_failure(e: BaseException, info: DistInfo) -> bool:
    """Whether `e`, raised in a multi-process run, says that another process failed: gloo's
    closed or reset connection, a collective's timeout, NCCL's errors."""
    if not info.enabled:
        return False
    dist_error = getattr(dist, "DistError", None)
    if dist_error is not None and isinstance(e, dist_error):
        return True
    text = str(e)
    return any(k in text for k in ("gloo", "NCCL", "by peer", "Timed out", "timed out"))
