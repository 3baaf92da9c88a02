"""Saliency maps: which pixels move the answer most, per question (paper Fig. 4, Simonyan et al.).

For one image and several questions, the map of a question is |d s_max / d x| maximised over
the colour channels, where s_max is the largest answer score (logit) and x the normalised input
image. The model is put in evaluation mode, so its routing path is deterministic.

How much of a map falls on the objects the question is about (the caption of Fig. 4): the
generated data sets (mini-CLEVR) record their camera, so the renderer can say which pixel shows
which object (`object_masks`); the question's program, run on the scene, says which objects it
refers to (`referred_objects`); `saliency_mass` divides each map's mass accordingly and compares
it with the share a uniform map would put there. Real CLEVR records no camera: no masks.

Dimension letters: Q questions, T tokens, H x W pixels, A answers.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from qgmrn.clevr.executor import execute_program_trace
from qgmrn.clevr.io import read_info
from qgmrn.clevr.signatures import SIGNATURES
from qgmrn.model import sparse_kwargs
from qgmrn.synth.camera import Camera
from qgmrn.synth.render import object_ids


def _as_float_image(image: np.ndarray | Tensor, normalize: Callable[[Tensor], Tensor] | None):
    # a row of the read-only image cache (a memory map) is copied: torch warns on, and must not
    # share, non-writable memory
    x = image if isinstance(image, Tensor) else torch.from_numpy(np.array(image))
    if x.ndim == 3 and x.shape[-1] == 3 and x.shape[0] != 3:
        x = x.permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    x = x.unsqueeze(0)  # (1, 3, H, W)
    if normalize is None:
        from qgmrn.data import normalize_images as normalize
    return normalize(x) if x.dtype == torch.uint8 else x.float()


def pad_questions(token_lists: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Token id lists -> (questions (Q, T) long padded with 0, lengths (Q,) long)."""
    lengths = torch.tensor([len(t) for t in token_lists], dtype=torch.long)
    questions = torch.zeros(len(token_lists), int(lengths.max()), dtype=torch.long)
    for i, t in enumerate(token_lists):
        questions[i, : len(t)] = torch.as_tensor(list(t), dtype=torch.long)
    return questions, lengths


def saliency_maps(
    model: nn.Module,
    image: np.ndarray | Tensor,
    token_lists: Sequence[Sequence[int]],
    *,
    normalize: Callable[[Tensor], Tensor] | None = None,
    device: str | torch.device = "cpu",
    sparse: bool = False,
) -> dict[str, np.ndarray]:
    """Saliency of one image under each question; `sparse`: a routed model's trunk skips the
    closed modules (`qgmrn.nn.sparse`: the same function, so the same maps up to float order;
    the gradient flows to the image through the sliced convolutions).

    image:       uint8 (3, H, W) or (H, W, 3) (normalised with `normalize`, by default
                 `qgmrn.data.normalize_images`), or an already normalised float (3, H, W).
    token_lists: encoded questions (e.g. `Vocab.encode_question(text)`).
    Returns ``maps`` (Q, H, W) float in [0, 1] (each map divided by its maximum),
    ``predictions`` (Q,) int, ``scores`` (Q,) the max logits, and ``gates`` (Q, G) uint8 routing
    paths (G = 0 for unrouted models).
    """
    was_training = model.training
    model.eval()
    try:
        x0 = _as_float_image(image, normalize).to(device)
        questions, lengths = pad_questions(token_lists)
        maps, preds, scores, gates = [], [], [], []
        extra = sparse_kwargs(model, sparse)
        for i in range(len(token_lists)):
            x = x0.clone().requires_grad_(True)
            out = model(x, questions[i : i + 1].to(device), lengths[i : i + 1], **extra)
            score, pred = out.logits[0].max(dim=0)
            (grad,) = torch.autograd.grad(score, x)
            m = grad[0].abs().amax(dim=0)  # (H, W)
            maps.append((m / m.max().clamp_min(1e-12)).cpu().numpy())
            preds.append(int(pred))
            scores.append(float(score.detach()))
            g = [t[0].detach().cpu() for t in out.gates]
            gates.append(torch.cat(g).numpy().astype(np.uint8) if g else np.zeros(0, np.uint8))
    finally:
        model.train(was_training)
    return {
        "maps": np.stack(maps),
        "predictions": np.array(preds),
        "scores": np.array(scores),
        "gates": np.stack(gates),
    }


