"""`fit` end to end on a minute data set: the run directory, exact resume, non-finite loss,
evaluation of a finished run and CLEVR-Humans fine-tuning."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import qgmrn.engine.losses
from qgmrn import cli
from qgmrn.clevr.constants import QUESTION_TYPES, SUBTYPES
from qgmrn.engine import NonFiniteLossError, finetune, fit
from qgmrn.engine.checkpoint import CheckpointError, read_checkpoint
from qgmrn.engine.history import read_history
from qgmrn.engine.interrupt import TrainingInterrupted

from . import make_tiny_clevr, tiny_config

# 8 train images x 4 questions = 32 questions = 4 steps of 8 per epoch
STEPS_PER_EPOCH = 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_clevr(tmp_path_factory.mktemp("tiny") / "clevr", humans=True)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """A BRN (Gumbel gates: the resume test must restore the RNG) trained for 2 epochs."""
    cfg = tiny_config("brn_c8", epochs=2, checkpoint_every_steps=3)
    out = tmp_path_factory.mktemp("runs") / "full"
    result = fit(cfg, data_dir, out, progress=False)
    return cfg, out, result


def test_run_directory_layout(trained):
    cfg, out, result = trained
    assert result["stop_reason"] == "epochs" and result["step"] == 2 * STEPS_PER_EPOCH
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "vocab.json", "metrics.jsonl", "eval.json", "checkpoint.pt",
            "best.pt", "routing_paths.npz", "history.jsonl"} <= names  # fmt: skip
    (segment,) = read_history(out)  # one call of fit: one segment, from step 0 to the end
    assert (segment["start_step"], segment["end_step"]) == (0, 2 * STEPS_PER_EPOCH)
    assert (segment["resumed"], segment["stop_reason"]) == (False, "epochs")
    assert (segment["device"], segment["precision"], segment["global_batch"]) == ("cpu", "fp32", 8)
    assert segment["train_minutes"] > 0 and segment["device_name"]
    assert json.loads((out / "config.json").read_text())["model"]["cardinality"] == 8

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "kind" not in r]
    val_rows = [r for r in rows if r.get("kind") == "val"]
    assert [r["step"] for r in train_rows] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert [r["epoch"] for r in val_rows] == [1, 2]
    for r in train_rows:
        assert {"step", "epoch", "loss", "load_loss", "acc", "lr", "tau", "samples_per_s",
                "exec_ratio"} <= set(r)  # fmt: skip
        assert len(r["exec_ratio"]) == 8 and all(0 <= x <= 1 for x in r["exec_ratio"])
    assert train_rows[0]["lr"] == pytest.approx(cfg.train.warmup_start_lr)
    assert train_rows[-1]["lr"] == pytest.approx(cfg.train.lr)

    ev = json.loads((out / "eval.json").read_text())
    assert ev["split"] == "val" and ev["n"] == 16
    assert list(ev["by_type"]) == list(QUESTION_TYPES)
    assert list(ev["by_subtype"]) == list(SUBTYPES)
    assert 0 <= ev["overall"] <= 1
    assert ev["by_subtype"]["query_color"] is not None and ev["by_subtype"]["less_than"] is None
    assert ev["train"]["stop_reason"] == "epochs"

    paths = np.load(out / "routing_paths.npz")
    layer_sizes = paths["layer_sizes"]
    assert list(layer_sizes) == [8] * 8
    assert paths["paths"].shape == (16, layer_sizes.sum()) and paths["paths"].dtype == np.uint8
    assert set(np.unique(paths["paths"])) <= {0, 1}
    assert len(paths["stage_of_layer"]) == 8
    for key in ("subtypes", "question_index", "answers", "predictions"):
        assert paths[key].shape == (16,)
    assert (paths["predictions"] == paths["answers"]).mean() == pytest.approx(ev["overall"])


def test_resume_is_bit_identical(trained, data_dir, tmp_path):
    """Stopped mid-epoch after 5 steps (past an epoch end and a periodic checkpoint), then
    resumed: the final parameters equal the uninterrupted run's bit for bit."""
    cfg, full, _ = trained
    out = tmp_path / "interrupted"
    first = fit(cfg, data_dir, out, progress=False, max_steps=STEPS_PER_EPOCH + 1)
    assert first["stop_reason"] == "max_steps"
    c = read_checkpoint(out / "checkpoint.pt")
    assert (c["step"], c["epoch"], c["batch_in_epoch"]) == (STEPS_PER_EPOCH + 1, 1, 1)
    second = fit(cfg, data_dir, out, progress=False, resume=True)
    assert second["step"] == 2 * STEPS_PER_EPOCH
    # history.jsonl: two segments that meet at the checkpoint the second resumed from
    history = read_history(out)
    assert [(h["segment"], h["start_step"], h["end_step"]) for h in history] == [
        (1, 0, STEPS_PER_EPOCH + 1),
        (2, STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH),
    ]
    assert [(h["resumed"], h["stop_reason"]) for h in history] == [
        (False, "max_steps"),
        (True, "epochs"),
    ]
    a = read_checkpoint(full / "checkpoint.pt")
    b = read_checkpoint(out / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):  # fmt: skip
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])


