"""Tests of `qgmrn.engine` (fit, the loop, evaluate, finetune, checkpoint, schedules) and
`qgmrn.metrics`.

`make_tiny_clevr` writes a minute CLEVR-layout folder (one coloured square per image, questions
whose answers depend on its colour) so these tests need neither the renderer nor a download.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

from qgmrn.config import ExperimentConfig, get_config

COLORS = {"red": (200, 30, 30), "blue": (30, 30, 200)}


def _program(last: str) -> list[dict]:
    nodes = [
        {"function": "scene", "inputs": [], "value_inputs": []},
        {"function": "filter_color", "inputs": [0], "value_inputs": ["red"]},
    ]
    if last.startswith("query"):
        nodes.append({"function": "unique", "inputs": [1], "value_inputs": []})
    nodes.append({"function": last, "inputs": [len(nodes) - 1], "value_inputs": []})
    return nodes


def make_tiny_clevr(
    root: Path, n_images: dict[str, int] | None = None, humans: bool = False, seed: int = 0
) -> Path:
    """`root/images/{split}/*.png` (48x32) and `root/questions/CLEVR_{split}_questions.json`,
    4 questions an image; with `humans`, `CLEVR-Humans-{train,val}.json` in `root/questions`."""
    n_images = n_images or {"train": 8, "val": 4}
    rng = np.random.default_rng(seed)
    for split, n in n_images.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "questions").mkdir(parents=True, exist_ok=True)
        questions, human = [], []
        for i in range(n):
            color = "red" if rng.random() < 0.5 else "blue"
            img = np.full((32, 48, 3), 128, np.uint8)
            x, y = rng.integers(0, 32), rng.integers(0, 16)
            img[y : y + 16, x : x + 16] = COLORS[color]
            name = f"CLEVR_{split}_{i:06d}.png"
            Image.fromarray(img).save(root / "images" / split / name)
            red = color == "red"
            for text, answer, last in (
                ("Is there a red thing?", "yes" if red else "no", "exist"),
                ("How many red things are there?", "1" if red else "0", "count"),
                ("What color is the square?", color, "query_color"),
                ("What size is the red thing?", "large", "query_size"),
            ):
                questions.append(
                    {
                        "image_index": i,
                        "image_filename": name,
                        "split": split,
                        "question_index": len(questions),
                        "question": text,
                        "answer": answer,
                        "question_family_index": 0,
                        "program": _program(last),
                    }
                )
            human.append(
                {
                    "image_index": i,
                    "image_filename": name,
                    "split": split,
                    "question": "Does the picture show a crimson square or a violet one?"
                    if i % 2
                    else "Is the square crimson?",
                    "answer": "yes" if red else "no",
                }
            )
        info = {"split": split, "version": "1.0", "date": "2017", "license": "CC BY 4.0"}
        (root / "questions" / f"CLEVR_{split}_questions.json").write_text(
            json.dumps({"info": info, "questions": questions})
        )
        if humans:
            (root / "questions" / f"CLEVR-Humans-{split}.json").write_text(
                json.dumps({"questions": human})
            )
    return root


def tiny_config(preset: str = "brn_c8", **train) -> ExperimentConfig:
    """The smoke profile of `preset`, with train fields replaced."""
    cfg = get_config(preset, "smoke")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))
