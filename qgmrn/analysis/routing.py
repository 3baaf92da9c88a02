"""Routing paths: loading, splitting by stage, t-SNE (paper Fig. 2), execution ratios (Fig. 3).

A routing path is the concatenation of all gates of one question, ``(G,)`` with
``G = sum(layer_sizes)``; ``routing_paths.npz`` stores one per evaluated question (see
docs/internals.md). Stages are the groups of routed layers between downsamplings
(``stage_of_layer``); the paper flattens each stage's gates into a vector and embeds it in 2-D.

Dimension letters: N questions, G gates in total, L routed layers, M_l modules of layer l.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.figure import Figure

from qgmrn.clevr.constants import QUESTION_TYPES, SUBTYPE_LABELS, SUBTYPE_TO_TYPE, SUBTYPES

PathLike = str | os.PathLike

# Figure 2's sample: at most this many validation questions of each subtype (the paper: "500
# instances per subtype"). The t-SNE and the number that measures it (`captions.
# subtype_separation`, `compare.routing_frame`) draw the same questions by default.
PER_SUBTYPE = 500


@dataclass(frozen=True)
class RoutingPaths:
    """The contents of ``routing_paths.npz``."""

    paths: np.ndarray  # (N, G) uint8
    layer_sizes: np.ndarray  # (L,) int
    stage_of_layer: np.ndarray  # (L,) int
    subtypes: np.ndarray  # (N,) int, index into SUBTYPES (-1 unknown)
    question_index: np.ndarray  # (N,) int
    answers: np.ndarray | None = None  # (N,) int
    predictions: np.ndarray | None = None  # (N,) int

    @property
    def num_layers(self) -> int:
        return len(self.layer_sizes)


def load_routing_paths(path: PathLike) -> RoutingPaths:
    """Read ``routing_paths.npz`` (a run directory or the file itself) and check its shapes."""
    path = Path(path)
    if path.is_dir():
        path = path / "routing_paths.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no routing paths; evaluate a routed model first")
    with np.load(path) as z:
        rp = RoutingPaths(
            paths=z["paths"],
            layer_sizes=z["layer_sizes"].astype(int),
            stage_of_layer=z["stage_of_layer"].astype(int),
            subtypes=z["subtypes"].astype(int),
            question_index=z["question_index"],
            answers=z["answers"] if "answers" in z else None,
            predictions=z["predictions"] if "predictions" in z else None,
        )
    if rp.paths.ndim != 2 or rp.paths.shape[1] != int(rp.layer_sizes.sum()):
        raise ValueError(
            f"{path}: paths has shape {rp.paths.shape} but layer_sizes sum to "
            f"{int(rp.layer_sizes.sum())}"
        )
    if len(rp.stage_of_layer) != len(rp.layer_sizes) or len(rp.subtypes) != len(rp.paths):
        raise ValueError(f"{path}: stage_of_layer/layer_sizes or subtypes/paths lengths differ")
    return rp


def split_layers(paths: np.ndarray, layer_sizes: Sequence[int]) -> list[np.ndarray]:
    """(N, G) -> one (N, M_l) array per routed layer."""
    bounds = np.cumsum([0, *layer_sizes])
    if paths.shape[1] != bounds[-1]:
        raise ValueError(f"paths have {paths.shape[1]} gates but layer_sizes sum to {bounds[-1]}")
    return [paths[:, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def split_stages(
    paths: np.ndarray, layer_sizes: Sequence[int], stage_of_layer: Sequence[int]
) -> dict[int, np.ndarray]:
    """(N, G) -> {stage: (N, sum of M_l over the stage's layers)}, numbered as the paper numbers
    its stages: 1 (the shallowest) to S, in depth order, whatever ids `stage_of_layer` uses (the
    model's are 0-based, `QGMRN.stage_of_layer`)."""
    layers = split_layers(paths, layer_sizes)
    stages: dict[int, list[np.ndarray]] = {}
    for layer, stage in zip(layers, stage_of_layer, strict=True):
        stages.setdefault(int(stage), []).append(layer)
    return {k: np.concatenate(stages[s], axis=1) for k, s in enumerate(sorted(stages), start=1)}


def sample_per_subtype(subtypes: np.ndarray, per_subtype: int, seed: int = 0) -> np.ndarray:
    """Indices of at most `per_subtype` random instances of each subtype (sorted, no -1)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for s in np.unique(subtypes):
        if s < 0:
            continue
        idx = np.flatnonzero(subtypes == s)
        if len(idx) > per_subtype:
            idx = rng.choice(idx, per_subtype, replace=False)
        chosen.append(idx)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def tsne_by_stage(
    paths: np.ndarray,
    stage_of_layer: Sequence[int],
    subtypes: np.ndarray,
    *,
    layer_sizes: Sequence[int],
    per_subtype: int = PER_SUBTYPE,
    seed: int = 0,
    perplexity: float = 30.0,
    max_iter: int = 1000,
) -> pd.DataFrame:
    """Embed each stage's routing paths in 2-D with t-SNE, as the paper's Figure 2.

    At most `per_subtype` instances per subtype are drawn (the paper: 500 per subtype of the
    validation set). Returns a long DataFrame with columns ``stage`` (the paper's numbering, 1
    to S: `split_stages`), ``x, y, subtype, subtype_name, index, distinct_paths, path_id``
    (``index`` = row in `paths`; ``distinct_paths`` = how many different paths the stage has
    among the drawn questions: with one, all points sit at the origin; ``path_id`` numbers the
    stage's distinct paths, so questions with the same id took the same path and sit on the same
    point). The perplexity is lowered when there are few points.
    """
    from sklearn.manifold import TSNE

    idx = sample_per_subtype(np.asarray(subtypes), per_subtype, seed)
    if len(idx) < 2:
        raise ValueError("t-SNE needs at least two routing paths with a known subtype")
    stages = split_stages(np.asarray(paths)[idx].astype(np.float32), layer_sizes, stage_of_layer)
    perp = float(min(perplexity, max(1.0, (len(idx) - 1) / 3)))
    frames = []
    for stage, x in stages.items():
        uniq, path_id = np.unique(x, axis=0, return_inverse=True)
        distinct = len(uniq)
        if distinct < 2:  # every question takes the same path: nothing to embed (t-SNE fails)
            emb = np.zeros((len(x), 2))
        else:
            emb = TSNE(
                n_components=2,
                perplexity=perp,
                init="pca",
                learning_rate="auto",
                max_iter=max_iter,
                method="exact" if len(x) < 200 else "barnes_hut",
                random_state=seed,
            ).fit_transform(x)
        st = np.asarray(subtypes)[idx]
        frames.append(
            pd.DataFrame(
                {
                    "stage": stage,
                    "x": emb[:, 0],
                    "y": emb[:, 1],
                    "subtype": st,
                    "subtype_name": [SUBTYPE_LABELS[SUBTYPES[s]] for s in st],
                    "index": idx,
                    "distinct_paths": distinct,
                    "path_id": np.asarray(path_id).reshape(-1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# One hue per question type (tab10's first five, in QUESTION_TYPES order), and per subtype of a
# type a shade of that hue and a marker of its own, so the 13 subtypes differ in colour and shape.
_TYPE_BASE_COLORS = dict(zip(QUESTION_TYPES, plt.get_cmap("tab10").colors[:5], strict=True))
_SUBTYPE_MARKERS = ("o", "s", "^", "D", "v", "P")
_SHADE_LIGHTNESS = (0.28, 0.68)  # darkest and lightest shade (HLS lightness) within a type
_DRAW_ROUNDS = 4  # plot_tsne_stages: interleaved drawing rounds


def _subtypes_by_type() -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {t: [] for t in QUESTION_TYPES}
    for s in SUBTYPES:
        by_type[SUBTYPE_TO_TYPE[s]].append(s)
    return by_type


def subtype_colors() -> dict[str, tuple]:
    """A fixed colour per subtype display name (13 distinct colours, in SUBTYPES order).

    Each question type has its own hue (tab10: Count blue, Exist orange, Compare Numbers green,
    Query Attribute red, Compare Attribute purple); the subtypes of a type are shades of it,
    dark to light. Pair with `subtype_markers` for a second, colour-independent cue.
    """
    shades = {}
    for t, subs in _subtypes_by_type().items():
        h, light, sat = colorsys.rgb_to_hls(*_TYPE_BASE_COLORS[t])
        levels = [light] if len(subs) == 1 else np.linspace(*_SHADE_LIGHTNESS, len(subs))
        for s, level in zip(subs, levels, strict=True):
            shades[s] = mcolors.to_rgba(colorsys.hls_to_rgb(h, float(level), sat))
    return {SUBTYPE_LABELS[s]: shades[s] for s in SUBTYPES}


def subtype_markers() -> dict[str, str]:
    """A marker per subtype display name: the subtypes of one question type get different ones
    (o, s, ^, D in SUBTYPES order), so (colour, marker) tells all 13 apart."""
    markers = {}
    for subs in _subtypes_by_type().values():
        for i, s in enumerate(subs):
            markers[s] = _SUBTYPE_MARKERS[i % len(_SUBTYPE_MARKERS)]
    return {SUBTYPE_LABELS[s]: markers[s] for s in SUBTYPES}


def jitter_identical_paths(
    d: pd.DataFrame, *, scale: float = 0.01, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of one stage's points, those that share their point with others moved by a small
    seeded Gaussian offset (sd = `scale` times the panel's extent), so a point standing for
    many questions shows as a cloud whose size and colours tell how many and which.

    Points share a point when they have the same ``path_id`` (`tsne_by_stage`) or, in a frame
    without one, the same coordinates to 1e-6 of the extent. Points alone are not moved.
    """
    x = d["x"].to_numpy(dtype=float)
    y = d["y"].to_numpy(dtype=float)
    if len(x) == 0 or scale <= 0:
        return x, y
    span = max(float(np.ptp(x)), float(np.ptp(y)))
    span = span if span > 0 else 1.0
    if "path_id" in d:
        key = pd.Series(d["path_id"].to_numpy())
    else:
        key = pd.Series(list(zip(np.round(x / span * 1e6), np.round(y / span * 1e6), strict=True)))
    shared = (key.map(key.value_counts()) > 1).to_numpy()
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0.0, scale * span, size=(len(x), 2))
    return x + shared * offsets[:, 0], y + shared * offsets[:, 1]


def plot_tsne_stages(
    emb: pd.DataFrame,
    *,
    title: str = "",
    point_size: float = 10.0,
    jitter: float = 0.015,
    seed: int = 0,
) -> Figure:
    """2x2 panels (stage 1 top-left ... stage 4 bottom-right) coloured by the 13 subtypes.

    A type's subtypes share a hue and differ in shade and marker (`subtype_colors`,
    `subtype_markers`). Questions whose routing paths are identical sit on one point of the
    embedding; they are spread by a small seeded jitter (`jitter` = sd as a fraction of the
    panel's extent, 0 = none; `jitter_identical_paths`), which the legend says.
    """
    stages = sorted(emb["stage"].unique())
    ncols = 2
    nrows = max(1, int(np.ceil(len(stages) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(10, 4.6 * nrows), squeeze=False)
    colors = subtype_colors()
    markers = subtype_markers()
    for ax in axes.flat[len(stages) :]:
        ax.axis("off")
    for i, (ax, stage) in enumerate(zip(axes.flat, stages, strict=False)):
        d = emb[emb["stage"] == stage]
        xs, ys = jitter_identical_paths(d, scale=jitter, seed=seed + i)
        # drawn in a few seeded rounds, each over all subtypes, so that where points overlap no
        # subtype is always the one on top (one scatter call takes one marker)
        layer = np.random.default_rng(seed + i).integers(0, _DRAW_ROUNDS, len(d))
        names = d["subtype_name"].to_numpy()
        for r in range(_DRAW_ROUNDS):
            for name, color in colors.items():
                sel = (names == name) & (layer == r)
                if sel.any():
                    ax.scatter(
                        xs[sel],
                        ys[sel],
                        s=point_size,
                        color=color,
                        marker=markers[name],
                        linewidths=0,
                        alpha=0.8,
                    )
        ax.set_title(f"stage {stage} ({d['distinct_paths'].iloc[0]} distinct paths)")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")  # jitter clouds round, distances true
    handles = [
        plt.Line2D([], [], marker=markers[n], linestyle="", color=c, label=n)
        for n, c in colors.items()
    ]
    legend_title = "question subtype"
    if jitter > 0:
        legend_title += "\n(identical paths jittered)"
    fig.legend(handles=handles, loc="center right", title=legend_title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.8, 0.95 if title else 1.0))
    if title:
        fig.suptitle(title)
    return fig


def execution_ratio_per_layer(paths: np.ndarray, layer_sizes: Sequence[int]) -> np.ndarray:
    """(N, G) gates -> (N, L): the fraction of each layer's modules that executed, per question."""
    return np.stack([layer.mean(axis=1) for layer in split_layers(paths, layer_sizes)], axis=1)


def execution_ratio_frame(ratios: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """{model: (N, L) ratios} -> long DataFrame with columns ``model, layer (1-based), ratio``."""
    frames = []
    for model, r in ratios.items():
        n, num_layers = r.shape
        frames.append(
            pd.DataFrame(
                {
                    "model": model,
                    "layer": np.tile(np.arange(1, num_layers + 1), n),
                    "ratio": r.reshape(-1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def execution_ratio_summary(ratios: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Mean execution ratio per layer: rows = models, columns = layers 1..L (NaN past a model's
    last layer), plus the overall mean."""
    df = pd.DataFrame(
        {m: pd.Series(r.mean(axis=0), index=range(1, r.shape[1] + 1)) for m, r in ratios.items()}
    ).T
    df.columns.name = "layer"
    df["mean"] = [r.mean() for r in ratios.values()]
    return df


def plot_execution_ratio_boxplots(ratios: Mapping[str, np.ndarray], *, title: str = "") -> Figure:
    """One panel per model of box plots of the module execution ratio per layer (Fig. 3);
    `title` goes above the panels."""
    n = len(ratios)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 3.8), squeeze=False)
    for ax, (model, r) in zip(axes.flat, ratios.items(), strict=True):
        ax.boxplot([r[:, layer] for layer in range(r.shape[1])], showfliers=False)
        ax.set_xticks(range(1, r.shape[1] + 1))
        ax.set_xticklabels([str(i) for i in range(1, r.shape[1] + 1)], fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("routed layer")
        ax.set_ylabel("execution ratio")
        ax.set_title(f"{model}: mean {r.mean():.2f}", fontsize=9)
    fig.tight_layout()
    if title:
        fig.suptitle(title, fontsize=10)
        fig.subplots_adjust(top=1 - 0.45 / fig.get_figheight())
    return fig


def plot_routing_paths(
    paths: Sequence[np.ndarray],
    layer_sizes: Sequence[int],
    titles: Sequence[str],
) -> Figure:
    """Routing paths of a few questions side by side: one row per routed layer, each layer's
    modules stretched to the same width (open = dark)."""
    num_layers = len(layer_sizes)
    width = int(max(layer_sizes))
    fig, axes = plt.subplots(1, len(paths), figsize=(4.2 * len(paths), 0.25 * num_layers + 1.5))
    axes = np.atleast_1d(axes)
    for ax, path, title in zip(axes, paths, titles, strict=True):
        img = np.zeros((num_layers, width))
        for row, layer in enumerate(split_layers(np.asarray(path).reshape(1, -1), layer_sizes)):
            img[row] = layer[0][np.arange(width) * layer.shape[1] // width]  # stretch to width
        ax.imshow(img, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(range(num_layers))
        ax.set_yticklabels([f"{i + 1} ({m})" for i, m in enumerate(layer_sizes)], fontsize=7)
        ax.set_xticks([])
        ax.set_ylabel("layer (modules)")
        ax.set_title(title, fontsize=9, wrap=True)
    fig.tight_layout()
    return fig