def grid_shape(n: int, max_cols: int = 5) -> tuple[int, int]:
    """(rows, columns) for `n` panels: the fewest empty cells with at most `max_cols` columns,
    then the fewest rows (5 panels: one row of 5, not 2 x 3 with an empty sixth)."""
    if n <= max_cols:
        return 1, max(n, 1)
    best = min(range(2, max_cols + 1), key=lambda c: (-n % c, math.ceil(n / c)))
    return math.ceil(n / best), best


def plot_saliency_grid(
    image: np.ndarray,
    maps: np.ndarray,
    questions: Sequence[str],
    answers: Sequence[str] | None = None,
    *,
    truths: Sequence[str] | None = None,
    ncols: int | None = None,
    title: str = "",
) -> Figure:
    """The image, then each question's saliency map laid over it (as Fig. 4); under each
    question the predicted answer (`answers`) and, with `truths`, the true one and whether the
    prediction is right. `title` goes above the grid (e.g. which run it shows); `ncols`: panels
    a row (default `grid_shape`'s, which leaves no empty cell where it can).

    The map is drawn with its own value as opacity (a saliency of 0 leaves the image as it is,
    1 covers it), over a grey copy of the image: the objects stay visible where the map is low,
    and the map's colours are not mixed with the objects'. A colour bar right of the panels
    gives the scale: each map divided by its own maximum (`saliency_maps`), so colours compare
    pixels within a map, not maps with each other."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    grey = img.astype(np.float32).mean(axis=-1) if img.ndim == 3 else img.astype(np.float32)
    n = len(maps) + 1
    nrows, ncols = grid_shape(n) if ncols is None else (math.ceil(n / ncols), min(ncols, n))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.4 * ncols + 0.8, 3.6 * nrows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[n:]:  # cells past the last panel: no frame, no whitespace of their own
        fig.delaxes(ax)
    for ax in axes.flat[:n]:
        ax.axis("off")
    axes.flat[0].imshow(img)
    axes.flat[0].set_title("image", fontsize=9)
    cmap = plt.get_cmap("inferno")
    for i, (ax, m) in enumerate(zip(axes.flat[1:n], maps, strict=True)):
        ax.imshow(grey, cmap="gray", vmin=0, vmax=255 if grey.max() > 1 else 1)
        overlay = cmap(np.clip(m, 0, 1))  # (H, W, 4)
        overlay[..., 3] = np.clip(m, 0, 1) ** 0.5  # opacity grows with saliency
        ax.imshow(overlay)
        # wrapped here, not by matplotlib's wrap=True, which lets long questions run into the
        # neighbouring panel's title and the figure title
        text = "\n".join(textwrap.wrap(questions[i], width=44))
        if answers is not None and truths is not None:
            mark = "right" if answers[i] == truths[i] else "wrong"
            text += f"\npredicted {answers[i]}, truth {truths[i]} ({mark})"
        elif answers is not None:
            text += f"\n-> {answers[i]}"
        ax.set_title(text, fontsize=8)
    if n > 1:
        bar = fig.colorbar(
            ScalarMappable(Normalize(0, 1), cmap), ax=list(axes.flat[1:n]), shrink=0.8, pad=0.01
        )
        bar.set_label("saliency / the map's maximum (also its opacity)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------
# Saliency mass on the objects a question refers to.


def _function(node: Mapping[str, Any]) -> str:
    # the released dialect says "function", the generator's "type" (as the executor accepts)
    return node.get("function", node.get("type"))


def referred_objects(program: Sequence[Mapping[str, Any]], scene: Mapping[str, Any]) -> set[int]:
    """The indices of the objects a question refers to (our definition; the paper gives none).

    The program is run on the scene (`execute_program_trace`); the referents are
      * the object of every `unique` node (what the question names: "the large blue cube",
        also the anchor of a relation, "the thing left of the large blue cube"), and
      * the objects the answer is computed from: the inputs of the last node, followed down
        through answer-valued nodes (a `count` to the set it counts, a `query_*` to its object,
        `equal_*` / `greater_than` / ... to both sides) until a set or an object is reached.
    A set names objects only when an attribute picked them: `filter_*` and `same_*` outputs
    count whole; `scene` (all objects) and `relate` (a region: everything left of X) name none
    by themselves, so their objects count only when a later filter or `unique` picks them;
    `union` / `intersect` keep the objects their inputs name. Examples: "How many objects are
    there?" refers to none; "How many things are left of the cube?" refers to the cube only;
    "Is there a sphere left of the cube?" refers to the cube plus the spheres left of it
    (none when the answer is "no").

    The result may be empty. Raises what `execute_program_trace` raises on a program that does
    not run on this scene (e.g. AmbiguousReferenceError for a `unique` over two objects).
    """
    if not program:
        return set()
    values = execute_program_trace(program, scene)

    def named(k: int) -> set[int]:
        # objects that node k's value points at, by its output kind (see the docstring)
        node = program[k]
        function = _function(node)
        kind = SIGNATURES[function].output
        inputs = list(node.get("inputs", ()))
        if kind == "object":
            return {int(values[k])}
        if kind == "set":
            if function in ("scene", "relate"):
                return set()
            if function in ("union", "intersect"):
                return set(values[k]) & set().union(*(named(i) for i in inputs))
            return {int(j) for j in values[k]}  # filter_*, same_*
        # integer, bool or attribute value: the objects it was computed from
        return set().union(*(named(i) for i in inputs))

    out = {int(v) for node, v in zip(program, values, strict=True) if _function(node) == "unique"}
    return out | named(len(program) - 1)


def scenes_camera(scenes_file: str | os.PathLike) -> tuple[Camera, tuple[int, int]]:
    """The camera a generated scenes file was rendered with, and the render size (W, H).

    Read from the file's `info` (`camera`: location, target, fov_deg; else `framing`;
    `image_size`), as `qgmrn.synth.generate` writes it. Raises ValueError for a file without
    them (real CLEVR jitters its camera per image and records none).
    """
    info = read_info(scenes_file)
    cam, framing, size = info.get("camera"), info.get("framing"), info.get("image_size")
    if size is None or (cam is None and framing is None):
        raise ValueError(
            f"{os.fspath(scenes_file)} records no camera (no info.camera / info.framing and "
            "info.image_size): object masks need a generated data set (mini-CLEVR, "
            "`qgmrn generate`); real CLEVR does not record its cameras"
        )
    if cam is not None:  # the exact floats rendered with, not a re-derivation from the name
        camera = Camera(
            location=tuple(float(c) for c in cam["location"]),
            target=tuple(float(c) for c in cam["target"]),
            fov_deg=float(cam["fov_deg"]),
            framing=framing or "custom",
        )
    else:
        camera = Camera.from_framing(framing)
    width, height = (int(v) for v in size)
    return camera, (width, height)


def object_masks(
    scene: Mapping[str, Any],
    camera: Camera,
    height: int,
    width: int,
    *,
    render_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Which object each pixel of an `height` x `width` image shows: int16 (H, W), -1 = ground.

    The object-id buffer of `render_scene` (`qgmrn.synth.render.object_ids`) at the size the
    model sees. `render_size` (W, H), the size the PNGs were rendered at (`scenes_camera`),
    matters only when the image cache changed the aspect ratio: the cache stretches the PNG
    (`qgmrn.data.cache.load_image`), which a pinhole camera cannot, so the ids are then rendered
    at `render_size` and sampled at the stretched pixel centres (nearest). At the same aspect
    ratio (e.g. a 64x96 cache of 96x64 PNGs, or 48x72) they are rendered at (H, W) directly.
    """
    height, width = int(height), int(width)
    if render_size is None or render_size[0] * height == render_size[1] * width:
        return object_ids(dict(scene), camera, width, height)
    w0, h0 = (int(v) for v in render_size)
    ids = object_ids(dict(scene), camera, w0, h0)
    rows = np.minimum(((np.arange(height) + 0.5) * h0 / height).astype(int), h0 - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w0 / width).astype(int), w0 - 1)
    return ids[rows[:, None], cols[None, :]]


