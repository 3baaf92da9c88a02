"""The image cache: content, order, parallel = serial, resumption, errors, staleness."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from qgmrn.cli import main as cli_main
from qgmrn.data import cache as cache_mod
from qgmrn.data.cache import ImageCacheError, build_cache, cache_paths, load_image, open_cache

from .conftest import make_clevr_dir, write_image

SIZE = (16, 24)  # (H, W): a downscale of the 32x48 fixture images


def test_rows_are_the_resized_rgb_images_in_image_index_order(clevr_dir):
    (clevr_dir / "images" / "train" / "notes.txt").write_text("ignored")
    npy = build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)
    assert npy == clevr_dir / "cache" / "train_16x24.npy"
    arr = open_cache(clevr_dir, "train", SIZE)
    assert arr.shape == (5, 16, 24, 3) and arr.dtype == np.uint8 and not arr.flags.writeable
    for i in range(5):
        with Image.open(clevr_dir / "images" / "train" / f"CLEVR_train_{i:06d}.png") as im:
            want = np.asarray(im.convert("RGB").resize((24, 16), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(arr[i], want)
    index = json.loads(cache_paths(clevr_dir, "train", SIZE)[1].read_text())
    assert index["complete"] and index["count"] == 5
    assert index["filenames"][3] == "CLEVR_train_000003.png"


def test_pool_of_workers_writes_the_same_bytes_as_one_process(clevr_dir, tmp_path):
    serial = build_cache(clevr_dir, "train", SIZE, workers=0, progress=False, chunk_size=2)
    pooled = build_cache(
        clevr_dir, "train", SIZE, workers=2, cache_dir=tmp_path / "c2", progress=False,
        chunk_size=2,
    )  # fmt: skip
    assert serial.read_bytes() == pooled.read_bytes()


def test_interrupted_build_resumes_to_byte_identical_cache(clevr_dir, tmp_path, monkeypatch):
    reference = build_cache(clevr_dir, "train", SIZE, workers=0, cache_dir=tmp_path / "ref",
                            progress=False, chunk_size=2)  # fmt: skip
    calls = []
    real_load = cache_mod.load_image

    def dying_load(path, size):  # the "kill": the 4th decode never returns
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_load(path, size)

    monkeypatch.setattr(cache_mod, "load_image", dying_load)
    with pytest.raises(KeyboardInterrupt):
        build_cache(clevr_dir, "train", SIZE, workers=0, progress=False, chunk_size=2)
    with pytest.raises(ImageCacheError, match="incomplete.*qgmrn prepare"):
        open_cache(clevr_dir, "train", SIZE)

    calls.clear()
    monkeypatch.setattr(cache_mod, "load_image", lambda p, s: (calls.append(p), real_load(p, s))[1])
    npy = build_cache(clevr_dir, "train", SIZE, workers=0, progress=False, chunk_size=2)
    assert len(calls) == 3  # chunk 0 (images 0-1) was done; images 2-4 decoded again
    assert npy.read_bytes() == reference.read_bytes()
    assert not cache_paths(clevr_dir, "train", SIZE)[2].exists()  # progress file gone
    calls.clear()
    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False, chunk_size=2)
    assert calls == []  # a complete, fresh cache is not rebuilt


def test_a_subset_of_indices_is_cached_at_its_own_rows(tmp_path):
    """A CLEVR subset (here images 0, 3, 6, 9 of 10) keeps its indices: row == image_index."""
    root = make_clevr_dir(tmp_path, n_images=10)
    folder = root / "images" / "train"
    for i in range(10):
        if i % 3:
            (folder / f"CLEVR_train_{i:06d}.png").unlink()
    build_cache(root, "train", SIZE, workers=2, progress=False, chunk_size=2)
    arr = open_cache(root, "train", SIZE)
    assert arr.shape == (10, 16, 24, 3)
    for i in (0, 3, 6, 9):
        np.testing.assert_array_equal(arr[i], load_image(folder / f"CLEVR_train_{i:06d}.png", SIZE))
    assert not arr[1].any()  # an absent image's row stays zero
    assert list(cache_mod.cached_image_indices(root, "train", SIZE)) == [0, 3, 6, 9]


def test_a_question_about_an_absent_image_is_named(tmp_path):
    from qgmrn.data import ClevrQuestions, Vocab

    root = make_clevr_dir(tmp_path, n_images=4)
    (root / "images" / "train" / "CLEVR_train_000002.png").unlink()
    build_cache(root, "train", SIZE, workers=0, progress=False)  # the subset itself is fine
    questions = json.loads((root / "questions" / "CLEVR_train_questions.json").read_text())
    vocab = Vocab.build(questions["questions"])
    with pytest.raises(ValueError, match=r"question 4 is about image CLEVR_train_000002\.png"):
        ClevrQuestions(root, "train", vocab, SIZE)


def test_corrupt_image_is_named(clevr_dir):
    (clevr_dir / "images" / "train" / "CLEVR_train_000003.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageCacheError, match="cannot decode image .*CLEVR_train_000003.png"):
        build_cache(clevr_dir, "train", SIZE, workers=2, progress=False, chunk_size=2)
    with pytest.raises(ImageCacheError, match="CLEVR_train_000003.png"):
        load_image(clevr_dir / "images" / "train" / "CLEVR_train_000003.png", SIZE)


def test_open_refuses_a_missing_cache_with_the_prepare_hint(clevr_dir):
    hint = r"qgmrn prepare .* --image-size 16 24 --splits train"
    with pytest.raises(ImageCacheError, match=hint):
        open_cache(clevr_dir, "train", SIZE)


def test_changed_images_make_the_cache_stale_and_rebuild_it(clevr_dir):
    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)
    path = clevr_dir / "images" / "train" / "CLEVR_train_000001.png"
    write_image(path, seed=12345, size_wh=(50, 30))  # a regenerated data set
    with pytest.raises(ImageCacheError, match="other images"):
        open_cache(clevr_dir, "train", SIZE)
    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)
    np.testing.assert_array_equal(open_cache(clevr_dir, "train", SIZE)[1], load_image(path, SIZE))


def test_prepare_command_builds_every_split(clevr_dir, capsys):
    assert cli_main(["prepare", str(clevr_dir), "--image-size", "8", "8", "--workers", "1",
                     "--no-progress"]) == 0  # fmt: skip
    assert open_cache(clevr_dir, "train", (8, 8)).shape == (5, 8, 8, 3)
    assert open_cache(clevr_dir, "test", (8, 8)).shape == (5, 8, 8, 3)
    assert cli_main(["prepare", str(clevr_dir), "--size", "8", "8", "--splits", "val"]) == 1
    assert "no image folder" in capsys.readouterr().err  # --size: --image-size's first name
