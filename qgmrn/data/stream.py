"""A training stream of fresh mini-CLEVR scenes, rendered and asked about inside the DataLoader.

Dimension letters: B batch (questions), T question length, H W image size, S scenes per item.

A fixed set of a few thousand images is memorised long before it is understood (measured: FiLM
reached 95% training accuracy on 5,000 scenes while validation sat below 50%). The stream makes
every training batch from scenes that no other batch of the run uses (unless `scene_reuse` > 1):

- training step s of rank r (of w ranks under torchrun; r = 0, w = 1 otherwise) is *item*
  i = s * w + r; the items of different ranks are disjoint by construction;
- R = `scene_reuse` consecutive steps of a rank form a *chunk* c = s // R, which uses the scene
  group g = c * w + r: the stream scenes `g * S ... g * S + S - 1`, S = ceil(B / questions per
  scene) + 1 (one spare for the rare scene that yields fewer questions). A DataLoader worker
  renders a chunk's scenes once and returns its R batches, so R > 1 shows each image R times
  with other questions, for R times less rendering per sample (ours: a lever for CPUs where
  rendering competes with training);
- each scene is `qgmrn.synth.generate.make_scene(seed, "stream", index, ...)`, the function that
  writes the fixed splits (same objects, camera, renderer, families, type mix and answer
  balancing) under its own split code, so no stream scene is a train/val/test scene;
- the questions of item i are drawn afresh (a generator seeded by (seed, i, scene)), shuffled,
  and the first B kept.

Every batch is thus a pure function of (seed, step, rank, world size): two runs with one seed see
the same sequence, a resumed run continues it exactly. A curriculum (optional, ours) restricts the
families by relational depth until a number of samples has been seen: `curriculum[k]` is the
sample count after which programs of depth k + 1 are allowed (`families_up_to`); before it,
`queries_first` samples may hold the zero-hop Query Attribute questions alone ("What color is
the large cube?": the questions on which a head learns to pick out the object it is asked about,
the plateau study's finding 9). Data order only: the loss and the model stay the paper's.

`object_maps` (ours, for the auxiliary attribute loss of `qgmrn.data.attributes`): each batch
also carries the object seen at every input pixel (the renderer's object buffer, re-cast without
shading) and each object's attribute indices.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from qgmrn.clevr import SUBTYPES, question_subtype
from qgmrn.data.attributes import object_attribute_rows
from qgmrn.data.dataset import (
    Batch,
    _empty_for_transfer,
    ignore_interrupts,
    shutdown_workers,
    usable_workers,
)
from qgmrn.data.vocab import Vocab
from qgmrn.synth.camera import Camera
from qgmrn.synth.families import Family, families_up_to
from qgmrn.synth.generate import make_scene, scene_rng
from qgmrn.synth.paraphrase import template_vocabulary
from qgmrn.synth.questions import generate_questions
from qgmrn.synth.render import object_ids

STREAM_SPLIT = "stream"
# zero-hop Query Attribute ("What color is the large cube?"): the stream's `queries_first` stage
ZERO_HOP_QUERIES = tuple(f for f in families_up_to(0) if f.subtype.startswith("query_"))
MAX_QUESTION_ROUNDS = 4  # draws from a step's scenes before a short batch is an error
SUBTYPE_ID = {s: i for i, s in enumerate(SUBTYPES)}


@dataclass(frozen=True)
class StreamSpec:
    """How the stream's scenes are made: read from the data set's summary.json, so that the
    stream has the distribution of the fixed val/test splits it is scored on."""

    seed: int
    render_size: tuple[int, int]  # (W, H) of the rendered image, as the PNGs
    min_objects: int
    max_objects: int
    framing: str
    questions_per_scene: int

    @classmethod
    def from_data_dir(cls, data_dir: str | os.PathLike) -> StreamSpec:
        path = Path(data_dir) / "summary.json"
        try:
            s = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path} not found: the training stream renders scenes like those of a generated "
                "mini-CLEVR (`qgmrn generate`); real CLEVR has no stream, use train_source='fixed'"
            ) from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        try:
            return cls(
                seed=int(s["seed"]),
                render_size=(int(s["image_size"][0]), int(s["image_size"][1])),
                min_objects=int(s["min_objects"]),
                max_objects=int(s["max_objects"]),
                framing=str(s["framing"]),
                questions_per_scene=int(s["questions_per_scene"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ValueError(
                f"{path}: missing or malformed generator field ({e!r}); regenerate the data set"
            ) from None


def stream_vocab() -> Vocab:
    """The vocabulary of every question the generator can write (a stream has no question file
    to read it from): the template words, each also capitalised (a question's first word)."""
    words = sorted(template_vocabulary())
    return Vocab.build([" ".join(words + [w[0].upper() + w[1:] for w in words])])


class SceneStream(Dataset):
    """Item c: the list of `scene_reuse` training batches of chunk c of rank `rank` (of `world`).

    Each batch holds `batch` questions with `(batch, 3, H, W)` uint8 images at `image_size =
    (H, W)` (resized from the render when that differs). `curriculum`: sample counts at which
    the allowed relational depth grows (empty: every family from the start); `queries_first`:
    the samples, before that, of zero-hop Query Attribute questions alone. `object_maps`:
    batches also carry `object_ids` and `object_attributes` (see `Batch`). `len` is large: the
    stream does not end; the training loop says which chunks it takes.
    """

    def __init__(
        self,
        spec: StreamSpec,
        vocab: Vocab,
        image_size: Sequence[int],
        batch: int,
        *,
        scene_reuse: int = 1,
        curriculum: Sequence[int] = (),
        queries_first: int = 0,
        rank: int = 0,
        world: int = 1,
        object_maps: bool = False,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch={batch}: a stream batch needs at least one question")
        if scene_reuse < 1:
            raise ValueError(f"scene_reuse={scene_reuse}: use 1 (no reuse) or more")
        if list(curriculum) != sorted(curriculum) or any(c < 0 for c in curriculum):
            raise ValueError(f"curriculum {tuple(curriculum)}: sample counts must be increasing")
        if queries_first < 0:
            raise ValueError(f"queries_first={queries_first}: a sample count, 0 or more")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of the {world} ranks")
        self.spec = spec
        self.vocab = vocab
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.batch = int(batch)
        self.scene_reuse = int(scene_reuse)
        self.curriculum = tuple(int(c) for c in curriculum)
        self.queries_first = int(queries_first)
        self.rank, self.world = int(rank), int(world)
        self.object_maps = bool(object_maps)
        self.scenes_per_group = math.ceil(batch / spec.questions_per_scene) + 1
        self._camera = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_camera"] = None
        return state

    def __len__(self) -> int:
        return 2**40

    def item_of(self, step: int) -> int:
        """The global item index of this rank's training step `step`."""
        return step * self.world + self.rank

    def families_at(self, step: int) -> tuple[Family, ...]:
        """The families the stream draws from at `step`: the zero-hop queries while fewer than
        `queries_first` samples have been seen, then those of the curriculum's depth."""
        if step * self.batch * self.world < self.queries_first:
            return ZERO_HOP_QUERIES
        return families_up_to(self.depth_at(step))

    def depth_at(self, step: int) -> int | None:
        """The relational depth the curriculum allows at `step` (None: every family)."""
        seen = step * self.batch * self.world  # samples seen by all ranks before this step
        for depth, threshold in enumerate(self.curriculum):
            if seen < threshold:
                return depth
        return None

    def scenes(self, chunk: int) -> list[tuple[dict, np.ndarray]]:
        """The (scene, image (H, W, 3) uint8) pairs of this rank's chunk `chunk`; with
        `object_maps`, each scene dict also holds its "object_ids" (H, W) int16 at `image_size`."""
        if self._camera is None:
            self._camera = Camera.from_framing(self.spec.framing)
        group = chunk * self.world + self.rank
        w, h = self.spec.render_size
        pairs = []
        for j in range(self.scenes_per_group):
            scene, rgb, _ = make_scene(
                self.spec.seed,
                STREAM_SPLIT,
                group * self.scenes_per_group + j,
                width=w,
                height=h,
                min_objects=self.spec.min_objects,
                max_objects=self.spec.max_objects,
                camera=self._camera,
                questions_per_scene=0,
            )
            if self.object_maps:
                ids = object_ids(scene, self._camera, w, h)  # (h_render, w_render)
                scene["object_ids"] = self._resize_ids(ids)
            pairs.append((scene, self._resize(rgb)))
        return pairs

    def _resize_ids(self, ids: np.ndarray) -> np.ndarray:
        """The object buffer at `image_size`: the nearest render pixel to each input pixel's
        centre (ids are labels: no interpolation)."""
        h, w = self.image_size
        if ids.shape == (h, w):
            return ids
        rows = ((np.arange(h) + 0.5) * ids.shape[0] / h).astype(np.int64)
        cols = ((np.arange(w) + 0.5) * ids.shape[1] / w).astype(np.int64)
        return ids[rows[:, None], cols[None, :]]

    def _resize(self, rgb: np.ndarray) -> np.ndarray:
        """The render at `image_size`, resized exactly as the image cache resizes PNGs."""
        h, w = self.image_size
        if rgb.shape[:2] == (h, w):
            return rgb
        return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))

    def questions(self, step: int, scenes: Sequence[dict]) -> list[tuple[int, dict]]:
        """(scene position, question) pairs of this rank's step `step`, in batch order."""
        item = self.item_of(step)
        families = self.families_at(step)
        k = min(self.spec.questions_per_scene, len(families))
        asked: list[tuple[int, dict]] = []
        # a scene may yield fewer than k questions (a family with no valid instance, answer
        # balancing), most often under a curriculum's few families: further rounds of draws
        # from the same scenes fill the batch; round 0 alone whenever it suffices, so that the
        # stream of a run that never falls short is the same as without the rounds
        for round_ in range(MAX_QUESTION_ROUNDS):
            for j, scene in enumerate(scenes):
                more = (j,) if round_ == 0 else (j, round_)
                rng = scene_rng(self.spec.seed, STREAM_SPLIT, item, "questions", *more)
                asked += [(j, q) for q in generate_questions(scene, rng, k, families=families)]
            if len(asked) >= self.batch:
                break
        if len(asked) < self.batch:
            raise RuntimeError(
                f"stream step {step}: {len(asked)} questions from {len(scenes)} scenes in "
                f"{MAX_QUESTION_ROUNDS} rounds, fewer than the batch of {self.batch}; raise "
                "questions_per_scene"
            )
        order = scene_rng(self.spec.seed, STREAM_SPLIT, item, "order").permutation(len(asked))
        return [asked[i] for i in order[: self.batch]]

    def batch_of(self, step: int, pairs: Sequence[tuple[dict, np.ndarray]]) -> Batch:
        """Training batch of `step` from its chunk's (scene, image) pairs."""
        chosen = self.questions(step, [scene for scene, _ in pairs])
        h, w = self.image_size
        images = _empty_for_transfer((self.batch, h, w, 3), torch.uint8)
        out = images.numpy()
        encoded = [self.vocab.encode_question(q["question"]) for _, q in chosen]
        tokens = np.zeros((self.batch, max(map(len, encoded))), dtype=np.int64)  # (B, T)
        answers = np.empty(self.batch, dtype=np.int64)
        subtypes = np.empty(self.batch, dtype=np.int64)
        for i, ((j, q), e) in enumerate(zip(chosen, encoded, strict=True)):
            out[i] = pairs[j][1]
            tokens[i, : len(e)] = e
            answers[i] = self.vocab.encode_answer(q["answer"])
            subtypes[i] = SUBTYPE_ID[question_subtype(q["program"])]
        item = self.item_of(step)
        return Batch(
            images=images.permute(0, 3, 1, 2),  # (B, 3, H, W), channels-last in memory
            questions=torch.from_numpy(tokens),
            lengths=torch.tensor([len(e) for e in encoded], dtype=torch.long),
            answers=torch.from_numpy(answers),
            subtypes=torch.from_numpy(subtypes),
            # a stream question has no file index: -(item * B + i) - 1 names it uniquely
            question_index=-(item * self.batch + torch.arange(self.batch)) - 1,
            **(self._object_maps([pairs[j][0] for j, _ in chosen]) if self.object_maps else {}),
        )

    def _object_maps(self, scenes: Sequence[dict]) -> dict[str, torch.Tensor]:
        """`object_ids` (B, H, W) int16 and `object_attributes` (B, N, 4) long of the batch."""
        n = max(len(scene["objects"]) for scene in scenes)
        attributes = np.full((len(scenes), n, 4), -1, dtype=np.int64)  # (B, N, 4)
        for i, scene in enumerate(scenes):
            rows = object_attribute_rows(scene["objects"])
            attributes[i, : len(rows)] = rows
        ids = np.stack([scene["object_ids"] for scene in scenes]).astype(np.int16)  # (B, H, W)
        return {
            "object_ids": torch.from_numpy(ids),
            "object_attributes": torch.from_numpy(attributes),
        }

    def __getitem__(self, chunk: int) -> list[Batch]:
        chunk = int(chunk)
        pairs = self.scenes(chunk)
        first = chunk * self.scene_reuse
        return [self.batch_of(first + k, pairs) for k in range(self.scene_reuse)]


