"""Where a pass over the data runs, shared by `qgmrn.train` and `qgmrn.evaluate`.

The device (under torchrun: each rank's LOCAL_RANK GPU), bf16 autocast and channels-last (CUDA
only, when the config asks), a batch's images on the device, the seeded in-order `DataLoader`
over a sampler, and the image cache a split reads from.
"""

from __future__ import annotations

import random
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from qgmrn import distributed as qdist
from qgmrn.config import ExperimentConfig


def resolve_device(device: str | torch.device, info: qdist.DistInfo) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank if info.enabled else 0)
    return device


def autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def use_channels_last(cfg: ExperimentConfig, device: torch.device) -> bool:
    return bool(cfg.train.channels_last and device.type == "cuda")


def batch_images(batch, device: torch.device, channels_last: bool) -> Tensor:
    from qgmrn.data import normalize_images

    images = normalize_images(batch.images.to(device, non_blocking=True))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def _seed_worker(worker_id: int) -> None:
    """DataLoader worker init: numpy and random from the worker's torch seed, which the loader
    derives from its own seeded generator (so workers are deterministic per epoch)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def sampled_loader(
    dataset,
    sampler,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    seed: int,
    drop_last: bool,
) -> DataLoader:
    """Batches of `dataset` in `sampler`'s order (workers seeded from `seed`)."""
    from qgmrn.data import collate

    generator = torch.Generator()
    generator.manual_seed(seed)  # the loader never draws from the global RNG
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra.update(worker_init_fn=_seed_worker, prefetch_factor=4)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        generator=generator,
        **extra,
    )


def ensure_cache(data_dir: Path, split: str, size, workers: int, progress: bool) -> None:
    """Build the image cache of `split` at `size` unless a valid one exists."""
    from qgmrn.data.cache import ImageCacheError, build_cache, open_cache

    try:
        open_cache(data_dir, split, size)
    except (ImageCacheError, FileNotFoundError):
        build_cache(data_dir, split, size, workers=max(workers, 1), progress=progress)
