"""`qgmrn.engine.runtime`: which precision and memory format a pass uses on which device, and a
CPU run under bf16 autocast + channels_last (the demo FRN's CPU setting) end to end."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from qgmrn.config import get_config
from qgmrn.engine import fit, runtime

from . import make_tiny_clevr, tiny_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_cuda_follows_amp_and_channels_last():
    cfg = tiny_config("brn_c8", amp=True, channels_last=False, cpu_amp=False)
    assert runtime.use_amp(cfg, CUDA) and not runtime.use_channels_last(cfg, CUDA)
    cfg = tiny_config("brn_c8", amp=False, channels_last=True, cpu_amp=True)
    assert not runtime.use_amp(cfg, CUDA) and runtime.use_channels_last(cfg, CUDA)


def test_cpu_follows_cpu_fields_and_needs_native_bf16(monkeypatch):
    on = tiny_config("brn_c8", amp=True, channels_last=True, cpu_amp=True, cpu_channels_last=True)
    off = tiny_config("brn_c8", amp=True, channels_last=True)  # CUDA settings do not leak to CPU
    assert not runtime.use_amp(off, CPU) and not runtime.use_channels_last(off, CPU)
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.use_amp(on, CPU) and runtime.use_channels_last(on, CPU)
    # without native bf16 the run stays fp32 (emulated bf16 is several times slower)
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert not runtime.use_amp(on, CPU) and runtime.use_channels_last(on, CPU)


def test_autocast_context_on_cpu():
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with runtime.autocast(CPU, True):
        assert layer(x).dtype == torch.bfloat16
    with runtime.autocast(CPU, False):
        assert layer(x).dtype == torch.float32


def test_profile_choices():
    """Only the demo FRN family uses the CPU levers; smoke (the tests) stays fp32 everywhere."""
    for preset in ("frn", "frn_attn", "frn_static"):
        t = get_config(preset, "demo").train
        assert t.cpu_amp and t.cpu_channels_last, preset
        assert not get_config(preset, "smoke").train.cpu_amp
    for preset in ("brn_c16", "brn_c16_static", "cnn_lstm", "film"):
        t = get_config(preset, "demo").train
        assert not t.cpu_amp and not t.cpu_channels_last, preset


def test_batch_images_keep_the_loaders_channels_last_layout():
    """The loaders hand images over as a permuted (B, H, W, 3) array: normalised, they stay
    channels-last in memory, so the convolutions run channels-last even with the switch off
    (docs/training.md: worth 1.27-1.35x in fit here, `levers_image_layout_1thr.json`)."""
    batch = SimpleNamespace(images=torch.randint(0, 256, (2, 8, 12, 3), dtype=torch.uint8))
    batch.images = batch.images.permute(0, 3, 1, 2)  # (B, 3, H, W)
    for switch in (False, True):
        images = runtime.batch_images(batch, CPU, switch)
        assert images.shape == (2, 3, 8, 12) and images.dtype == torch.float32
        assert images.is_contiguous(memory_format=torch.channels_last), switch
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert conv(runtime.batch_images(batch, CPU, False)).is_contiguous(
        memory_format=torch.channels_last
    )


@pytest.mark.parametrize("preset", ["frn", "brn_c8"])
def test_fit_under_cpu_bf16_and_channels_last(preset, tmp_path, monkeypatch):
    """One epoch with bf16 autocast forced on (emulated where the CPU lacks it: tiny tensors, so
    still fast) and channels_last: finite losses, eval.json written, fp32 weights kept."""
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    data = make_tiny_clevr(tmp_path / "clevr")
    cfg = tiny_config(preset, epochs=1, cpu_amp=True, cpu_channels_last=True)
    result = fit(cfg, data, tmp_path / "run", progress=False)
    assert result["stop_reason"] == "epochs"
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert 0.0 <= ev["overall"] <= 1.0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert all(v.dtype != torch.bfloat16 for v in state.values())
