"""Frozen configuration dataclasses, named presets and profiles.

Configs are read only by the builders (`qgmrn.model.build_model`, `qgmrn.synth.generate_dataset`)
and by `qgmrn.engine.fit`; modules take explicit typed arguments.

A *preset* names a model: a row of the paper's Table 1 (``brn_c8`` ... ``frn_attn``, the
baselines) or a Table 2 ablation. A *profile* scales data and compute:

- ``smoke``: seconds; for tests and CI.
- ``demo``: the whole pipeline on mini-CLEVR on a 2-core CPU (our sizes, not the paper's).
- ``paper``: the paper's sizes and recipe, for real CLEVR_v1.0 on GPU.

``get_config(preset, profile)`` returns an `ExperimentConfig`; change fields with
``dataclasses.replace``. Values the paper does not give are marked "not in the paper".
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILES: tuple[str, ...] = ("smoke", "demo", "paper")


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how it is turned into tensors (and, for mini-CLEVR, generated)."""

    data_dir: str = "data/mini-clevr"
    image_size: tuple[int, int] = (224, 224)  # (H, W) fed to the network; paper: 224x224 for BRN
    num_workers: int = 2  # DataLoader workers
    max_train_questions: int | None = None  # cap on training questions (None = all)
    max_val_questions: int | None = None  # cap on validation questions (None = all)
    # --- where training batches come from (ours; the paper trains on CLEVR's fixed train split)
    # "fixed": the train split's files; "stream": fresh mini-CLEVR scenes rendered inside the
    # DataLoader workers (qgmrn.data.stream), never repeated unless scene_reuse > 1.
    # Val/test always stay the fixed files, so scores compare across sources.
    train_source: str = "fixed"
    scene_reuse: int = 1  # stream: consecutive batches that share one group of rendered scenes
    stream_epoch_questions: int = 50_000  # a stream "epoch" (validation cadence), in questions
    # optional curriculum of data order (stream only): sample counts after which programs of
    # relational depth 1, 2, ... are allowed (empty: every family from the start)
    curriculum: tuple[int, ...] = ()
    # optional (stream only, ours): samples, before the curriculum, of zero-hop Query Attribute
    # questions alone ("What color is the large cube?"), where selection is learned first
    queries_first: int = 0
    # --- mini-CLEVR generation (ours; ignored for real CLEVR) ---
    train_scenes: int = 1000
    val_scenes: int = 200
    test_scenes: int = 50
    questions_per_scene: int = 10
    render_size: tuple[int, int] = (480, 320)  # (W, H) of the PNGs written, as CLEVR's 480x320
    min_objects: int = 3
    max_objects: int = 10
    framing: str = "clevr"  # "clevr" (real camera) or "close" (objects larger; low-res demos)