def stream_batches(
    stream: SceneStream,
    start_step: int,
    num_workers: int,
    device: torch.device,
    prefetch_factor: int = 2,
) -> Iterator[Batch]:
    """This rank's training batches from step `start_step` on, without end: chunks rendered by
    `num_workers` processes (0: this one), in order whatever the count."""
    first_chunk = start_step // stream.scene_reuse
    num_workers = usable_workers(num_workers)
    extra = {}
    if num_workers > 0:
        # workers ignore Ctrl-C (sent to the whole process group): the main process decides
        extra = dict(
            prefetch_factor=prefetch_factor,
            persistent_workers=False,
            worker_init_fn=ignore_interrupts,
        )
    # a generator of its own: a DataLoader otherwise draws its base seed from the global RNG,
    # which would shift the Gumbel noise of a resumed run (the stream needs no random seed)
    generator = torch.Generator()
    generator.manual_seed(0)
    loader = DataLoader(
        stream,
        batch_size=None,
        generator=generator,
        sampler=_Count(first_chunk),
        num_workers=num_workers,
        collate_fn=_identity,
        pin_memory=device.type == "cuda",
        **extra,
    )
    step = first_chunk * stream.scene_reuse
    for chunk in _chunks(loader):
        for batch in chunk:
            if step >= start_step:
                yield batch
            step += 1