def saliency_mass(
    maps: np.ndarray, masks: np.ndarray, referred: Sequence[set[int]]
) -> pd.DataFrame:
    """Share of each saliency map's mass on the referred objects, against chance.

    maps:     (Q, H, W) non-negative saliency of one image under Q questions.
    masks:    (H, W) object id per pixel, -1 for the ground (`object_masks`).
    referred: Q sets of object indices (`referred_objects`).
    Returns one row per question:
      ``referred``          number of referred objects (visible or not);
      ``on_referred``       mass on the referred objects' pixels / total mass;
      ``on_objects``        mass on any object's pixels / total mass;
      ``chance``            the referred pixels' share of the image area: `on_referred` of a
                            uniform map;
      ``objects_chance``    all objects' share of the area (`on_objects` of a uniform map);
      ``referred_of_objects`` / ``referred_of_objects_chance``: the same restricted to object
                            pixels (mass on referred / mass on objects, and referred pixels /
                            object pixels): does the map pick the right objects, not just
                            objects rather than floor?
    Questions with no referred objects (or whose referents cover no pixel) get NaN shares.
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks)
    if maps.ndim != 3 or maps.shape[1:] != masks.shape or len(referred) != len(maps):
        raise ValueError(
            f"maps {maps.shape}, masks {masks.shape} and {len(referred)} referent sets do not "
            "match: need (Q, H, W), (H, W) and Q sets"
        )
    on_obj = masks >= 0
    rows = []
    for m, ref in zip(maps, referred, strict=True):
        sel = np.isin(masks, sorted(ref)) & on_obj
        total, on_o = m.sum(), m[on_obj].sum()
        row = {"referred": len(ref), "on_objects": on_o / total if total > 0 else math.nan}
        row["objects_chance"] = on_obj.mean()
        if not sel.any():  # nothing to measure: no referents, or none of them visible
            row.update(
                on_referred=math.nan,
                chance=math.nan,
                referred_of_objects=math.nan,
                referred_of_objects_chance=math.nan,
            )
        else:
            on_r = m[sel].sum()
            row.update(
                on_referred=on_r / total if total > 0 else math.nan,
                chance=sel.mean(),
                referred_of_objects=on_r / on_o if on_o > 0 else math.nan,
                referred_of_objects_chance=sel.sum() / on_obj.sum(),
            )
        rows.append(row)
    columns = [
        "referred",
        "on_referred",
        "chance",
        "on_objects",
        "objects_chance",
        "referred_of_objects",
        "referred_of_objects_chance",
    ]
    return pd.DataFrame(rows, columns=columns)


def saliency_mass_caption(
    mass: pd.DataFrame,
    *,
    correct: Sequence[bool] | None = None,
    threshold: float = 1.5,
    among_threshold: float = 1.2,
) -> str:
    """Figure 4's caption in numbers, from `saliency_mass` rows (one or many images).

    Compares means over the questions with a measurable referent set. Two verdicts:
      * "concentrates on the referred objects": mean share on them / mean chance share (the
        ratio of the two means) exceeds `threshold` (1.5: half as much mass again as a uniform
        map puts there);
      * "singles them out among the objects": of the mass on objects, the referred ones' mean
        share / their mean share of the object pixels exceeds `among_threshold` (1.2).
    The second is the one that says whether the question steers the map: objects draw
    saliency by their edges and colour contrast even in an untrained network, which can pass
    the first alone. `correct` (one bool per row) adds the accuracy.
    """
    ok = mass["on_referred"].notna().to_numpy()
    n, skipped = int(ok.sum()), int((~ok).sum())
    if n == 0:
        return (
            f"None of the {len(mass)} questions refers to a visible object (by our definition), "
            "so the share of saliency on referred objects is not measured."
        )
    m = mass[ok]
    share, chance = m["on_referred"].mean(), m["chance"].mean()
    ratio = share / chance
    objects, obj_chance = m["on_objects"].mean(), m["objects_chance"].mean()
    among, among_chance = m["referred_of_objects"].mean(), m["referred_of_objects_chance"].mean()
    among_ratio = among / among_chance
    text = (
        f"Over {n} question{'s' if n != 1 else ''}"
        + (f" ({skipped} left out: no visible referred object)" if skipped else "")
        + f", the saliency map puts on average {share:.1%} of its mass on the objects the "
        f"question refers to, where a uniform map would put {chance:.1%} (the referred "
        f"objects' share of the image area): {ratio:.2f} times chance. All objects together "
        f"receive {objects:.1%} (area {obj_chance:.1%}); of the mass on objects, {among:.1%} "
        f"falls on the referred ones (their share of the object pixels: {among_chance:.1%}, "
        f"so {among_ratio:.2f} times their share). "
    )
    if correct is not None:
        c = np.asarray(correct, dtype=bool)
        text += f"The model answers {int(c.sum())} of {len(c)} questions correctly. "
    concentrates, singles_out = ratio > threshold, among_ratio > among_threshold
    text += (
        f"By our thresholds the saliency {'does' if concentrates else 'does not'} concentrate "
        f"on the referred objects (test: more than {threshold:g} times chance), and "
        f"{'does' if singles_out else 'does not'} single them out among the objects (test: more "
        f"than {among_threshold:g} times their share of the object pixels)"
    )
    if concentrates and not singles_out:
        text += ": the concentration comes from objects drawing saliency in general, not from "
        text += "the question"
    return text + "."