def test_resume_refuses_another_model(trained, data_dir, tmp_path):
    _, full, _ = trained
    out = tmp_path / "copy"
    shutil.copytree(full, out)
    with pytest.raises(CheckpointError, match=r"(?s)checkpoint\.pt.*model\.cardinality"):
        fit(tiny_config("brn_c16"), data_dir, out, progress=False, resume=True)


def test_non_finite_loss_stops_naming_the_step(data_dir, tmp_path, monkeypatch):
    """A NaN loss at step 3 stops training; the checkpoint of step 2 is kept, not overwritten."""
    real = qgmrn.engine.losses.vqa_loss
    calls = []

    def poisoned(logits, answers):
        calls.append(1)
        loss = real(logits, answers)
        return loss * float("nan") if len(calls) == 4 else loss  # the 4th step is step 3

    monkeypatch.setattr(qgmrn.engine.losses, "vqa_loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="step 3"):
        fit(tiny_config("lstm", checkpoint_every_steps=2), data_dir, out, progress=False)
    c = read_checkpoint(out / "checkpoint.pt")
    assert c["step"] == 2
    assert all(torch.isfinite(v).all() for v in c["model"].values() if v.is_floating_point())


def test_evaluate_command(trained, capsys):
    _, out, _ = trained
    assert cli.main(["evaluate", str(out), "--checkpoint", "latest", "--no-progress"]) == 0
    ev = json.loads((out / "eval_val_latest.json").read_text())
    assert ev["n"] == 16 and list(ev["by_type"]) == list(QUESTION_TYPES)
    assert '"overall"' in capsys.readouterr().out


def test_finetune_extends_vocabulary_and_keeps_old_embedding_rows(trained, data_dir, tmp_path):
    _, full, _ = trained
    out = tmp_path / "humans"
    result = finetune(full, data_dir, out, max_steps=0, progress=False)
    old = json.loads((full / "vocab.json").read_text())["question_token_to_idx"]
    new = json.loads((out / "vocab.json").read_text())["question_token_to_idx"]
    assert all(new[w] == i for w, i in old.items())  # old indices unchanged
    assert {"crimson", "violet", "picture"} <= set(new) - set(old)
    before = read_checkpoint(full / "best.pt")["model"]
    after = read_checkpoint(out / "checkpoint.pt")["model"]
    grown = [k for k in after if after[k].shape != before[k].shape]
    assert grown == ["text.embed.weight"]
    emb = after["text.embed.weight"]
    assert emb.shape[0] == len(new)
    assert torch.equal(emb[: len(old)], before["text.embed.weight"])
    assert emb[len(old) :].abs().max() <= 0.1  # the embedding's own uniform init
    ev = result["eval"]
    assert ev["n"] == 4 and ev["by_type"] == {} and 0 <= ev["overall"] <= 1
    source = json.loads((out / "finetuned_from.json").read_text())  # where it started
    assert Path(source["run"]).resolve() == full.resolve() and source["checkpoint"] == "best"
    assert source["step"] == read_checkpoint(full / "best.pt")["step"]


def test_table1_puts_a_fine_tune_on_the_row_of_the_run_it_started_from(trained, data_dir, tmp_path):
    """A fine-tune saved beside one group's runs but started from another group's run gives
    the "Humans after FT" number of that other group's row (05 fine-tunes the reference BRN
    into the demo folder)."""
    from qgmrn.analysis import tables

    _, full, _ = trained
    ref, demo = tmp_path / "ref", tmp_path / "demo"
    shutil.copytree(full, ref / "brn_c8")
    shutil.copytree(full, demo / "brn_c8")
    finetune(ref / "brn_c8", data_dir, demo / "brn_c8_humans", max_steps=0, progress=False)
    t = tables.table1_from_dirs({"demo": demo, "reference": ref}, include_paper=False)
    humans = t["Humans after FT"]
    group = humans.index.get_level_values("source").str.split(",").str[0]  # "ours (demo"
    assert humans[group == "ours (reference"].notna().any()
    assert humans[group == "ours (demo"].isna().all()
    (demo / "brn_c8_humans" / "finetuned_from.json").unlink()  # an older run records none
    t = tables.table1_from_dirs({"demo": demo, "reference": ref}, include_paper=False)
    humans = t["Humans after FT"]
    assert humans[group == "ours (demo"].notna().any()


def test_finetune_from_a_run_trained_on_the_stream(trained, data_dir, tmp_path):
    """A base run trained on the stream (no question file) still fine-tunes on the CLEVR-Humans
    question file; its recorded loader workers (from a larger machine) are capped at this
    machine's cores where loaders are made (`usable_workers`)."""
    from qgmrn.data.dataset import usable_workers

    _, full, _ = trained
    base = tmp_path / "streamed"
    shutil.copytree(full, base)
    cfg = json.loads((base / "config.json").read_text())
    cfg["data"].update(train_source="stream", scene_reuse=4, num_workers=512)
    (base / "config.json").write_text(json.dumps(cfg))
    result = finetune(base, data_dir, tmp_path / "humans", max_steps=1, progress=False)
    assert result["step"] == 1
    written = json.loads((tmp_path / "humans" / "config.json").read_text())["data"]
    assert written["train_source"] == "fixed"
    assert usable_workers(written["num_workers"]) <= (os.cpu_count() or 1)


def test_train_command_and_refused_resume(data_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "--preset", "lstm", "--profile", "smoke", "--data-dir", str(data_dir),
            "--out", str(out), "--max-steps", "2", "--no-progress"]  # fmt: skip
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["step"] == 2
    # the smoke preset's own 1 epoch stays in force beside --max-steps: the user is told
    assert "does not lift the preset's own budget (--epochs 1)" in captured.err
    assert json.loads((out / "eval.json").read_text())["train"]["stop_reason"] == "max_steps"
    other = ["train", "--preset", "cnn_lstm", "--profile", "smoke", "--data", str(data_dir),
             "--out", str(out), "--resume", "--no-progress"]  # fmt: skip
    assert cli.main(other) == 1
    assert "model.arch" in capsys.readouterr().err  # errors go to stderr


def test_fit_and_evaluate_on_a_subset_of_image_indices(tmp_path):
    """A CLEVR subset (every other image, with its questions) trains and evaluates as it is."""
    root = make_tiny_clevr(tmp_path / "clevr", n_images={"train": 12, "val": 6})
    for split in ("train", "val"):
        path = root / "questions" / f"CLEVR_{split}_questions.json"
        data = json.loads(path.read_text())
        data["questions"] = [q for q in data["questions"] if q["image_index"] % 2 == 0]
        path.write_text(json.dumps(data))
        for img in (root / "images" / split).glob("*.png"):
            if int(img.stem.rsplit("_", 1)[1]) % 2:
                img.unlink()
    result = fit(tiny_config("lstm", epochs=1), root, tmp_path / "run", progress=False)
    assert result["eval"]["n"] == 3 * 4  # val images 0, 2, 4
    assert cli.main(["evaluate", str(tmp_path / "run"), "--no-progress"]) == 0


def test_evaluation_files_are_named_by_what_they_scored(trained, data_dir, tmp_path):
    import shutil as _shutil

    from qgmrn.engine.evaluate import output_stem

    _, out, _ = trained
    other = tmp_path / "other-set"
    _shutil.copytree(data_dir, other, ignore=_shutil.ignore_patterns("cache"))
    assert cli.main(["evaluate", str(out), "--data-dir", str(other), "--no-progress"]) == 0
    ev = json.loads((out / "eval_other-set_val_best.json").read_text())
    assert ev["data_dir"] == str(other) and ev["n"] == 16
    assert (out / "routing_paths_other-set_val_best.npz").exists()
    humans = data_dir / "questions" / "CLEVR-Humans-val.json"
    assert (
        output_stem(data_dir, data_dir, "val", humans, "best") == "eval_val_CLEVR-Humans-val_best"
    )
    assert output_stem(data_dir, data_dir, "val", None, "latest") == "eval_val_latest"


def test_a_run_whose_data_set_is_not_here_names_its_config_and_the_flag(trained, tmp_path, capsys):
    import shutil as _shutil

    _, out, _ = trained
    moved = tmp_path / "moved"  # a run made on another machine: its data_dir is not here
    _shutil.copytree(out, moved)
    cfg = json.loads((moved / "config.json").read_text())
    cfg["data"]["data_dir"] = "/nonexistent/elsewhere/mini-clevr"
    (moved / "config.json").write_text(json.dumps(cfg))
    assert cli.main(["evaluate", str(moved), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert str(moved / "config.json") in err and "/nonexistent/elsewhere/mini-clevr" in err
    assert "--data-dir DIR" in err
    assert not list(moved.glob("eval_val_best*.json.*"))  # nothing half-written


def test_a_run_inside_the_project_records_its_data_relative_and_evaluates_from_elsewhere(
    data_dir, tmp_path, monkeypatch
):
    """A data set under the project root is recorded relative to it (committed runs name no
    machine's folders) and found again from another working directory (as from notebooks/);
    one outside it is recorded absolute."""
    import shutil as _shutil

    from qgmrn.engine.evaluate import evaluate_run
    from qgmrn.fileio import project_root

    relative = f"results/.test-data-{os.getpid()}/clevr"
    inside = project_root() / relative
    try:
        _shutil.copytree(data_dir, inside, ignore=_shutil.ignore_patterns("cache"))
        monkeypatch.chdir(tmp_path)
        out = tmp_path / "run"
        fit(tiny_config("lstm"), inside, out, progress=False, max_steps=1)
        assert json.loads((out / "config.json").read_text())["data"]["data_dir"] == relative
        monkeypatch.chdir(project_root() / "notebooks")
        ev = evaluate_run(out, checkpoint="latest", progress=False)
        assert ev["n"] == 16 and (out / "eval_val_latest.json").exists()  # its own data set
    finally:
        _shutil.rmtree(inside.parent, ignore_errors=True)
    other = tmp_path / "run-outside"
    fit(tiny_config("lstm"), data_dir, other, progress=False, max_steps=1)
    assert json.loads((other / "config.json").read_text())["data"]["data_dir"] == str(
        data_dir.resolve()
    )


def test_sparse_evaluation_gives_the_dense_answers(trained):
    from qgmrn.engine.evaluate import evaluate_run

    _, out, _ = trained
    dense = evaluate_run(out, checkpoint="latest", progress=False, write=False)
    sparse = evaluate_run(out, checkpoint="latest", progress=False, write=False, sparse=True)
    assert sparse["sparse"] and not dense["sparse"]
    assert sparse["overall"] == dense["overall"] and sparse["by_subtype"] == dense["by_subtype"]
    assert cli.main(["evaluate", str(out), "--sparse", "--no-progress"]) == 0


def test_compiled_training_writes_plain_checkpoints(data_dir, tmp_path):
    """TrainConfig.compile wraps the training model in torch.compile ("eager" traces without
    generating code, so the test stays fast); checkpoints hold the plain module's keys (no
    `_orig_mod.` prefix) and the run trains and evaluates like an uncompiled one."""
    cfg = tiny_config("brn_c8", epochs=1, compile="eager")
    result = fit(cfg, data_dir, tmp_path / "compiled", progress=False)
    assert result["stop_reason"] == "epochs" and result["step"] == STEPS_PER_EPOCH
    state = read_checkpoint(tmp_path / "compiled" / "checkpoint.pt")["model"]
    plain = read_checkpoint(tmp_path / "compiled" / "best.pt")["model"]
    assert state.keys() == plain.keys() and not any(k.startswith("_orig_mod") for k in state)
    assert 0 <= result["eval"]["overall"] <= 1


def test_the_end_of_run_validation_is_not_predicted_twice(data_dir, tmp_path, monkeypatch):
    """A run stopped mid-epoch validates its last weights once: when they are the best, eval.json
    and routing_paths.npz reuse that pass (one val pass, not two) and say what a separate
    evaluation of best.pt says."""
    import qgmrn.engine.loop
    from qgmrn.engine.evaluate import evaluate_run

    calls = []
    real_predict = qgmrn.engine.loop.predict
    monkeypatch.setattr(
        qgmrn.engine.loop, "predict", lambda *a, **k: calls.append(k) or real_predict(*a, **k)
    )
    out = tmp_path / "stopped"
    result = fit(tiny_config("brn_c8", epochs=1), data_dir, out, progress=False, max_steps=3)
    assert result["step"] == 3 and result["best_step"] == 3  # one validation: the best
    assert [k.get("collect_paths") for k in calls] == [True]
    again = evaluate_run(out, checkpoint="best", progress=False, write=False)
    assert again["overall"] == result["eval"]["overall"]
    assert again["by_subtype"] == result["eval"]["by_subtype"]
    paths = np.load(out / "routing_paths.npz")
    assert paths["paths"].shape == (16, 64)


def test_sigterm_stops_after_the_step_with_a_checkpoint_there_and_resume_finishes(
    trained, data_dir, tmp_path, monkeypatch
):
    """SIGTERM during step 2 (qgmrn.engine.interrupt): fit finishes that step, saves
    checkpoint.pt at step 2 (the periodic one is every 3 steps), writes no eval.json, restores the
    handlers; the resumed run ends bit-identical to the uninterrupted one."""
    import signal

    import qgmrn.engine.loop

    cfg, full, _ = trained
    real = qgmrn.engine.loop.train_step
    calls = []

    def signalled(run, batch):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the step is under way
        return real(run, batch)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(qgmrn.engine.loop, "train_step", signalled)
    out = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted, match="at step 2") as stopped:  # a KeyboardInterrupt
        fit(cfg, data_dir, out, progress=False)
    assert signal.getsignal(signal.SIGTERM) is before
    result = stopped.value.result
    assert (result["stop_reason"], result["step"], result["eval"]) == ("interrupted", 2, None)
    assert stopped.value.exit_status == 128 + signal.SIGTERM
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 2
    assert not (out / "eval.json").exists()
    (segment,) = read_history(out)
    assert (segment["end_step"], segment["stop_reason"]) == (2, "interrupted")

    monkeypatch.setattr(qgmrn.engine.loop, "train_step", real)
    assert fit(cfg, data_dir, out, progress=False, resume=True)["step"] == 2 * STEPS_PER_EPOCH
    a, b = read_checkpoint(full / "checkpoint.pt"), read_checkpoint(out / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_a_validation_due_at_the_interrupted_step_is_not_skipped(data_dir, tmp_path, monkeypatch):
    """SIGINT during step 2 of a run validating every 2 steps: the validation of step 2 runs
    before the checkpoint, so the resumed run's validation rows and best.pt are the
    uninterrupted run's."""
    import signal

    import qgmrn.engine.loop

    cfg = tiny_config("lstm", epochs=2, checkpoint_every_steps=3, eval_every_steps=2)
    ref = tmp_path / "uninterrupted"
    fit(cfg, data_dir, ref, progress=False)
    real, calls = qgmrn.engine.loop.train_step, []

    def signalled(run, batch):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(run, batch)

    monkeypatch.setattr(qgmrn.engine.loop, "train_step", signalled)
    out = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted):
        fit(cfg, data_dir, out, progress=False)
    monkeypatch.setattr(qgmrn.engine.loop, "train_step", real)
    fit(cfg, data_dir, out, progress=False, resume=True)

    def val_rows(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["overall"]) for r in rows if r.get("kind") == "val"]

    assert [step for step, _ in val_rows(ref)] == [2, 4, 6, 8]  # every 2 steps (epoch ends too)
    assert val_rows(out) == val_rows(ref)
    a, b = read_checkpoint(ref / "best.pt"), read_checkpoint(out / "best.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_a_finished_run_trained_further_and_stopped_does_not_look_finished(
    trained, data_dir, tmp_path, monkeypatch
):
    """Resuming a finished run with a larger budget drops its end-of-run eval.json and
    routing_paths.npz (they describe an earlier step); stopped before the new end, the run
    has none, so nothing reads it as finished; its history says where it stopped."""
    import signal

    import qgmrn.engine.loop

    cfg, full, _ = trained
    out = tmp_path / "extended"
    shutil.copytree(full, out)
    assert (out / "eval.json").exists()
    real = qgmrn.engine.loop.train_step

    def signalled(run, batch):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(run, batch)

    monkeypatch.setattr(qgmrn.engine.loop, "train_step", signalled)
    longer = tiny_config("brn_c8", epochs=3, checkpoint_every_steps=3)
    with pytest.raises(TrainingInterrupted, match=f"at step {2 * STEPS_PER_EPOCH + 1}"):
        fit(longer, data_dir, out, progress=False, resume=True)
    assert not (out / "eval.json").exists() and not (out / "routing_paths.npz").exists()
    assert read_history(out)[-1]["stop_reason"] == "interrupted"


def test_bench_sparse_times_a_trained_run_on_its_own_paths(trained, data_dir, load_benchmark):
    """`bench_sparse.py --runs`: the gates are the checkpoint's router's, not forced ones."""
    _, out, _ = trained
    bench_sparse = load_benchmark("bench_sparse")
    rows = bench_sparse.measure_run(out, data_dir, questions=8, single=2, iters=1, repeats=1)
    assert [r["batch"] for r in rows] == [64, 1]
    assert rows[1]["questions"] == 2 and rows[0]["questions"] >= 8
    paths = np.load(out / "routing_paths.npz")["paths"]  # best.pt's paths on val, by fit
    assert 0.0 < rows[0]["ratio"] <= 1.0 and rows[0]["ratio"] == pytest.approx(
        paths[: rows[0]["questions"]].mean(), abs=1e-6
    )
    for r in rows:
        assert r["run"] == out.name and r["arch"] == "brn" and r["profile"] == "smoke"
        assert r["dense_ms"] > 0 and r["sparse_ms"] > 0 and r["union_open"] >= r["ratio"]
    assert rows[1]["sparse_fresh_ms"] > 0


def test_a_dead_data_worker_stops_the_run_naming_it_and_the_checkpoint_to_resume(
    trained, data_dir, tmp_path, monkeypatch
):
    """A DataLoader worker killed from outside (SIGKILL, the OOM killer) ends the run with a
    message naming the worker, the step reached and the step checkpoint.pt holds; --resume then
    finishes exactly as the uninterrupted run."""
    import qgmrn.engine.loop as train_mod

    cfg, full, _ = trained
    original = train_mod._epoch_batches

    def dying(run):
        for batch in original(run):
            if run.state.step == 5:  # past the last checkpoint, as a worker dies
                raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
            yield batch

    monkeypatch.setattr(train_mod, "_epoch_batches", dying)
    out = tmp_path / "run"
    with pytest.raises(qgmrn.engine.DataWorkerError) as err:
        fit(cfg, data_dir, out, progress=False)
    text = str(err.value)
    assert "worker (pid 4242) is killed by signal: Killed" in text
    saved = read_checkpoint(out / "checkpoint.pt")["step"]  # the epoch end's, step 4
    assert 0 < saved < 5
    assert "stopped at step 5" in text and f"checkpoint.pt holds step {saved}:" in text
    assert "--resume" in text
    monkeypatch.setattr(train_mod, "_epoch_batches", original)
    fit(cfg, data_dir, out, progress=False, resume=True)
    a, b = read_checkpoint(full / "checkpoint.pt"), read_checkpoint(out / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_out_of_device_memory_names_the_sizes_the_flags_and_the_checkpoint(
    trained, data_dir, tmp_path, monkeypatch
):
    """`torch.cuda.OutOfMemoryError` in a step (simulated on the CPU) ends the run with the
    batch size, image size and preset, the flags that need less memory and the step checkpoint.pt
    holds; the checkpoint is intact and --resume finishes exactly as the uninterrupted run."""
    import qgmrn.engine.loop as train_mod

    cfg, full, _ = trained
    original = train_mod.train_step

    def oom_at_5(run, batch):
        if run.state.step == 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(run, batch)

    monkeypatch.setattr(train_mod, "train_step", oom_at_5)
    out = tmp_path / "run"
    with pytest.raises(qgmrn.engine.DeviceOutOfMemoryError) as err:
        fit(cfg, data_dir, out, progress=False)
    text = str(err.value)
    H, W = cfg.data.image_size
    assert f"preset {cfg.name!r}" in text and f"batch {cfg.train.batch_size}" in text
    assert f"image {H}x{W}" in text and "at step 5" in text
    assert f"--batch-size {cfg.train.batch_size // 2}" in text and "--resume" in text
    saved = read_checkpoint(out / "checkpoint.pt")["step"]
    assert 0 < saved < 5 and f"checkpoint.pt holds step {saved}:" in text
    monkeypatch.setattr(train_mod, "train_step", original)
    fit(cfg, data_dir, out, progress=False, resume=True)
    a, b = read_checkpoint(full / "checkpoint.pt"), read_checkpoint(out / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_train_and_finetune_commands_report_device_memory_as_one_line(
    trained, data_dir, tmp_path, capsys, monkeypatch
):
    """Both commands turn the out-of-memory error into one line on stderr and exit status 1."""
    import qgmrn.engine.loop as train_mod

    def oom(run, batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(train_mod, "train_step", oom)
    args = ["train", "--preset", "lstm", "--profile", "smoke", "--data", str(data_dir),
            "--out", str(tmp_path / "t"), "--max-steps", "2", "--no-progress"]  # fmt: skip
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "qgmrn train: error:" in err and "out of memory on cpu at step 0" in err
    assert "no checkpoint was saved yet" in err and "Traceback" not in err
    _, full, _ = trained
    args = ["finetune", "--from", str(full), "--humans", str(data_dir), "--out",
            str(tmp_path / "f"), "--max-steps", "2", "--no-progress"]  # fmt: skip
    assert cli.main(args) == 1
    assert "qgmrn finetune: error:" in capsys.readouterr().err


def test_a_run_can_be_read_and_evaluated_while_it_trains(data_dir, tmp_path):
    """A notebook or `qgmrn evaluate` reading a run in training (metrics being appended,
    checkpoints being replaced, the run lock held) reads what is complete, never fails, and
    the training is not held up: it finishes its steps and validations."""
    import threading

    from qgmrn.analysis.curves import read_metrics
    from qgmrn.engine.evaluate import evaluate_run

    out = tmp_path / "live"
    done = threading.Event()
    reads, failures = [], []

    def reader():
        while not done.is_set():
            try:
                if (out / "metrics.jsonl").exists():
                    train, _val = read_metrics(out)
                    read_history(out)
                    reads.append(len(train))
                if (out / "best.pt").exists():
                    ev = evaluate_run(out, checkpoint="best", progress=False, write=False)
                    reads.append(ev["n"])
                if (out / "checkpoint.pt").exists():
                    read_checkpoint(out / "checkpoint.pt")
            except FileNotFoundError:
                pass  # config.json or a checkpoint not written yet: nothing complete to read
            except Exception as e:  # noqa: BLE001 - any other failure is the finding
                failures.append(repr(e))

    cfg = tiny_config("brn_c8", epochs=6, checkpoint_every_steps=1)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = fit(cfg, data_dir, out, progress=False)
    finally:
        done.set()
        thread.join()
    assert failures == []
    assert len(reads) > 3
    assert result["step"] == 6 * STEPS_PER_EPOCH and result["stop_reason"] == "epochs"
    assert len(read_metrics(out)[1]) >= 6  # every epoch's validation


def test_a_finished_run_without_optimizer_state_evaluates_and_refuses_to_resume(
    trained, data_dir, tmp_path
):
    """`drop_optimizer_state` keeps what evaluation and fine-tuning need (the same answers) and
    makes the checkpoint smaller; --resume then refuses it, naming the file and what to do."""
    from qgmrn.engine.checkpoint import drop_optimizer_state
    from qgmrn.engine.evaluate import evaluate_run

    cfg, full, _ = trained
    run = tmp_path / "finished"
    shutil.copytree(full, run)
    before = evaluate_run(run, checkpoint="latest", progress=False, write=False)
    saved = drop_optimizer_state(run / "checkpoint.pt")
    assert saved > 0 and drop_optimizer_state(run / "checkpoint.pt") == 0
    after = evaluate_run(run, checkpoint="latest", progress=False, write=False)
    assert after["overall"] == before["overall"] and after["by_type"] == before["by_type"]
    assert (
        read_checkpoint(run / "checkpoint.pt")["step"]
        == read_checkpoint(full / "checkpoint.pt")["step"]
    )
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        fit(cfg, data_dir, run, progress=False, resume=True)


def test_a_run_moved_between_machines_resumes_in_the_other_precision(
    data_dir, tmp_path, monkeypatch
):
    """A run that moves between machines, as the reference runs moved from an H200 (bf16
    autocast, channels-last) to a CPU (fp32): 2 steps in fp32, 3 under bf16 autocast and
    channels-last (CPU bf16, taken to be native here so it runs on any CPU), then checkpoint.pt
    is rewritten as a GPU writes it (every tensor's storage tagged cuda:0, a CUDA generator state
    beside the CPU's) and the run resumed in fp32. Each resume goes on from the checkpoint's step
    with its optimizer state and RNG state as saved, no step trained twice or skipped; the
    GPU-tagged checkpoint is read onto the CPU (map_location="cpu") and gives the very weights
    a resume from the untagged file gives; history.jsonl holds the three segments, each with its
    precision and memory format."""
    import copy

    import qgmrn.engine.runtime
    import qgmrn.engine.trainer

    monkeypatch.setattr(qgmrn.engine.runtime, "cpu_has_native_bf16", lambda: True)
    restored, rng_after_seeding = [], []
    real_restore, real_seed_rng = qgmrn.engine.trainer.restore, qgmrn.engine.trainer.seed_rng

    def restore(model, optimizer, checkpoint, attributes=None):
        state = real_restore(model, optimizer, checkpoint, attributes)
        restored.append(copy.deepcopy(optimizer.state_dict()["state"]))
        return state

    def seed_rng(*args):
        real_seed_rng(*args)
        rng_after_seeding.append(torch.get_rng_state())

    monkeypatch.setattr(qgmrn.engine.trainer, "restore", restore)
    monkeypatch.setattr(qgmrn.engine.trainer, "seed_rng", seed_rng)
    fp32 = tiny_config("brn_c8", epochs=2, checkpoint_every_steps=3)
    bf16 = tiny_config("brn_c8", epochs=2, checkpoint_every_steps=3, cpu_amp=True,
                       cpu_channels_last=True)  # fmt: skip
    out = tmp_path / "moved"

    def resumed_from_checkpoint(cfg, max_steps=None):
        """Resume `out` with `cfg`; check the optimizer and RNG state it started from."""
        saved = read_checkpoint(out / "checkpoint.pt")
        result = fit(cfg, data_dir, out, progress=False, resume=True, max_steps=max_steps)
        state = restored[-1]
        assert state.keys() == saved["optimizer"]["state"].keys()
        for key, values in saved["optimizer"]["state"].items():
            assert state[key].keys() == values.keys()
            for name, value in values.items():
                assert torch.equal(state[key][name].cpu(), value), (key, name)
        steps = {int(v["step"]) for v in saved["optimizer"]["state"].values()}
        assert steps == {saved["step"]}  # Adam's own count: every parameter stepped each step
        assert torch.equal(rng_after_seeding[-1], saved["rng"]["torch"])
        return result

    fit(fp32, data_dir, out, progress=False, max_steps=2)
    assert resumed_from_checkpoint(bf16, max_steps=STEPS_PER_EPOCH + 1)["step"] == 5
    reference = tmp_path / "not_tagged"
    shutil.copytree(out, reference)

    saved = read_checkpoint(out / "checkpoint.pt")
    saved["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8)]  # a CUDA generator's state
    tag = torch.serialization.location_tag
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    torch.save(saved, out / "checkpoint.pt")
    monkeypatch.setattr(torch.serialization, "location_tag", tag)
    if not torch.cuda.is_available():  # the file's tensors do say cuda:0
        with pytest.raises(RuntimeError, match="on a CUDA device"):
            torch.load(out / "checkpoint.pt", weights_only=True)
    assert resumed_from_checkpoint(fp32)["step"] == 2 * STEPS_PER_EPOCH

    history = read_history(out)
    assert [(h["segment"], h["start_step"], h["end_step"], h["resumed"]) for h in history] == [
        (1, 0, 2, False),
        (2, 2, STEPS_PER_EPOCH + 1, True),
        (3, STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH, True),
    ]
    assert [(h["device"], h["precision"], h["channels_last"]) for h in history] == [
        ("cpu", "fp32", False),
        ("cpu", "bf16 autocast", True),
        ("cpu", "fp32", False),
    ]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "kind" not in r] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    # validations: each segment's end (steps 2, 5, 8) and the end of epoch 1 (step 4), once each
    assert [r["step"] for r in rows if r.get("kind") == "val"] == [2, 4, 5, 8]

    fit(fp32, data_dir, reference, progress=False, resume=True)
    a, b = read_checkpoint(reference / "checkpoint.pt"), read_checkpoint(out / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
