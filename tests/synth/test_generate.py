"""The data set writer and `qgmrn generate` (qgmrn.synth.generate / qgmrn.commands.generate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from qgmrn.clevr import (
    ANSWERS,
    execute_program,
    load_humans_questions,
    load_questions,
    load_scenes,
    read_info,
)
from qgmrn.cli import main as cli_main
from qgmrn.commands.generate import _defaults
from qgmrn.config import get_config
from qgmrn.synth.generate import generate_dataset


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_and_counts(mini_clevr_dir, mini_clevr_settings):
    root = mini_clevr_dir
    for split in ("train", "val", "test"):
        n = mini_clevr_settings[f"{split}_scenes"]
        images = sorted((root / "images" / split).glob("*.png"))
        assert [p.name for p in images] == [f"CLEVR_{split}_{i:06d}.png" for i in range(n)]
        with Image.open(images[0]) as im:
            assert im.size == mini_clevr_settings["render_size"] and im.mode == "RGBA"
    assert (root / "scenes" / "CLEVR_test_scenes_hidden.json").exists()
    assert not (root / "scenes" / "CLEVR_test_scenes.json").exists()  # as the real data


@pytest.mark.parametrize("split", ["train", "val"])
def test_answers_rederived_from_saved_scenes(mini_clevr_dir, mini_clevr_settings, split):
    scenes = load_scenes(mini_clevr_dir / "scenes" / f"CLEVR_{split}_scenes.json")
    questions = load_questions(mini_clevr_dir / "questions" / f"CLEVR_{split}_questions.json")
    assert [s["image_index"] for s in scenes] == list(range(len(scenes)))
    assert [q["question_index"] for q in questions] == list(range(len(questions)))
    assert len(questions) == mini_clevr_settings["questions_per_scene"] * len(scenes)
    for q in questions:
        scene = scenes[q["image_index"]]
        assert q["image_filename"] == scene["image_filename"] and q["split"] == split
        assert 0 <= q["question_family_index"] < 90
        assert execute_program(q["program"], scene) == q["answer"]
    info = read_info(mini_clevr_dir / "scenes" / f"CLEVR_{split}_scenes.json")
    assert info["framing"].startswith("close") and info["seed"] == 0 and info["split"] == split


def test_test_split_hides_answers(mini_clevr_dir, mini_clevr_settings):
    public = load_questions(mini_clevr_dir / "questions" / "CLEVR_test_questions.json")
    hidden = load_questions(mini_clevr_dir / "questions" / "CLEVR_test_answers.json")
    scenes = load_scenes(mini_clevr_dir / "scenes" / "CLEVR_test_scenes_hidden.json")
    assert public and len(public) == len(hidden)
    for p, h in zip(public, hidden, strict=True):
        assert set(p) == {"image_index", "image_filename", "split", "question_index", "question"}
        assert p["question"] == h["question"] and p["question_index"] == h["question_index"]
        assert execute_program(h["program"], scenes[h["image_index"]]) == h["answer"]


def test_humans_files_have_no_programs(mini_clevr_dir, mini_clevr_settings):
    for split in ("train", "val", "test"):
        path = mini_clevr_dir / "CLEVR-Humans" / f"CLEVR-Humans-{split}.json"
        questions = load_humans_questions(path)
        assert len(questions) == mini_clevr_settings[f"{split}_scenes"] * 2  # half of 4 per scene
        for q in questions:
            assert "program" not in q and "question_family_index" not in q
            assert q["answer"] in ANSWERS and q["split"] == split
        assert "synthetic" in read_info(path)["note"]


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    """Two processes or one: byte-identical files (the pool only changes who renders)."""
    kw = dict(
        train_scenes=10,
        val_scenes=3,
        test_scenes=2,
        questions_per_scene=3,
        render_size=(32, 24),
        max_objects=5,
        framing="close",
        humans=True,
        progress=False,
    )
    generate_dataset(tmp_path / "one", workers=1, **kw)
    generate_dataset(tmp_path / "two", workers=2, **kw)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(one) == 10 + 3 + 2 + 3 + 4 + 3 + 1
    assert one == two


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(max_objects=11), "at most 10"),
        (dict(min_objects=5, max_objects=4), "raise max_objects"),
        (dict(questions_per_scene=0), "1..90"),
        (dict(render_size=(4, 4)), "at least 8x8"),
        (dict(train_scenes=0, val_scenes=0), "nothing to generate"),
        (dict(framing="fisheye"), "framing"),
        (dict(workers=0), "workers"),
    ],
)
def test_impossible_settings_say_what_to_change(tmp_path, change, message):
    kw = dict(train_scenes=1, val_scenes=1, progress=False) | change
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path, **kw)


def test_cli_generate(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(
        [
            "generate",
            str(out),
            "--train-scenes",
            "2",
            "--val-scenes",
            "1",
            "--questions-per-scene",
            "2",
            "--render-size",
            "32",
            "24",
            "--framing",
            "close",
            "--max-objects",
            "4",
            "--no-progress",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["questions"] == 4
    assert len(load_questions(out / "questions" / "CLEVR_val_questions.json")) == 2
    assert json.loads((out / "summary.json").read_text())["image_size"] == [32, 24]  # (W, H)
    assert (
        cli_main(
            [
                "generate",
                str(out),
                "--train-scenes",
                "1",
                "--val-scenes",
                "1",
                "--max-objects",
                "20",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "at most 10" in capsys.readouterr().err


def test_the_first_name_of_render_size_still_works_with_a_note(capsys):
    """`qgmrn generate --image-size W H` (its first name) sets the render size and says that
    `--image-size` means the network input (H, W) elsewhere."""
    import argparse

    from qgmrn.commands import generate

    parser = argparse.ArgumentParser()
    generate.configure(parser)
    assert parser.parse_args(["out", "--render-size", "32", "24"]).render_size == [32, 24]
    assert capsys.readouterr().err == ""
    assert parser.parse_args(["out", "--image-size", "32", "24"]).render_size == [32, 24]
    err = capsys.readouterr().err
    assert "--render-size W H" in err and len(err.splitlines()) == 1


def test_profile_defaults_come_from_config():
    smoke = get_config("brn_c16", "smoke").data
    d = _defaults("smoke")
    assert (d.train_scenes, d.render_size, d.framing) == (
        smoke.train_scenes,
        smoke.render_size,
        smoke.framing,
    )


@pytest.mark.slow
def test_every_split_has_clevrs_question_type_mix(tmp_path):
    """200 scenes per split (demo objects, 10 questions): each split's type shares within 1.5
    points of each other and within 3 of real CLEVR's (docs/mini-clevr.md)."""
    from qgmrn.analysis.dataset_stats import type_mix_table

    generate_dataset(
        tmp_path, train_scenes=200, val_scenes=200, test_scenes=200, render_size=(24, 16),
        min_objects=3, max_objects=6, framing="close", progress=False,
    )  # fmt: skip
    q = tmp_path / "questions"
    table = type_mix_table(
        {
            "train": q / "CLEVR_train_questions.json",
            "val": q / "CLEVR_val_questions.json",
            "test": q / "CLEVR_test_answers.json",
        }
    )
    splits = table[["train", "val", "test"]]
    assert (splits.max(axis=1) - splits.min(axis=1)).max() < 1.5, table
    assert (splits.sub(table["real CLEVR"], axis=0).abs().max(axis=1)).max() < 3.0, table