@dataclass(frozen=True)
class ModelConfig:
    """The model: textual network, routing network, visual network and head (paper sec. 3)."""

    arch: str = "brn"  # brn | frn | lstm | cnn_lstm | cnn_lstm_sa | film
    # textual network (sec. 3.1, 4.2): embedding 200 (uniform init), GRU 512 (orthogonal init)
    embed_dim: int = 200
    hidden_dim: int = 512
    # routing network (sec. 3.3): one linear layer, bias log(0.7/0.3)
    gate: str = "gumbel"  # gumbel (paper) | static (all gates 1: the static twin) | soft (ours)
    tau: float = 1.0  # Gumbel-sigmoid temperature; the paper keeps 1.0 (sec. 4.2)
    init_exec_prob: float = 0.7  # initial execution probability of each module (sec. 4.2)
    router_init_std: float = 1e-3  # not in the paper: std of the router's initial weights
    # visual network of BRN and FRN, shared: the stem is torchvision's (7x7/2 conv, norm, ReLU,
    # 3x3/2 max pool)
    stem_width: int = 64
    stem_pool: bool = True  # ours: False drops the stem's max pool (2x larger maps, small images)
    # the first block of each stage strides by this (torchvision's 1, 2, 2, 2); ours: a 1 in a
    # later stage keeps a finer y_L (e.g. (1, 2, 2, 1): 8x12 instead of 4x6 at demo size)
    stage_strides: tuple[int, ...] = (1, 2, 2, 2)
    # ours: torchvision's zero_init_residual (Goyal et al. 2017), each block's last norm at
    # weight 0; the paper does not say, torchvision's default (False) is ours by default
    zero_init_residual: bool = False
    # BRN: ResNeXt-26, stages [2,2,2,2] of bottlenecks (sec. 4.2, Table 2). Not in the paper:
    # how "width" maps onto a bottleneck. Ours: a stage's width is its blocks' OUTPUT channels;
    # the grouped 3x3 conv has c * max(1, width // (bottleneck_ratio * c)) channels, i.e.
    # width / bottleneck_ratio whenever that divides by c (every paper-profile preset).
    brn_depths: tuple[int, ...] = (2, 2, 2, 2)
    brn_widths: tuple[int, ...] = (64, 128, 256, 256)
    cardinality: int = 16  # BRN modules per layer (8/16/32 in the paper)
    bottleneck_ratio: int = 2  # not in the paper: grouped-conv width = width / 2
    third_norm: str = "gn"  # gn (paper) | bn (Table 2 ablation): the bottleneck's third norm
    gn_groups: int = 32  # not in the paper: GroupNorm groups (gcd with the channels is used)
    # FRN: ResNet-34 basic blocks (sec. 4.2); exactly torchvision's resnet34 at these sizes.
    # frn_backbone "resnet34" builds depths/widths below; another torchvision name (resnet18,
    # resnet50, resnext50_32x4d, ...) is made routable as it is ("filter"; widths ignored).
    frn_backbone: str = "resnet34"
    frn_depths: tuple[int, ...] = (3, 4, 6, 3)
    frn_widths: tuple[int, ...] = (64, 128, 256, 512)
    # Baselines (CNN+LSTM, CNN+LSTM+SA, FiLM): four stride-2 3x3 conv layers of these widths
    # (Johnson et al. 2017a / Perez et al. 2018 use 64, 64, 128, 256... at CLEVR's size; ours
    # at smoke and demo sizes, equal to the BRN's stem and first stages' widths there).
    cnn_widths: tuple[int, ...] = (64, 64, 128, 256)
    # head (sec. 3.4)
    head: str = "gmp"  # gmp (global max pooling + MLP) | attention
    head_uses_q: bool = True  # concatenate q to the pooled image feature (Table 2: w/ q)
    coord_maps: bool = True  # two coordinate channels appended to y_L (sec. 4.2)
    mlp_hidden: int = 1024  # not in the paper: classifier hidden width
    attn_dim: int = 256  # not in the paper: Transformer d_model (d_t)
    attn_heads: int = 4  # not in the paper
    attn_layers: int = 2  # not in the paper
    dropout: float = 0.0  # not in the paper


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (sec. 4.2): Adam (0.9, 0.999), batch 64, lr 3e-4 with warmup."""

    batch_size: int = 64
    lr: float = 3e-4
    warmup_start_lr: float = 3e-6
    warmup_steps: int = 5000  # not in the paper: length of the linear warmup
    # ours, not in the paper (which keeps 3e-4 to the end): "cosine" decays the lr from the end
    # of the warmup to lr * min_lr_ratio at step decay_steps (constant after)
    lr_schedule: str = "constant"
    decay_steps: int = 0
    min_lr_ratio: float = 0.05
    optimizer: str = "adam"  # adam (the paper) | adamw (ours: decoupled weight decay)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    epochs: int = 100
    max_minutes: float | None = None  # wall-clock budget; the run stops cleanly when spent
    load_balance_weight: float = 0.01  # lambda of eq. 13; not in the paper
    tau_start: float = 1.0  # tau(step) anneals from tau_start to tau_end over tau_anneal_steps;
    tau_end: float = 1.0  # the paper keeps 1.0 (sec. 4.2), so no annealing by default
    tau_anneal_steps: int = 0
    grad_clip: float | None = None
    log_every: int = 50
    eval_every_epochs: int = 1
    # ours: also validate every this many steps (None: at epoch ends only), so that runs on data
    # of different sizes (a 5k set, a 50k set, the stream) are scored at the same sample counts
    eval_every_steps: int | None = None
    checkpoint_every_steps: int = 500
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA
    channels_last: bool = True  # on CUDA
    # Ours, not in the paper: the same two on CPU. bf16 autocast runs only where the CPU has native
    # bf16 (AMX or AVX512-BF16, `qgmrn.engine.runtime.cpu_has_native_bf16`): emulated bf16 is
    # several times slower, so elsewhere the run stays fp32. Off by default; the demo FRN turns
    # both on.
    cpu_amp: bool = False
    cpu_channels_last: bool = False
    threads: int | None = None  # torch.set_num_threads on CPU (None = leave as is)
    # ours: how long a process of a multi-process run (torchrun) waits in a collective for a
    # peer before it gives up (a rank that died without closing its connections); torch's gloo
    # default, stated here
    dist_timeout_minutes: float = 30.0
    # Ours, a speed lever: torch.compile the training model with this backend ("inductor";
    # "eager" only traces, for tests), None = eager PyTorch. Shapes are marked dynamic (the
    # question length varies by batch); validation and checkpoints use the uncompiled module.
    compile: str | None = None
    # Ours, not in the paper (one labelled arm, kept out of the paper's tables): weight of an
    # auxiliary loss that asks a 1x1 head on y_L for the colour, shape, size and material of the
    # object covering each cell (`qgmrn.data.attributes`), labelled from the renderer's object
    # buffer. Stream training of the routed models only; 0 = off (every paper-faithful run).
    attribute_loss_weight: float = 0.0
    # Ours: what the auxiliary loss trains. "visual": the visual network and the attribute head
    # only; its gradient is kept out of the router and the question encoder (one backward pass of
    # its own, restricted to those parameters), so the routing path learns from the VQA loss
    # alone, as in the paper. "all": every parameter, through the straight-through gates (the
    # first runs of the arm, brn_c16_attr: opening modules lowered the loss, and every gate
    # opened). A config written before this field existed means "all" (`upgrade_config_dict`).
    attribute_loss_reach: str = "visual"
    # Ours ("perception first", the plateau study): for the first this many steps the attribute
    # loss alone trains (the visual network and its head); the VQA loss is logged, not
    # backpropagated, so the router and the classifier wait. 0 = joint from the first step.
    attribute_pretrain_steps: int = 0
    # Ours ("perception first"): a visual.pt of `qgmrn pretrain-visual` whose visual network
    # (and attribute head, when the attribute loss is on) this run starts from. None: from
    # scratch, as the paper.
    visual_init: str | None = None


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    profile: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# --------------------------------------------------------------------------------------------
# Profiles: base data/model/train settings per profile; presets override model fields on top.

_PROFILE_DATA: dict[str, DataConfig] = {
    "smoke": DataConfig(
        data_dir="data/mini-clevr-smoke",
        image_size=(32, 48),  # the true aspect of the 48x32 renders
        num_workers=0,
        train_scenes=24,
        val_scenes=8,
        test_scenes=4,
        questions_per_scene=4,
        stream_epoch_questions=96,  # a stream "epoch" as long as the smoke train split
        render_size=(48, 32),
        min_objects=3,
        max_objects=4,
        framing="close",
    ),
    "demo": DataConfig(
        data_dir="data/mini-clevr",
        # the true aspect: the 96x64 render as it is (H, W) = (64, 96), no squashing
        image_size=(64, 96),
        num_workers=2,
        train_scenes=5000,
        val_scenes=500,
        test_scenes=100,
        questions_per_scene=10,
        render_size=(96, 64),
        min_objects=3,
        max_objects=6,
        framing="close",
    ),
    "paper": DataConfig(
        data_dir="data/CLEVR_v1.0", image_size=(224, 224), num_workers=8, render_size=(480, 320)
    ),
}

# Model sizes per profile. smoke and demo values are ours (chosen for a 2-core CPU: demo trains
# at about 300 samples/s at 64x64, see results/bench/model.json); paper = the paper's sizes.
# Demo drops the stem's max pool so that its 64x96 input gives a 4x6 y_L (2x3 with it).
_PROFILE_MODEL: dict[str, dict[str, Any]] = {
    "smoke": dict(
        embed_dim=16,
        hidden_dim=32,
        brn_widths=(8, 16, 16, 16),
        stem_width=8,
        cnn_widths=(8, 8, 16, 16),
        gn_groups=4,
        frn_widths=(8, 8, 16, 16),
        mlp_hidden=32,
        attn_dim=16,
        attn_heads=2,
        attn_layers=1,
    ),
    "demo": dict(
        embed_dim=64,
        hidden_dim=128,
        brn_widths=(32, 64, 128, 128),
        stem_width=16,
        cnn_widths=(16, 32, 64, 128),
        stem_pool=False,
        gn_groups=16,
        frn_widths=(16, 32, 64, 128),
        mlp_hidden=256,
        attn_dim=64,
        attn_heads=4,
        attn_layers=1,
    ),
    "paper": dict(),
}

_PROFILE_TRAIN: dict[str, TrainConfig] = {
    # smoke: one thread: tiny tensors gain nothing from more, and lose a lot on shared cores
    "smoke": TrainConfig(
        batch_size=8, epochs=1, warmup_steps=2, log_every=1, checkpoint_every_steps=5, threads=1
    ),
    "demo": TrainConfig(
        batch_size=64,
        epochs=4,
        warmup_steps=200,
        log_every=20,
        max_minutes=6.0,
        checkpoint_every_steps=200,
    ),
    "paper": TrainConfig(),
}


# Training settings per (profile, arch) on top of the profile's (ours). Demo FRN on CPU: bf16
# autocast + channels_last take fit from 284.7 to 371.0 samples/s on the 2-core AMX machine
# (64x64, batch 64; results/bench/levers.json, docs/training.md). The BRN (GroupNorm) is slower
# with them (402.1 -> 337.9), CNN+LSTM and FiLM within noise: they stay fp32 and contiguous.
_PROFILE_ARCH_TRAIN: dict[tuple[str, str], dict[str, Any]] = {
    ("demo", "frn"): dict(cpu_amp=True, cpu_channels_last=True),
}


def _widen_last_stage(model: ModelConfig) -> tuple[int, ...]:
    return (*model.brn_widths[:-1], 2 * model.brn_widths[-1])


# Each preset: the ModelConfig fields it sets on top of the profile's model sizes. A callable
# value is applied to the profile's ModelConfig (the "wider" row doubles whatever the profile's
# last stage is).
PRESET_OVERRIDES: dict[str, dict[str, Any]] = {
    # Table 1 rows (ours)
    "brn_c8": dict(arch="brn", cardinality=8),
    "brn_c16": dict(arch="brn", cardinality=16),
    "brn_c32": dict(arch="brn", cardinality=32),
    "brn_c32_attn": dict(arch="brn", cardinality=32, head="attention"),
    "frn": dict(arch="frn"),
    "frn_attn": dict(arch="frn", head="attention"),
    # Table 1 baselines
    "lstm": dict(arch="lstm"),
    "cnn_lstm": dict(arch="cnn_lstm"),
    "cnn_lstm_sa": dict(arch="cnn_lstm_sa"),
    "film": dict(arch="film"),
    # static twins: identical networks with every gate fixed at 1
    "brn_c16_static": dict(arch="brn", cardinality=16, gate="static"),
    "brn_c32_static": dict(arch="brn", cardinality=32, gate="static"),
    "frn_static": dict(arch="frn", gate="static"),
    # Table 2 ablations. The paper's "w/o q", "deeper" and "wider" rows sit next to its BatchNorm
    # rows (c=16 w/ q = 93.0 and c=32 w/ q = 94.0 are the bn numbers), so they keep bn as the
    # third norm: each differs from its bn baseline in exactly one thing.
    "brn_c16_noq": dict(arch="brn", cardinality=16, head_uses_q=False, third_norm="bn"),
    "brn_c8_bn": dict(arch="brn", cardinality=8, third_norm="bn"),
    "brn_c16_bn": dict(arch="brn", cardinality=16, third_norm="bn"),
    "brn_c32_bn": dict(arch="brn", cardinality=32, third_norm="bn"),
    "brn_c32_deeper": dict(arch="brn", cardinality=32, brn_depths=(2, 4, 6, 3), third_norm="bn"),
    # wider: the last stage doubled, [64,128,256,256] -> [64,128,256,512] at the paper's sizes
    "brn_c32_wider": dict(
        arch="brn", cardinality=32, brn_widths=_widen_last_stage, third_norm="bn"
    ),
}


def _preset_config(name: str, profile: str) -> ExperimentConfig:
    """Preset `name` at `profile`: the profile's data, model sizes and training recipe, the
    preset's model fields (`PRESET_OVERRIDES`) and the (profile, arch) training settings."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    model = dataclasses.replace(ModelConfig(), **_PROFILE_MODEL[profile])
    overrides = PRESET_OVERRIDES[name]
    model = dataclasses.replace(
        model, **{k: v(model) if callable(v) else v for k, v in overrides.items()}
    )
    train = dataclasses.replace(
        _PROFILE_TRAIN[profile], **_PROFILE_ARCH_TRAIN.get((profile, model.arch), {})
    )
    return ExperimentConfig(
        name=name, profile=profile, data=_PROFILE_DATA[profile], model=model, train=train
    )


