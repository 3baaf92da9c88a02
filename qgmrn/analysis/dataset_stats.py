"""A look at a CLEVR-layout data set: example images with their questions, and distributions of
answers, question types and subtypes (notebook 01)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from qgmrn.clevr.constants import ANSWERS, QUESTION_TYPES, SUBTYPE_LABELS, SUBTYPES, TYPE_LABELS

PathLike = str | os.PathLike


def question_frame(questions: Sequence[dict]) -> pd.DataFrame:
    """One row per question: image_index, image_filename, question, answer, type, subtype."""
    from qgmrn.clevr import question_subtype, question_type

    rows = []
    for q in questions:
        program = q.get("program")
        rows.append(
            {
                "image_index": q.get("image_index"),
                "image_filename": q.get("image_filename"),
                "question": q["question"],
                "answer": q.get("answer"),
                "type": TYPE_LABELS[question_type(program)] if program else None,
                "subtype": SUBTYPE_LABELS[question_subtype(program)] if program else None,
            }
        )
    return pd.DataFrame(rows)


def distributions(df: pd.DataFrame) -> dict[str, pd.Series]:
    """Fractions of questions per answer, type and subtype (in the fixed CLEVR orders)."""
    return {
        "answer": df["answer"].value_counts(normalize=True).reindex(ANSWERS, fill_value=0.0),
        "type": df["type"]
        .value_counts(normalize=True)
        .reindex([TYPE_LABELS[t] for t in QUESTION_TYPES], fill_value=0.0),
        "subtype": df["subtype"]
        .value_counts(normalize=True)
        .reindex([SUBTYPE_LABELS[s] for s in SUBTYPES], fill_value=0.0),
    }


def plot_distributions(
    frames: pd.DataFrame | Mapping[str, pd.DataFrame], title: str = ""
) -> Figure:
    """Bar charts of the answer, type and subtype distributions; with several splits
    (split -> question frame), their bars side by side in each category."""
    if isinstance(frames, pd.DataFrame):
        frames = {"": frames}
    dists = {split: distributions(df) for split, df in frames.items()}
    k = len(dists)
    width = 0.8 / k
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw={"width_ratios": [3, 1.2, 2]})
    for ax, name in zip(axes, ("answer", "type", "subtype"), strict=True):
        for j, (split, d) in enumerate(dists.items()):
            s = d[name]
            x = np.arange(len(s)) + (j - (k - 1) / 2) * width
            label = f"{split} ({len(frames[split])} questions)" if split else None
            ax.bar(x, s.to_numpy(), width=width, color=f"C{j}", label=label)
        ax.set_xticks(range(len(s)))
        ax.set_xticklabels(s.index, rotation=60, ha="right", fontsize=7)
        ax.set_title(name if k > 1 else f"{name} ({len(frames[''])} questions)")
        ax.set_ylabel("fraction")
    if k > 1:
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def split_differences(frames: Mapping[str, pd.DataFrame], reference: str = "train") -> pd.DataFrame:
    """How far each split's answer, type and subtype distributions are from `reference`'s: the
    total variation distance (half the L1 distance of the fractions: 0 identical, 1 disjoint)
    and the category with the largest gap, in percentage points. One row per (split, category)."""
    ref = distributions(frames[reference])
    rows = []
    for split, df in frames.items():
        if split == reference:
            continue
        d = distributions(df)
        for name in ("answer", "type", "subtype"):
            gap = d[name] - ref[name]
            rows.append(
                {
                    "split": split,
                    "category": name,
                    "total_variation": 0.5 * float(gap.abs().sum()),
                    "largest_gap_at": str(gap.abs().idxmax()),
                    "largest_gap_pp": 100 * float(gap[gap.abs().idxmax()]),
                }
            )
    return pd.DataFrame(rows).set_index(["split", "category"])


def plot_examples(
    data_dir: PathLike,
    split: str,
    df: pd.DataFrame,
    *,
    n: int = 4,
    per_image: int = 3,
    seed: int = 0,
    wrap_width: int = 48,
) -> Figure:
    """`n` random images of `split` with up to `per_image` of their questions and answers.

    Each question is wrapped at `wrap_width` characters (48: a 4.2-inch panel holds about 75
    characters of the 7-point title, so every line stays well inside its own panel) and the
    figure is made tall enough for the images and the longest title.
    """
    import textwrap

    from PIL import Image

    fontsize = 7
    rng = np.random.default_rng(seed)
    images = sorted(df["image_index"].unique())
    chosen = rng.choice(images, size=min(n, len(images)), replace=False)
    panels = []
    for idx in chosen:
        qs = df[df["image_index"] == idx].head(per_image)
        path = Path(data_dir) / "images" / split / qs["image_filename"].iloc[0]
        img = np.asarray(Image.open(path).convert("RGB"))
        lines = []
        for q, a in zip(qs["question"], qs["answer"], strict=True):
            # wrapped here, not by matplotlib's wrap=True, which lets long questions run into
            # the neighbouring panel
            lines += textwrap.wrap(f"Q: {q}", width=wrap_width, subsequent_indent="   ")
            lines += textwrap.wrap(f"A: {a}", width=wrap_width, subsequent_indent="   ")
        panels.append((img, "\n".join(lines)))
    # inches: the tallest image at the panel's width, the longest title, a margin
    image_height = max((4.0 * img.shape[0] / img.shape[1] for img, _ in panels), default=4.0)
    max_lines = max((text.count("\n") + 1 for _, text in panels), default=1)
    height = image_height + max_lines * fontsize * 1.3 / 72 + 0.4
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.2 * len(chosen), height), squeeze=False)
    for ax, (img, text) in zip(axes.flat, panels, strict=True):
        ax.imshow(img)
        ax.axis("off")
        # image at the top of its slot, so that tight_layout's room for the title is above it
        ax.set_anchor("N")
        ax.set_title(text, fontsize=fontsize, loc="left")
    fig.tight_layout()
    return fig


def ensure_dataset(
    data_cfg,
    data_path: PathLike,
    *,
    seed: int = 0,
    workers: int = 1,
    regenerate: bool = False,
    humans: bool = True,
) -> dict:
    """Make sure a CLEVR-layout data set is at `data_path`; returns a summary.

    A folder with ``questions/CLEVR_train_questions.json`` is used as it is (real CLEVR v1.0 or
    an earlier mini-CLEVR), unless `regenerate`. Otherwise mini-CLEVR is generated with the sizes
    of `data_cfg` (a `qgmrn.config.DataConfig`), CLEVR-Humans-style paraphrases included; a
    folder named like the real data set (``CLEVR_v1.0``) is never generated into.
    """
    import json

    data_path = Path(data_path)
    train = data_path / "questions" / "CLEVR_train_questions.json"
    if train.exists() and not regenerate:
        summary_file = data_path / "summary.json"
        if summary_file.exists():
            return {"source": "existing mini-CLEVR", **json.loads(summary_file.read_text())}
        return {"source": "existing CLEVR-layout data set", "path": str(data_path)}
    if "CLEVR_v1.0" in data_path.name:
        raise FileNotFoundError(
            f"{data_path}: CLEVR v1.0 is not there; fetch it with "
            f"`qgmrn download clevr --to {data_path.parent}` (18 GB), or use profile demo"
        )
    from qgmrn.synth import generate_dataset

    summary = generate_dataset(
        data_path,
        train_scenes=data_cfg.train_scenes,
        val_scenes=data_cfg.val_scenes,
        test_scenes=data_cfg.test_scenes,
        questions_per_scene=data_cfg.questions_per_scene,
        render_size=tuple(data_cfg.render_size),
        min_objects=data_cfg.min_objects,
        max_objects=data_cfg.max_objects,
        seed=seed,
        workers=workers,
        humans=humans,
        framing=data_cfg.framing,
        progress=False,
    )
    return {"source": "generated mini-CLEVR", **summary}


# CLEVR's question-type mix (percent): the public CLEVR question generator over 500 real CLEVR
# val scenes, 10 templates per image (qgmrn.synth.questions.CLEVR_TYPE_MIX).
def type_mix_table(question_files: dict[str, PathLike]) -> pd.DataFrame:
    """Percent of questions per type: real CLEVR's mix beside each labelled question file
    (label -> CLEVR-layout questions JSON with programs), one column per file."""
    from qgmrn.clevr import load_questions
    from qgmrn.synth.questions import CLEVR_TYPE_MIX

    labels = [TYPE_LABELS[t] for t in QUESTION_TYPES]
    columns = {"real CLEVR": [100 * CLEVR_TYPE_MIX[t] for t in QUESTION_TYPES]}
    for label, path in question_files.items():
        share = distributions(question_frame(load_questions(path)))["type"]
        columns[label] = [100 * float(share[name]) for name in labels]
    return pd.DataFrame(columns, index=pd.Index(labels, name="type"))
