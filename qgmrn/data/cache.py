"""Decoded, resized images of one split in one memory-mapped uint8 array.

Decoding a 480x320 PNG costs milliseconds; a training epoch reads every image about ten times (CLEVR
has ~10 questions per image), so we decode once: `build_cache` writes
`DATA_DIR/cache/{split}_{H}x{W}.npy`, an `.npy` file holding an array `(N, H, W, 3)` uint8 whose
row `i` is image `CLEVR_{split}_{i:06d}.png` (row == `image_index`), plus a JSON index beside it.
A folder holding a subset of the indices (every tenth CLEVR image, say) gets N = largest index + 1
rows of which only the present ones are written (the file is sparse on disk); the index lists
them (`indices`), and a question about an absent image is refused by the dataset.
`open_cache` maps it read-only; the data loader then gathers a batch with one fancy index.

Resumable: the `.npy` is allocated first; images are written in chunks, each chunk flushed to disk
before it is recorded in `{split}_{H}x{W}.progress.json`. A killed run skips the recorded chunks and
redoes the rest; decoding is deterministic, so the result is byte-identical to an uninterrupted run.
The index records a fingerprint of the source files (name, size, mtime); a cache whose images have
changed since (a regenerated mini-CLEVR) is rebuilt by `build_cache` and refused by `open_cache`.
A killed build leaves no file that changes the rerun's output: the temporary files of its JSON
writes and a leftover progress file are removed by the rerun.

`open_cache` checks the index against the request and against itself before mapping the array
(format, version, split, size, shape, names and indices of the rows), so an index edited by hand
or a cache copied from elsewhere, or built at another image size and renamed, is refused with a
message saying to rebuild it (`qgmrn prepare`), instead of feeding the model the wrong pixels.

RGBA -> RGB drops the alpha channel (CLEVR's alpha is opaque); resizing is PIL bilinear, which
widens its kernel when downscaling (antialiased).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from qgmrn.fileio import atomic_write_json, remove_temp_files

FORMAT = "qgmrn-image-cache"
VERSION = 1
DEFAULT_CHUNK = 64  # images per unit of work and of resumption


class ImageCacheError(RuntimeError):
    """A cache that cannot be built or used; the message says which file and what to do."""


def _name_re(split: str) -> re.Pattern[str]:
    return re.compile(rf"^CLEVR_{re.escape(split)}_(\d+)\.png$")


def cache_paths(
    data_dir: str | os.PathLike,
    split: str,
    size: Sequence[int],
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, Path, Path]:
    """`(array .npy, index .json, progress .json)` of a split's cache at `size = (H, W)`."""
    h, w = (int(s) for s in size)
    root = Path(cache_dir) if cache_dir is not None else Path(data_dir) / "cache"
    stem = f"{split}_{h}x{w}"
    return root / f"{stem}.npy", root / f"{stem}.json", root / f"{stem}.progress.json"


def list_images(data_dir: str | os.PathLike, split: str) -> dict[int, Path]:
    """image_index -> PNG of `DATA_DIR/images/{split}/`, in index order.

    The indices need not be contiguous: a subset of CLEVR (every tenth image, a published
    sample) keeps its own indices, and the cache maps exactly those (`build_cache`).
    """
    folder = Path(data_dir) / "images" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder {folder}")
    pattern = _name_re(split)
    found: dict[int, Path] = {}
    for entry in os.scandir(folder):
        m = pattern.match(entry.name)
        if m:
            found[int(m.group(1))] = Path(entry.path)
    if not found:
        raise FileNotFoundError(f"no CLEVR_{split}_NNNNNN.png images in {folder}")
    return {i: found[i] for i in sorted(found)}


