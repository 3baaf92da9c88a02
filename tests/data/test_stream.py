"""The training stream of fresh scenes (qgmrn.data.stream): pure in (seed, step, rank), the
fixed splits' distribution, disjoint ranks, scene reuse, the curriculum, and `fit` on it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from qgmrn.clevr import question_subtype
from qgmrn.config import get_config
from qgmrn.data.stream import SceneStream, StreamSpec, stream_batches, stream_vocab
from qgmrn.engine import fit
from qgmrn.engine.checkpoint import read_checkpoint
from qgmrn.synth.families import max_hops
from qgmrn.synth.generate import make_scene


@pytest.fixture(scope="module")
def spec(mini_clevr_dir) -> StreamSpec:
    return StreamSpec.from_data_dir(mini_clevr_dir)


def _stream(spec, **kw) -> SceneStream:
    return SceneStream(spec, stream_vocab(), (32, 48), kw.pop("batch", 8), **kw)


def _same(a, b) -> bool:
    def equal(x, y) -> bool:
        return x is y is None or (x is not None and y is not None and torch.equal(x, y))

    return all(equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))


def test_spec_reads_the_generator_settings(spec, mini_clevr_settings):
    s = mini_clevr_settings
    assert spec.render_size == s["render_size"] and spec.seed == s["seed"]
    assert (spec.min_objects, spec.max_objects) == (s["min_objects"], s["max_objects"])
    assert spec.questions_per_scene == s["questions_per_scene"]


def test_spec_without_summary_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_source='fixed'"):
        StreamSpec.from_data_dir(tmp_path)
    (tmp_path / "summary.json").write_text('{"seed": 0}')
    with pytest.raises(ValueError, match="summary.json.*regenerate"):
        StreamSpec.from_data_dir(tmp_path)


def test_a_batch_is_a_pure_function_of_the_step(spec):
    a, b = _stream(spec), _stream(spec)
    first = a[3][0]
    assert _same(first, b[3][0])  # another object, same batch
    assert not torch.equal(first.images, a[4][0].images)  # the next step: other scenes
    assert first.images.shape == (8, 3, 32, 48) and first.images.dtype == torch.uint8
    # (B, H, W, 3) bytes seen as (B, 3, H, W): fit's convolutions then run channels-last
    assert first.images.is_contiguous(memory_format=torch.channels_last)
    assert (first.answers >= 0).all() and (first.subtypes >= 0).all()
    assert (first.lengths == (first.questions != 0).sum(1)).all()


def test_workers_and_start_step_do_not_change_the_sequence(spec):
    s = _stream(spec)
    cpu = torch.device("cpu")
    inline = list(zip(range(5), stream_batches(s, 0, 0, cpu), strict=False))
    worker = list(zip(range(5), stream_batches(s, 0, 1, cpu), strict=False))
    later = list(zip(range(2), stream_batches(s, 3, 0, cpu), strict=False))
    for (_, x), (_, y) in zip(inline, worker, strict=True):
        assert _same(x, y)
    assert _same(later[0][1], inline[3][1]) and _same(later[1][1], inline[4][1])


def test_scenes_are_rendered_as_the_fixed_splits_render_them(spec):
    s = _stream(spec)
    scene, image = s.scenes(0)[0]
    w, h = spec.render_size
    again, rgb, _ = make_scene(
        spec.seed, "stream", 0, width=w, height=h, min_objects=spec.min_objects,
        max_objects=spec.max_objects, camera=s._camera, questions_per_scene=0,
    )  # fmt: skip
    assert scene == again and (image == rgb).all()
    assert spec.min_objects <= len(scene["objects"]) <= spec.max_objects


def test_ranks_draw_disjoint_items_and_scenes(spec):
    r0, r1 = _stream(spec, batch=4, world=2, rank=0), _stream(spec, batch=4, world=2, rank=1)
    q0 = {int(i) for step in range(3) for i in r0[step][0].question_index}
    q1 = {int(i) for step in range(3) for i in r1[step][0].question_index}
    assert len(q0) == len(q1) == 12 and not q0 & q1
    scenes0 = [json.dumps(sc, sort_keys=True) for sc, _ in r0.scenes(0)]
    scenes1 = [json.dumps(sc, sort_keys=True) for sc, _ in r1.scenes(0)]
    assert not set(scenes0) & set(scenes1)


def test_scene_reuse_shares_images_with_new_questions(spec):
    s = _stream(spec, scene_reuse=2)
    a, b = s[0]
    pool = {bytes(im.permute(1, 2, 0).contiguous().numpy()) for im in a.images}
    assert {bytes(im.permute(1, 2, 0).contiguous().numpy()) for im in b.images} <= pool
    assert not torch.equal(a.questions, b.questions)
    assert not set(a.question_index.tolist()) & set(b.question_index.tolist())


def test_curriculum_restricts_depth_until_its_thresholds(spec):
    s = _stream(spec, curriculum=(16, 40))  # 2 steps of 8 at depth 0, then 3 at depth <= 1
    assert [s.depth_at(step) for step in range(7)] == [0, 0, 1, 1, 1, None, None]
    for step, limit in ((0, 0), (1, 0), (2, 1), (4, 1)):
        chosen = s.questions(step, [sc for sc, _ in s.scenes(step)])
        hops = [sum(n["function"] == "relate" or n["function"].startswith("same_")
                    for n in q["program"]) for _, q in chosen]  # fmt: skip
        assert max(hops) <= limit, (step, hops)
    assert max_hops  # the families' depth is what the stream filters on


def test_a_step_whose_scenes_fall_short_draws_more_rounds(spec, monkeypatch):
    from qgmrn.data import stream as stream_module

    s = _stream(spec, batch=8)
    scenes = [sc for sc, _ in s.scenes(0)]
    full = s.questions(0, scenes)  # round 0 suffices: the stream as it always was
    monkeypatch.setattr(stream_module, "MAX_QUESTION_ROUNDS", 1)
    assert s.questions(0, scenes) == full

    real = stream_module.generate_questions
    monkeypatch.setattr(  # a curriculum's few families: one question per scene and draw
        stream_module, "generate_questions", lambda *a, **k: real(*a, **k)[:1]
    )
    with pytest.raises(RuntimeError, match="fewer than the batch"):
        s.questions(0, scenes)
    monkeypatch.setattr(stream_module, "MAX_QUESTION_ROUNDS", 8)
    short = s.questions(0, scenes)
    assert len(short) == s.batch and short == s.questions(0, scenes)  # full, and still pure
    assert len({q["question"] for _, q in short}) > len(scenes)  # later rounds drew anew


def test_bad_arguments_are_refused(spec):
    with pytest.raises(ValueError, match="scene_reuse"):
        _stream(spec, scene_reuse=0)
    with pytest.raises(ValueError, match="increasing"):
        _stream(spec, curriculum=(10, 5))
    with pytest.raises(ValueError, match="rank 2"):
        _stream(spec, rank=2, world=2)


def test_stream_vocab_reads_every_generated_question(mini_clevr_dir):
    from qgmrn import clevr

    v = stream_vocab()
    v.reset_unk_counts()
    for split in ("train", "val"):
        for q in clevr.load_questions(
            mini_clevr_dir / "questions" / f"CLEVR_{split}_questions.json"
        ):
            v.encode_question(q["question"])
            question_subtype(q["program"])
    assert v.unk_count == 0


def _stream_config(**train):
    cfg = get_config("brn_c8", "smoke")
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            cfg.data, train_source="stream", stream_epoch_questions=24, num_workers=0,
            image_size=(32, 48),
        ),
        train=dataclasses.replace(cfg.train, epochs=2, checkpoint_every_steps=2, **train),
    )  # fmt: skip


def test_fit_on_the_stream_resumes_bit_identically(mini_clevr_dir, tmp_path):
    """3 steps an epoch, 2 epochs; stopped after 4 steps and resumed: the same weights."""
    cfg = _stream_config()
    full = fit(cfg, mini_clevr_dir, tmp_path / "full", progress=False)
    assert full["step"] == 6 and full["stop_reason"] == "epochs"
    cut = fit(cfg, mini_clevr_dir, tmp_path / "cut", progress=False, max_steps=4)
    assert cut["step"] == 4
    fit(cfg, mini_clevr_dir, tmp_path / "cut", progress=False, resume=True)
    a = read_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    rows = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows if '"val"' in r] == [3, 6]


def test_a_stream_run_written_under_the_old_name_of_scene_reuse_resumes(mini_clevr_dir, tmp_path):
    """A run stopped with `stream_scene_reuse` in its config.json and checkpoint (the field's
    name before it was `scene_reuse`) resumes to the weights of the uninterrupted run and
    records the new name."""
    cfg = _stream_config()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, scene_reuse=2))
    fit(cfg, mini_clevr_dir, tmp_path / "full", progress=False, max_steps=4)
    cut = tmp_path / "cut"
    fit(cfg, mini_clevr_dir, cut, progress=False, max_steps=2)

    def old_names(text: str) -> str:
        d = json.loads(text)
        d["data"]["stream_scene_reuse"] = d["data"].pop("scene_reuse")
        return json.dumps(d)

    (cut / "config.json").write_text(old_names((cut / "config.json").read_text()))
    saved = torch.load(cut / "checkpoint.pt", weights_only=True)
    torch.save({**saved, "config": old_names(saved["config"])}, cut / "checkpoint.pt")
    assert fit(cfg, mini_clevr_dir, cut, progress=False, max_steps=4, resume=True)["step"] == 4
    a = read_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = read_checkpoint(cut / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert json.loads((cut / "config.json").read_text())["data"]["scene_reuse"] == 2


def test_step_validation_scores_at_the_same_steps_whatever_the_epoch(mini_clevr_dir, tmp_path):
    cfg = _stream_config(eval_every_steps=2, eval_every_epochs=0)
    fit(cfg, mini_clevr_dir, tmp_path / "run", progress=False)
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("kind") == "val"] == [2, 4, 6]


def test_the_test_split_of_mini_clevr_is_scored_from_its_answers(mini_clevr_dir, tmp_path):
    from qgmrn.engine.evaluate import evaluate_run

    fit(_stream_config(), mini_clevr_dir, tmp_path / "run", progress=False, max_steps=1)
    ev = evaluate_run(tmp_path / "run", split="test", checkpoint="latest", progress=False)
    assert ev["n"] == 3 * 4 and ev["overall"] is not None  # 3 test scenes, 4 questions each
    assert (tmp_path / "run" / "eval_test_latest.json").exists()


def test_a_killed_rendering_worker_is_named(spec):
    """SIGKILL of the worker (the OOM killer, a stray kill -9) is named with its pid and signal:
    by the stream (DataWorkerDied) when the next batch finds the queue broken, or by PyTorch's
    own SIGCHLD check when that comes first (`fit` turns either into one message)."""
    import os
    import signal
    import time

    from qgmrn.data.stream import DataWorkerDied

    before = set(_children())
    s = SceneStream(spec, stream_vocab(), (32, 48), 8)
    batches = stream_batches(s, 0, 1, torch.device("cpu"), prefetch_factor=1)
    next(batches)
    workers = set(_children()) - before  # this loader's worker
    assert len(workers) == 1
    (pid,) = workers
    with pytest.raises((DataWorkerDied, RuntimeError), match=rf"worker \(pid {pid}\)") as err:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        for _ in range(20):
            next(batches)
    assert "killed by signal" in str(err.value)


def _children() -> list[int]:
    """The pids of this process's children (Linux /proc)."""
    import os

    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                out.append(int(entry))
    return out


def test_queries_first_draws_zero_hop_queries_then_the_curriculum(spec):
    s = _stream(spec, curriculum=(32,), queries_first=16)  # 2 steps of queries, 2 of depth 0
    for step in range(5):
        chosen = s.questions(step, [sc for sc, _ in s.scenes(step)])
        ends = {q["program"][-1]["function"] for _, q in chosen}
        hops = max(sum(n["function"] == "relate" or n["function"].startswith("same_")
                       for n in q["program"]) for _, q in chosen)  # fmt: skip
        if step < 2:  # the zero-hop Query Attribute families alone
            assert ends <= {"query_color", "query_shape", "query_size", "query_material"}, ends
            assert hops == 0 and len(chosen) == s.batch
        elif step < 4:
            assert hops == 0 and not ends <= {"query_color", "query_shape", "query_size"}
        else:
            assert s.families_at(step) == s.families_at(10**6)  # every family
    with pytest.raises(ValueError, match="queries_first"):
        _stream(spec, queries_first=-1)
