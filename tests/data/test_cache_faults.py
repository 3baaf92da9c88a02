"""The image cache under faults: what a killed build leaves, an edited index, a cache built at
another image size or copied from elsewhere. Each is refused with the command that fixes it, or
repaired by the rerun, never read as if it were right."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from qgmrn.data import cache as cache_mod
from qgmrn.data.cache import ImageCacheError, build_cache, cache_paths, open_cache

SIZE = (16, 24)  # (H, W)
HINT = r"qgmrn prepare .* --image-size 16 24 --splits train"


def _reference(clevr_dir, tmp_path):
    return build_cache(
        clevr_dir, "train", SIZE, workers=0, cache_dir=tmp_path / "ref", progress=False
    ).read_bytes()


def _listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_rerun_removes_what_a_killed_build_left(clevr_dir, tmp_path):
    """Killed after the last index write (a progress file left) or inside a JSON write
    (temporary files left): the rerun leaves exactly the files of an uninterrupted build."""
    ref = _reference(clevr_dir, tmp_path)
    npy, index, progress = cache_paths(clevr_dir, "train", SIZE)
    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)
    wanted = _listing(npy.parent)
    progress.write_text('{"fingerprint": "x", "done": [0]}')
    (npy.parent / f".{index.name}.0123abcd.tmp").write_text('{"format": "qgmrn-im')
    (npy.parent / f".{progress.name}.89abcdef.tmp").write_text("")
    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)
    assert _listing(npy.parent) == wanted and npy.read_bytes() == ref


def test_killed_before_the_array_header_was_written(clevr_dir, tmp_path):
    """An empty .npy beside an incomplete index (killed between creating the array file and
    writing its header): the rerun starts that split afresh instead of failing on it."""
    ref = _reference(clevr_dir, tmp_path)
    npy, index, _ = cache_paths(clevr_dir, "train", SIZE)
    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)
    meta = json.loads(index.read_text())
    index.write_text(json.dumps({**meta, "complete": False}))
    npy.write_bytes(b"")
    with pytest.raises(ImageCacheError, match="incomplete"):
        open_cache(clevr_dir, "train", SIZE)
    assert build_cache(clevr_dir, "train", SIZE, workers=0, progress=False).read_bytes() == ref
    npy.write_bytes(npy.read_bytes()[:100])  # header cut short
    index.write_text(json.dumps({**meta, "complete": False}))
    assert build_cache(clevr_dir, "train", SIZE, workers=0, progress=False).read_bytes() == ref


TAMPERS = {
    "size": lambda m: {**m, "size": [8, 12]},
    "shape": lambda m: {**m, "shape": [m["shape"][0] + 1, *m["shape"][1:]]},
    "format": lambda m: {**m, "format": "someone-elses-cache"},
    "version": lambda m: {**m, "version": 99},
    "split": lambda m: {**m, "split": "val"},
    "dtype": lambda m: {**m, "dtype": "float32"},
    "count": lambda m: {**m, "count": m["count"] - 1},
    "filenames": lambda m: {**m, "filenames": m["filenames"][::-1]},
    "indices": lambda m: {**m, "indices": [0, 1, 2, 3, 7]},
    "fingerprint": lambda m: {**m, "fingerprint": "0" * 64},
}


@pytest.mark.parametrize("field", sorted(TAMPERS))
def test_an_edited_index_is_refused_and_prepare_rebuilds(clevr_dir, tmp_path, field):
    ref = _reference(clevr_dir, tmp_path)
    npy, index, _ = cache_paths(clevr_dir, "train", SIZE)
    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)
    meta = json.loads(index.read_text())
    index.write_text(json.dumps(TAMPERS[field](meta)))
    with pytest.raises(ImageCacheError, match=HINT) as e:
        open_cache(clevr_dir, "train", SIZE)
    assert "train_16x24" in str(e.value)
    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)  # what the message says
    assert open_cache(clevr_dir, "train", SIZE).shape == (5, 16, 24, 3)
    assert npy.read_bytes() == ref and json.loads(index.read_text()) == meta


def test_an_unreadable_index_or_array_is_refused(clevr_dir):
    npy, index, _ = cache_paths(clevr_dir, "train", SIZE)
    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)
    good = index.read_text()
    index.write_text(good[: len(good) // 2])
    with pytest.raises(ImageCacheError, match=rf"not readable JSON.*{HINT}"):
        open_cache(clevr_dir, "train", SIZE)
    index.write_text(good)
    npy.write_bytes(npy.read_bytes()[:1000])
    with pytest.raises(ImageCacheError, match=rf"train_16x24\.npy.*{HINT}"):
        open_cache(clevr_dir, "train", SIZE)


def test_a_cache_built_at_another_size_is_never_read_as_this_one(clevr_dir, tmp_path):
    """A 16x24 cache renamed (or copied) to the 8x12 names: refused for 8x12, whether or not
    the images are at hand to check it; `build_cache` replaces it with a true 8x12 cache."""
    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)
    small = (8, 12)
    src, dst = cache_paths(clevr_dir, "train", SIZE), cache_paths(clevr_dir, "train", small)
    for a, b in zip(src[:2], dst[:2], strict=True):
        shutil.copy(a, b)
    with pytest.raises(ImageCacheError, match=r"size is \[16, 24\], expected \[8, 12\]"):
        open_cache(clevr_dir, "train", small)

    elsewhere = tmp_path / "copied"  # the cache folder alone, without the images
    shutil.copytree(clevr_dir / "cache", elsewhere)
    with pytest.raises(ImageCacheError, match=r"size is \[16, 24\].*qgmrn prepare"):
        open_cache(tmp_path / "no-images", "train", small, cache_dir=elsewhere)
    assert open_cache(tmp_path / "no-images", "train", SIZE, cache_dir=elsewhere).shape[1:3] == (
        16,
        24,
    )

    build_cache(clevr_dir, "train", small, workers=0, progress=False)
    assert open_cache(clevr_dir, "train", small).shape == (5, 8, 12, 3)


def test_the_dataset_refuses_a_cache_at_another_size(clevr_dir):
    from qgmrn.data import ClevrQuestions, Vocab

    build_cache(clevr_dir, "train", SIZE, workers=0, progress=False)
    for a, b in zip(
        cache_paths(clevr_dir, "train", SIZE)[:2],
        cache_paths(clevr_dir, "train", (32, 48))[:2],
        strict=True,
    ):
        shutil.move(a, b)
    questions = json.loads((clevr_dir / "questions" / "CLEVR_train_questions.json").read_text())
    vocab = Vocab.build(questions["questions"])
    with pytest.raises(ImageCacheError, match=r"size is \[16, 24\], expected \[32, 48\]"):
        ClevrQuestions(clevr_dir, "train", vocab, (32, 48))


def test_index_problem_accepts_what_build_cache_writes(tmp_path):
    from .conftest import make_clevr_dir

    root = make_clevr_dir(tmp_path, n_images=6)
    (root / "images" / "train" / "CLEVR_train_000002.png").unlink()  # a subset
    build_cache(root, "train", SIZE, workers=0, progress=False)
    meta = json.loads(cache_paths(root, "train", SIZE)[1].read_text())
    assert meta["indices"] == [0, 1, 3, 4, 5]
    assert cache_mod.index_problem(meta, "train", SIZE) is None
    assert np.asarray(open_cache(root, "train", SIZE)[2]).max() == 0