def _fingerprint(paths: Sequence[Path]) -> str:
    """A digest of the source files' names, sizes and modification times."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def load_image(path: str | os.PathLike, size: Sequence[int]) -> np.ndarray:
    """One image as RGB uint8 `(H, W, 3)`, resized (bilinear, antialiased) to `size = (H, W)`."""
    h, w = (int(s) for s in size)
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")  # RGBA: alpha dropped; P/L: expanded
            if im.size != (w, h):
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing image {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageCacheError(f"cannot decode image {path}: {e}") from None


def _fill_chunk(job: tuple[str, int, list[str], list[int]]) -> int:
    """Decode a chunk of images into their rows (row == image_index) of the .npy, flush,
    return the chunk id."""
    npy, chunk_id, paths, rows = job
    arr = np.load(npy, mmap_mode="r+")
    h, w = arr.shape[1:3]
    for row, p in zip(rows, paths, strict=True):
        arr[row] = load_image(p, (h, w))
    arr.flush()  # on disk before the parent records the chunk as done
    del arr
    return chunk_id


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def build_cache(
    data_dir: str | os.PathLike,
    split: str,
    size: Sequence[int] = (224, 224),
    workers: int = 2,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
) -> Path:
    """Build (or finish, or confirm) the cache of `split` at `size = (H, W)`; returns the .npy.

    `workers <= 1` decodes in this process; more uses a `multiprocessing.Pool` whose workers
    write their chunk straight into the memory map (no image crosses a pipe).
    """
    h, w = (int(s) for s in size)
    npy, index_path, progress_path = cache_paths(data_dir, split, (h, w), cache_dir)
    found = list_images(data_dir, split)
    indices, paths = list(found), list(found.values())
    n = indices[-1] + 1  # rows: row == image_index; absent rows stay zero (a sparse file)
    index = {
        "format": FORMAT,
        "version": VERSION,
        "split": split,
        "size": [h, w],
        "shape": [n, h, w, 3],
        "dtype": "uint8",
        "count": len(paths),
        "chunk_size": int(chunk_size),
        "fingerprint": _fingerprint(paths),
        "filenames": [p.name for p in paths],
    }
    if len(paths) != n:  # a subset: name the rows that hold images
        index["indices"] = indices
    old = _read_json(index_path)
    same = (  # every field but "complete" as this build would write it (no field added)
        isinstance(old, dict)
        and {k: v for k, v in old.items() if k != "complete"} == index
        and npy.exists()
    )
    # what a build killed at any moment can leave: temporary JSON files, a progress file
    leftovers = [index_path.name, progress_path.name]
    if same and old.get("complete"):
        progress_path.unlink(missing_ok=True)  # killed after the last index write
        remove_temp_files(npy.parent, leftovers)
        return npy

    npy.parent.mkdir(parents=True, exist_ok=True)
    remove_temp_files(npy.parent, leftovers)
    done: set[int] = set()
    if same:
        prog = _read_json(progress_path)
        if isinstance(prog, dict) and prog.get("fingerprint") == index["fingerprint"]:
            done = {int(c) for c in prog.get("done", [])}
        try:  # the array must still be there with the right shape
            arr = np.load(npy, mmap_mode="r")
            ok = arr.shape == (n, h, w, 3) and arr.dtype == np.uint8
            del arr
        except (OSError, ValueError, EOFError):  # EOFError: killed before the header was written
            ok = False
        if not ok:
            same, done = False, set()
    if not same:  # start afresh
        progress_path.unlink(missing_ok=True)
        atomic_write_json(index_path, {**index, "complete": False}, fsync=False)
        arr = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(n, h, w, 3))
        del arr

    count = len(paths)
    chunks = [(c, c * chunk_size) for c in range((count + chunk_size - 1) // chunk_size)]
    jobs = [
        (str(npy), c, [str(p) for p in paths[s : s + chunk_size]], indices[s : s + chunk_size])
        for c, s in chunks
        if c not in done
    ]
    done_images = sum(min(chunk_size, count - c * chunk_size) for c in done)
    bar = tqdm(
        total=count,
        initial=done_images,
        unit="img",
        desc=f"cache {split} {h}x{w}",
        disable=not progress,
    )

    def record(chunk_id: int) -> None:
        done.add(chunk_id)
        atomic_write_json(
            progress_path, {"fingerprint": index["fingerprint"], "done": sorted(done)}, fsync=False
        )
        bar.update(min(chunk_size, count - chunk_id * chunk_size))

    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                record(_fill_chunk(job))
        else:
            with Pool(min(workers, len(jobs))) as pool:
                for chunk_id in pool.imap_unordered(_fill_chunk, jobs):
                    record(chunk_id)
    finally:
        bar.close()
    atomic_write_json(index_path, {**index, "complete": True}, fsync=False)
    progress_path.unlink(missing_ok=True)
    return npy


def open_cache(
    data_dir: str | os.PathLike,
    split: str,
    size: Sequence[int],
    cache_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> np.memmap:
    """The read-only memory map `(N, H, W, 3)` uint8 of a complete cache; row == image_index.

    `verify`: when the source images are still on disk, refuse a cache built from other images.
    """
    h, w = (int(s) for s in size)
    npy, index_path, _ = cache_paths(data_dir, split, (h, w), cache_dir)
    hint = f"run `qgmrn prepare {data_dir} --image-size {h} {w} --splits {split}`"
    index = _read_json(index_path)
    if not isinstance(index, dict) or not npy.exists():
        if index_path.exists() and npy.exists():
            raise ImageCacheError(
                f"image cache index {index_path} is not readable JSON (damaged or edited); "
                f"{hint} to rebuild the cache"
            )
        raise ImageCacheError(f"no image cache {npy} for split {split!r} at {h}x{w}; {hint}")
    problem = index_problem(index, split, (h, w))
    if problem:
        raise ImageCacheError(
            f"image cache index {index_path} does not describe a {h}x{w} cache of split "
            f"{split!r}: {problem} (edited, damaged, or a cache from elsewhere); {hint} to "
            "rebuild it"
        )
    if not index.get("complete"):
        raise ImageCacheError(f"image cache {npy} is incomplete (interrupted build?); {hint}")
    if verify and (Path(data_dir) / "images" / split).is_dir():
        try:
            paths = list(list_images(data_dir, split).values())
            fresh = _fingerprint(paths) == index.get("fingerprint")
        except FileNotFoundError:
            fresh = False
        if not fresh:
            raise ImageCacheError(
                f"image cache {npy} was built from other images than those now in "
                f"{Path(data_dir) / 'images' / split}; {hint}"
            )
    try:
        arr = np.load(npy, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        raise ImageCacheError(f"image cache {npy} is not a readable .npy file ({e}); {hint}") from e
    if arr.shape != tuple(index["shape"]) or arr.dtype != np.uint8:
        raise ImageCacheError(
            f"image cache {npy} holds {arr.dtype} {arr.shape}, not the uint8 "
            f"{tuple(index['shape'])} its index {index_path.name} describes; {hint} to rebuild it"
        )
    return arr


def index_problem(index: dict, split: str, size: Sequence[int]) -> str | None:
    """What is wrong with a cache index for `split` at `size = (H, W)`, or None.

    Checks the index against the request and against itself (the rows it names and the
    file names of those rows), as `build_cache` writes it.
    """
    h, w = (int(s) for s in size)
    expect = {"format": FORMAT, "version": VERSION, "split": split, "size": [h, w]}
    expect["dtype"] = "uint8"
    for key, want in expect.items():
        if index.get(key) != want:
            return f"{key} is {index.get(key)!r}, expected {want!r}"
    shape, count, names = index.get("shape"), index.get("count"), index.get("filenames")
    if not (isinstance(shape, list) and len(shape) == 4 and shape[1:] == [h, w, 3]):
        return f"shape is {shape!r}, expected [N, {h}, {w}, 3]"
    n = shape[0]
    if not (isinstance(n, int) and n >= 1 and isinstance(count, int) and 1 <= count <= n):
        return f"shape {shape!r} and count {count!r} do not agree"
    if not (isinstance(names, list) and len(names) == count):
        return f"its file names do not list {count} images"
    rows = index.get("indices", list(range(n)) if count == n else None)
    if not (
        isinstance(rows, list)
        and len(rows) == count
        and all(isinstance(i, int) for i in rows)
        and all(0 <= a < b for a, b in zip(rows, rows[1:], strict=False))
        and (not rows or (rows[0] >= 0 and rows[-1] < n))
    ):
        return f"its row indices do not fit {count} images in {n} rows"
    pattern = _name_re(split)
    for name, row in zip(names, rows, strict=True):
        m = pattern.fullmatch(str(name))
        if m is None or int(m.group(1)) != row:
            return f"file {name!r} is listed at row {row}"
    return None


def cached_image_indices(
    data_dir: str | os.PathLike,
    split: str,
    size: Sequence[int],
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray | None:
    """The image indices a complete cache holds, or None when it holds every row 0..N-1."""
    _, index_path, _ = cache_paths(data_dir, split, size, cache_dir)
    index = _read_json(index_path)
    if not isinstance(index, dict) or "indices" not in index:
        return None
    return np.asarray(index["indices"], dtype=np.int64)