class DataWorkerDied(RuntimeError):
    """A rendering worker of the stream died (killed from outside, out of memory)."""


def _chunks(loader: DataLoader) -> Iterator[list[Batch]]:
    """`loader`'s items; a worker that dies (SIGKILL, the OOM killer) surfaces as whatever the
    broken queue raises (a reset connection, an EOF, PyTorch's own RuntimeError): it is named
    instead, and the other workers are shut down first, so that no later SIGCHLD raises again
    in the middle of the caller's clean-up."""
    it = iter(loader)
    try:
        while True:
            try:
                chunk = next(it)
            except StopIteration:
                return
            except (RuntimeError, OSError, EOFError) as e:
                workers = getattr(it, "_workers", [])
                dead = [w for w in workers if w.exitcode is not None]
                if not dead:
                    raise
                shutdown_workers(it)
                w = dead[0]
                code = w.exitcode
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                raise DataWorkerDied(f"stream rendering worker (pid {w.pid}) died ({how}).") from e
            yield chunk
    finally:
        shutdown_workers(it)


def _identity(x):
    return x


class _Count(torch.utils.data.Sampler):
    """first, first + 1, ... without end."""

    def __init__(self, first: int) -> None:
        self.first = first

    def __iter__(self):
        return itertools.count(self.first)
