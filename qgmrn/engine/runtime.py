"""Where a pass over the data runs, shared by the training loop and `qgmrn.engine.evaluate`.

The device (under torchrun: each rank's LOCAL_RANK GPU), bf16 autocast and channels-last (when
the config asks: `amp`/`channels_last` on CUDA, `cpu_amp`/`cpu_channels_last` on CPU), a batch's
images on the device, the seeded in-order `DataLoader` over a sampler, and the image cache a
split reads from.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from qgmrn.config import ExperimentConfig
from qgmrn.engine import distributed as qdist


def resolve_device(device: str | torch.device, info: qdist.DistInfo) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank if info.enabled else 0)
    return device


def cpu_has_native_bf16() -> bool:
    """True where this CPU computes bf16 natively (AMX tiles or AVX512-BF16); elsewhere CPU bf16
    autocast is emulated and several times slower than fp32."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def use_amp(cfg: ExperimentConfig, device: torch.device) -> bool:
    """Whether a pass on `device` runs under bf16 autocast (`TrainConfig.amp` on CUDA,
    `TrainConfig.cpu_amp` on a CPU with native bf16)."""
    if device.type == "cuda":
        return bool(cfg.train.amp)
    return bool(device.type == "cpu" and cfg.train.cpu_amp and cpu_has_native_bf16())


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on `device` when `amp` (decided by `use_amp`: only CUDA or CPU), else a
    no-op context."""
    if amp:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def use_channels_last(cfg: ExperimentConfig, device: torch.device) -> bool:
    if device.type == "cuda":
        return bool(cfg.train.channels_last)
    return bool(device.type == "cpu" and cfg.train.cpu_channels_last)


def batch_images(batch, device: torch.device, channels_last: bool) -> Tensor:
    from qgmrn.data import normalize_images

    images = normalize_images(batch.images.to(device, non_blocking=True))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def sampled_loader(
    dataset,
    sampler,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    seed: int,
    drop_last: bool,
) -> DataLoader:
    """Batches of `dataset` in `sampler`'s order (workers seeded from `seed`); not persistent,
    since the training loop builds one loader per epoch around a resumable sampler."""
    from qgmrn.data import make_loader

    return make_loader(
        dataset,
        batch_size,
        num_workers=num_workers,
        seed=seed,
        drop_last=drop_last,
        sampler=sampler,
        device=device,
        persistent_workers=False,
    )


def ensure_cache(data_dir: Path, split: str, size, workers: int, progress: bool) -> None:
    """Build the image cache of `split` at `size` unless a valid one exists."""
    from qgmrn.data.cache import ImageCacheError, build_cache, open_cache

    try:
        open_cache(data_dir, split, size)
    except (ImageCacheError, FileNotFoundError):
        build_cache(data_dir, split, size, workers=max(workers, 1), progress=progress)
