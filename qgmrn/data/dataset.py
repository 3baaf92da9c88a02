"""CLEVR questions as tensors: the `Dataset`, its batches, and the `DataLoader` we use.

Dimension letters: B batch, T question length (tokens, with <START>/<END>), H W image size.

Every question is tokenised once, at construction, into a padded int64 array; images come from the
split's memory-mapped cache (`qgmrn.data.cache`), row == image_index. A batch is gathered by
`ClevrQuestions.__getitems__`, which `torch.utils.data.DataLoader` calls with the whole batch's
indices: one pass over the memory map in sorted order, no per-item tensors. Images stay uint8 and
channels-last in memory (a `(B, 3, H, W)` view of `(B, H, W, 3)` bytes) until they reach the
model's device, where `normalize_images` turns them into floats.
"""

from __future__ import annotations

import functools
import os
import random
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from qgmrn.data.cache import cached_image_indices, open_cache
from qgmrn.data.vocab import Vocab

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Batch:
    """One batch. `images` (B, 3, H, W) uint8; `questions` (B, T) long, 0-padded; `lengths`,
    `answers`, `subtypes`, `question_index` (B,) long (`answers`/`subtypes` -1 where unknown).

    Only where asked for (the stream's `object_maps`, for the auxiliary attribute loss, ours):
    `object_ids` (B, H, W) int16, the object seen at each input pixel (-1: the ground), and
    `object_attributes` (B, N, 4) long, each object's colour, shape, size and material indices
    (`qgmrn.data.attributes`; -1 rows pad scenes with fewer than N objects). None otherwise.
    """

    images: Tensor
    questions: Tensor
    lengths: Tensor
    answers: Tensor
    subtypes: Tensor
    question_index: Tensor
    object_ids: Tensor | None = None
    object_attributes: Tensor | None = None

    def _map(self, fn) -> Batch:
        return Batch(**{f.name: _apply(fn, getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = True) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Called by `DataLoader(pin_memory=True)`: page-locked copies for async host->GPU."""
        return self._map(lambda t: t.pin_memory())

    def __len__(self) -> int:
        return self.answers.shape[0]


def _apply(fn, t: Tensor | None) -> Tensor | None:
    return None if t is None else fn(t)


def load_question_file(path: Path, humans: bool | None = None) -> list[dict[str, Any]]:
    """The validated entries of a CLEVR question file, or of a CLEVR-Humans one (`humans`;
    by default when the file's name contains "humans")."""
    from qgmrn import clevr

    if humans is None:  # CLEVR-Humans files are named CLEVR-Humans-{split}.json
        humans = "humans" in path.name.lower()
    return clevr.load_humans_questions(path) if humans else clevr.load_questions(path)


def train_questions_path(
    data_dir: str | os.PathLike, questions_file: str | os.PathLike | None = None
) -> Path:
    """The training question file: `questions_file`, else the train split's."""
    if questions_file:
        return Path(questions_file)
    return Path(data_dir) / "questions" / "CLEVR_train_questions.json"


def build_vocab(data_dir: str | os.PathLike, questions_file: str | os.PathLike | None = None):
    """The vocabulary of the training questions of `data_dir` (or of `questions_file`)."""
    return Vocab.build(load_question_file(train_questions_path(data_dir, questions_file)))


class ClevrQuestions(Dataset):
    """The questions of `split` (default file `DATA_DIR/questions/CLEVR_{split}_questions.json`)
    with the images of `split` from the cache at `image_size = (H, W)`.

    `split` names the images too: every question must be about `CLEVR_{split}_NNNNNN.png`.
    `questions_file`: another question file on the same images, e.g. CLEVR-Humans (no programs:
    subtype -1); `humans` forces (True/False) the CLEVR-Humans reader, by default chosen when the
    file's name contains "humans". Test questions have no answer: answer -1. `entries`: the
    file's validated questions when the caller has read them already (`load_question_file`).
    Item: `(image uint8 (3, H, W), tokens long (T_i,), length, answer, subtype, question_index)`.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str,
        vocab: Vocab,
        image_size: Sequence[int],
        questions_file: str | os.PathLike | None = None,
        max_questions: int | None = None,
        *,
        humans: bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        entries: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        from qgmrn.clevr import SUBTYPES, question_subtype, relational_depth

        self.data_dir, self.split = Path(data_dir), split
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.cache_dir = cache_dir
        path = (
            Path(questions_file)
            if questions_file is not None
            else (self.data_dir / "questions" / f"CLEVR_{split}_questions.json")
        )
        self.questions_file = path
        # entries: the file's questions already read (fit builds the vocabulary from them)
        questions = list(entries) if entries is not None else load_question_file(path, humans)
        if max_questions is not None:
            questions = questions[:max_questions]
        n = len(questions)
        subtype_ids = {s: i for i, s in enumerate(SUBTYPES)}

        encoded = [vocab.encode_question(q["question"]) for q in questions]
        t_max = max((len(e) for e in encoded), default=2)
        self.tokens = np.zeros((n, t_max), dtype=np.int64)  # (N, T), 0 = <NULL> padding
        self.lengths = np.empty(n, dtype=np.int64)
        self.answers = np.full(n, -1, dtype=np.int64)
        self.subtypes = np.full(n, -1, dtype=np.int64)
        self.depths = np.full(n, -1, dtype=np.int64)  # relational depth; -1: no program
        self.image_index = np.empty(n, dtype=np.int64)
        self.question_index = np.empty(n, dtype=np.int64)
        for i, (q, e) in enumerate(zip(questions, encoded, strict=True)):
            self.tokens[i, : len(e)] = e
            self.lengths[i] = len(e)
            self.image_index[i] = q["image_index"]
            name = q.get("image_filename")
            if name is not None and name != f"CLEVR_{split}_{q['image_index']:06d}.png":
                raise ValueError(
                    f"{path}: question {i} is about image {name} (image_index "
                    f"{q['image_index']}), not an image of the {split!r} split this dataset reads"
                )
            self.question_index[i] = q.get("question_index", i)
            if q.get("answer") is not None:
                try:
                    self.answers[i] = vocab.encode_answer(q["answer"])
                except ValueError as err:
                    raise ValueError(f"{path}: question {i}: {err}") from None
            if q.get("program"):
                self.subtypes[i] = subtype_ids[question_subtype(q["program"])]
                self.depths[i] = relational_depth(q["program"])

        self._images: np.ndarray | None = None
        self._verify_cache = True  # check the cache against the images once, here
        images = self.images  # open now: a missing cache fails here, not in a worker
        if n and self.image_index.max() >= len(images):
            i = int(self.image_index.argmax())
            raise ValueError(
                f"{path}: question {i} refers to image_index {self.image_index[i]}, but the "
                f"{split} image cache holds {len(images)} images"
            )
        present = cached_image_indices(self.data_dir, split, self.image_size, cache_dir)
        if n and present is not None:  # a subset of the split's images: every one asked about?
            absent = ~np.isin(self.image_index, present)
            if absent.any():
                i = int(np.argmax(absent))
                k = int(self.image_index[i])
                folder = self.data_dir / "images" / split
                raise ValueError(
                    f"{path}: question {i} is about image CLEVR_{split}_{k:06d}.png (image_index "
                    f"{k}), which is not in {folder} (it holds {len(present)} images, indices "
                    f"{present[0]}..{present[-1]}); {int(absent.sum())} questions are about absent "
                    "images"
                )

    @property
    def images(self) -> np.ndarray:
        """The cache's read-only memory map (N_img, H, W, 3) uint8; opened lazily per process."""
        if self._images is None:
            self._images = open_cache(
                self.data_dir, self.split, self.image_size, self.cache_dir,
                verify=self._verify_cache,
            )  # fmt: skip
        return self._images

    def __getstate__(self) -> dict[str, Any]:
        # a pickled np.memmap would be a full in-memory copy: workers reopen the file instead
        state = self.__dict__.copy()
        state["_images"] = None
        state["_verify_cache"] = False  # verified in the parent; workers skip the file stats
        return state

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int, int, int, int]:
        length = int(self.lengths[i])
        image = torch.from_numpy(np.array(self.images[self.image_index[i]]))  # (H, W, 3)
        return (
            image.permute(2, 0, 1),  # (3, H, W), channels-last in memory
            torch.from_numpy(self.tokens[i, :length].copy()),
            length,
            int(self.answers[i]),
            int(self.subtypes[i]),
            int(self.question_index[i]),
        )

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        """A whole batch at once (the DataLoader's fast path): images read in sorted order."""
        idx = np.asarray(indices, dtype=np.int64)
        img_idx = self.image_index[idx]
        order = np.argsort(img_idx, kind="stable")
        h, w = self.image_size
        out = _empty_for_transfer((len(idx), h, w, 3), torch.uint8)
        out_np, images = out.numpy(), self.images
        for pos in order:  # sequential reads of the memory map, each row written in place
            out_np[pos] = images[img_idx[pos]]
        lengths = self.lengths[idx]
        t = int(lengths.max()) if len(idx) else 0
        return Batch(
            images=out.permute(0, 3, 1, 2),  # (B, 3, H, W)
            questions=torch.from_numpy(self.tokens[idx, :t]),
            lengths=torch.from_numpy(lengths),
            answers=torch.from_numpy(self.answers[idx]),
            subtypes=torch.from_numpy(self.subtypes[idx]),
            question_index=torch.from_numpy(self.question_index[idx]),
        )


def _empty_for_transfer(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """`torch.empty`, but in a DataLoader worker allocated in shared memory straight away, as
    torch's `default_collate` does: sending the batch to the main process then copies nothing
    (otherwise torch copies every tensor into a fresh shared segment on send)."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = int(np.prod(shape))
    try:
        storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel, device="cpu")
    except AttributeError:  # a torch without this (private, long-lived) path: copy on send
        return torch.empty(shape, dtype=dtype)
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


def collate(items: Sequence[tuple] | Batch) -> Batch:
    """Stack items into a `Batch` (questions padded with 0); a `Batch` passes through unchanged
    (what `ClevrQuestions.__getitems__` returns)."""
    if isinstance(items, Batch):
        return items
    images, tokens, lengths, answers, subtypes, qidx = zip(*items, strict=True)
    questions = torch.zeros((len(items), max(lengths)), dtype=torch.long)
    for row, tok in zip(questions, tokens, strict=True):
        row[: len(tok)] = tok
    return Batch(
        images=torch.stack([im.permute(1, 2, 0) for im in images]).permute(0, 3, 1, 2),
        questions=questions,
        lengths=torch.tensor(lengths, dtype=torch.long),
        answers=torch.tensor(answers, dtype=torch.long),
        subtypes=torch.tensor(subtypes, dtype=torch.long),
        question_index=torch.tensor(qidx, dtype=torch.long),
    )


@functools.lru_cache(maxsize=16)
def _affine(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    scale = torch.tensor([1.0 / (255.0 * s) for s in IMAGENET_STD], dtype=dtype)
    bias = torch.tensor(
        [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)], dtype=dtype
    )
    return scale.view(3, 1, 1).to(device), bias.view(3, 1, 1).to(device)


def normalize_images(images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 (or 0..255 float) images (..., 3, H, W) -> ImageNet-normalised `dtype`, same device.

    `(x / 255 - mean) / std` as one multiply-add, computed in float32 (float64 if asked) and cast
    to `dtype` last, so bfloat16 output loses nothing to the arithmetic.
    """
    if images.dim() < 3 or images.shape[-3] != 3:
        raise ValueError(f"expected images (..., 3, H, W), got shape {tuple(images.shape)}")
    work = torch.float64 if dtype == torch.float64 else torch.float32
    scale, bias = _affine(images.device, work)
    return torch.addcmul(bias, images.to(work), scale).to(dtype)


def ignore_interrupts(worker_id: int | None = None) -> None:
    """DataLoader worker init: ignore SIGINT and SIGTERM, which reach the whole process group
    (Ctrl-C) or every process of a run (`pkill -f`, a scheduler); the main process decides (a
    training stops after the step, `qgmrn.engine.interrupt`, then shuts the workers down)."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # those `qgmrn.engine.interrupt` catches
        signal.signal(sig, signal.SIG_IGN)


def shutdown_workers(iterator) -> None:
    """Stop the worker processes of a DataLoader `iterator` now (nothing for a single-process
    one; again: nothing). Workers ignore SIGTERM (`ignore_interrupts`), so when an exception
    leaves the training loop while its traceback still holds the iterator, interpreter exit
    would otherwise wait on them forever (multiprocessing's exit handler terminates, then joins)."""
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def closing_loader(loader: DataLoader) -> Iterator:
    """`loader`'s items, its workers shut down however the iteration ends (`shutdown_workers`)."""
    it = iter(loader)
    try:
        yield from it
    finally:
        shutdown_workers(it)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker init: numpy and random from the worker's torch seed, which the loader
    derives from its own seeded generator (so workers are deterministic per epoch)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
    ignore_interrupts()  # Ctrl-C reaches the whole process group: the main process decides


def usable_workers(num_workers: int) -> int:
    """`num_workers` capped at this machine's cores: a run's config may come from a larger
    machine (the reference runs' 4 stream workers, from a 16-core GPU host), and more worker
    processes than cores only slow a loader (and make torch warn)."""
    return min(num_workers, os.cpu_count() or 1)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    *,
    sampler: Sampler | None = None,
    device: torch.device | str | None = None,
    pin_memory: bool | None = None,
    prefetch_factor: int = 4,
    persistent_workers: bool = True,
) -> DataLoader:
    """A `DataLoader` yielding `Batch`es: seeded shuffling (or `sampler`'s order), seeded
    workers, persistent workers, and pinned memory only when the batches go to a CUDA device
    (`device`, by default CUDA if available). The loader never draws from the global RNG."""
    if pin_memory is None:
        target = torch.device(device) if device is not None else None
        pin_memory = target.type == "cuda" if target else torch.cuda.is_available()
    generator = torch.Generator()
    generator.manual_seed(seed)
    num_workers = usable_workers(num_workers)  # batches do not depend on the count
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra.update(
            persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor,
            worker_init_fn=seed_worker,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=generator,
        **extra,
    )
