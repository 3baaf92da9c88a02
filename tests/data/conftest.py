"""Fixtures of the `qgmrn.data` tests: a tiny CLEVR-layout folder written by hand."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# (question, answer, program's last function): programs are scene -> filter -> last
QUESTIONS = [
    ("How many red things are there?", "2", "count"),
    ("Are there any cubes?", "yes", "exist"),
    ("What is the size of the red thing; is it large?", "large", "query_size"),
]


def write_image(path: Path, seed: int, size_wh: tuple[int, int] = (48, 32)) -> np.ndarray:
    """A random RGBA PNG (opaque, as CLEVR's); returns its RGBA pixels."""
    rgba = np.random.default_rng(seed).integers(0, 256, (size_wh[1], size_wh[0], 4), np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(path)
    return rgba


def _program(last: str) -> list[dict]:
    nodes = [
        {"function": "scene", "inputs": [], "value_inputs": []},
        {"function": "filter_color", "inputs": [0], "value_inputs": ["red"]},
    ]
    if last.startswith("query"):
        nodes.append({"function": "unique", "inputs": [1], "value_inputs": []})
    nodes.append({"function": last, "inputs": [len(nodes) - 1], "value_inputs": []})
    return nodes


def make_clevr_dir(root: Path, n_images: int = 5, splits: tuple[str, ...] = ("train",)) -> Path:
    """`root/images/{split}/CLEVR_{split}_NNNNNN.png` and the question files; 2 questions an
    image; the test split without answers and programs."""
    for split in splits:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "questions").mkdir(parents=True, exist_ok=True)
        questions = []
        for i in range(n_images):
            name = f"CLEVR_{split}_{i:06d}.png"
            write_image(root / "images" / split / name, seed=zlib.crc32(name.encode()))
            for k in range(2):
                text, answer, last = QUESTIONS[(i + k) % len(QUESTIONS)]
                q = {
                    "image_index": i,
                    "image_filename": name,
                    "split": split,
                    "question_index": len(questions),
                    "question": text,
                }
                if split != "test":
                    q.update(question_family_index=0, answer=answer, program=_program(last))
                questions.append(q)
        info = {"split": split, "version": "1.0", "date": "2017", "license": "CC BY 4.0"}
        (root / "questions" / f"CLEVR_{split}_questions.json").write_text(
            json.dumps({"info": info, "questions": questions})
        )
    return root


@pytest.fixture
def clevr_dir(tmp_path: Path) -> Path:
    return make_clevr_dir(tmp_path / "clevr", n_images=5, splits=("train", "test"))