# {preset: profile -> ExperimentConfig}
PRESETS: dict[str, Callable[[str], ExperimentConfig]] = {
    name: functools.partial(_preset_config, name) for name in PRESET_OVERRIDES
}


def get_config(preset: str, profile: str = "demo") -> ExperimentConfig:
    """The configuration of `preset` scaled to `profile`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[preset](profile)


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# Config fields renamed since runs were first written (old name -> new name), per section.
# Reading a run's config.json or a checkpoint's embedded config upgrades it, so committed runs
# keep loading and resuming (`upgrade_config_dict`).
LEGACY_MODEL_FIELDS: dict[str, str] = {"stage_depths": "brn_depths", "stage_widths": "brn_widths"}
# the command line's --scene-reuse, the field and `SceneStream(scene_reuse=...)`: one name
LEGACY_DATA_FIELDS: dict[str, str] = {"stream_scene_reuse": "scene_reuse"}


# Model config fields added since runs were first written, with the value an older config
# means (the network it built): `upgrade_config_dict` fills them in.
ADDED_MODEL_FIELDS: dict[str, Any] = {"stage_strides": [1, 2, 2, 2], "zero_init_residual": False}


def uses_attribute_loss(d: dict[str, Any]) -> bool:
    """Whether a config dict (a run's config.json) trains with the auxiliary attribute loss: our
    labelled arm, not the paper's method (`TrainConfig.attribute_loss_weight` > 0)."""
    return float(d.get("train", {}).get("attribute_loss_weight") or 0) > 0


def upgrade_config_dict(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict written by an older version, in today's field names (a copy; `d` as is
    when it is current). Before `cnn_widths` existed the baselines sized their CNN from the
    BRN's stem and first stages, `(stem_width, *stage_widths)[:4]`: an old dict gets exactly that,
    so an old baseline checkpoint rebuilds the same network. Before `attribute_loss_reach` existed
    the auxiliary loss reached every parameter: an old dict with the loss on gets "all". A data
    field of an older name (`LEGACY_DATA_FIELDS`) takes today's."""
    train = d.get("train", {})
    if uses_attribute_loss(d) and "attribute_loss_reach" not in train:
        d = {**d, "train": {**train, "attribute_loss_reach": "all"}}  # the only reach back then
    data = d.get("data", {})
    if any(old in data for old in LEGACY_DATA_FIELDS):
        data = {LEGACY_DATA_FIELDS.get(k, k): v for k, v in data.items()}
        d = {**d, "data": data}
    model = dict(d.get("model", {}))
    added = {k: v for k, v in ADDED_MODEL_FIELDS.items() if model and k not in model}
    if added:  # written before the field existed: the value that builds the same network
        model.update(added)
        d = {**d, "model": model}
    if not any(old in model for old in LEGACY_MODEL_FIELDS):
        return d
    for old, new in LEGACY_MODEL_FIELDS.items():
        if old in model:
            model[new] = model.pop(old)
    if "cnn_widths" not in model:
        defaults = ModelConfig()
        stem = model.get("stem_width", defaults.stem_width)
        model["cnn_widths"] = [stem, *model.get("brn_widths", defaults.brn_widths)][:4]
    return {**d, "model": model}


def config_from_dict(d: dict[str, Any]) -> ExperimentConfig:
    """Inverse of `config_to_dict` (lists become tuples again; an older version's field names are
    upgraded, `upgrade_config_dict`); unknown keys are an error."""
    d = upgrade_config_dict(d)

    def build(cls: type, values: dict[str, Any]):
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    return ExperimentConfig(
        name=d["name"],
        profile=d["profile"],
        data=build(DataConfig, d.get("data", {})),
        model=build(ModelConfig, d.get("model", {})),
        train=build(TrainConfig, d.get("train", {})),
    )


class ConfigFileError(ValueError):
    """A config.json that this version of qgmrn cannot read; the message names the file."""


def read_config(path: str | os.PathLike) -> ExperimentConfig:
    """A run's config.json. Fields an older version of qgmrn did not write take their defaults
    (a field whose default changed meaning is upgraded, `upgrade_config_dict`); a file that is
    not JSON, or that has fields this version does not know (written by a newer version), is
    refused with a message naming the file."""
    from qgmrn import __version__

    try:
        d = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ConfigFileError(f"{path}: not a qgmrn config (invalid JSON: {e})") from None
    if not isinstance(d, dict) or "name" not in d or "profile" not in d:
        raise ConfigFileError(f"{path}: not a qgmrn config (no name and profile)")
    try:
        return config_from_dict(d)
    except (TypeError, ValueError) as e:
        raise ConfigFileError(
            f"{path}: {e}. A newer version of qgmrn than this one ({__version__}) wrote it? "
            "Update qgmrn (git pull; pip install -e .) to read it."
        ) from None


def _parse_value(text: str, annotation: str, where: str) -> Any:
    """`text` as a value of the field annotated `annotation` (e.g. "float | None",
    "tuple[int, ...]"; tuples are comma-separated)."""
    if annotation.startswith("tuple["):
        inner = annotation[len("tuple[") :].split(",")[0].strip()
        return tuple(_parse_value(t.strip(), inner, where) for t in text.split(",") if t.strip())
    kinds = [k.strip() for k in annotation.split("|")]
    if "None" in kinds and text.lower() in ("none", "null"):
        return None
    if "bool" in kinds:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{where}: {text!r} is not a boolean (true or false)")
        return text.lower() in ("true", "1")
    for kind, cast in (("int", int), ("float", float)):
        if kind in kinds:
            try:
                return cast(text)
            except ValueError:
                raise ValueError(
                    f"{where}: {text!r} is not {'an integer' if kind == 'int' else 'a number'}"
                ) from None
    return text


def apply_overrides(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """`cfg` with "section.field=value" overrides applied in order (section: data, model or
    train), each value parsed as the field's current type; a clear error names a bad entry."""
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"override {item!r}: expected SECTION.FIELD=VALUE")
        if section not in ("data", "model", "train"):
            raise ValueError(f"override {item!r}: section must be data, model or train")
        part = getattr(cfg, section)
        fields = {f.name: f for f in dataclasses.fields(part)}
        if name not in fields:
            raise ValueError(f"override {item!r}: {section} has no field {name!r}")
        value = _parse_value(text.strip(), str(fields[name].type), f"override {item!r}")
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(part, **{name: value})})
    return cfg


def config_to_json(cfg: ExperimentConfig) -> str:
    return json.dumps(config_to_dict(cfg), indent=2, sort_keys=True)
