"""The training loop (paper sec. 3.5, 4.2), read top to bottom: `train_loop` runs epochs until
the budget is spent, `train_one_epoch` the steps of one, `train_step` one optimizer step
(loss = CE + lambda * L_load, eq. 13), `validate` scores the weights on the validation split and
`final_eval` the best ones at the end. The bookkeeping they share (why an epoch stops, the
running means of the log, the non-finite check) follows them.

Exact resume: epoch e visits the training set in the order ``randperm(n, seed + e)`` (the stream:
the scenes of step s, whatever the step it starts from); a checkpoint records the step, the epoch,
how many of its batches were consumed, the optimizer and every RNG state, so a run killed at any
moment and resumed ends with the same parameters, bit for bit on CPU, as the uninterrupted run.
Under torchrun every rank runs this loop on its share of each batch; rank 0 writes the files.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from qgmrn.data.dataset import closing_loader
from qgmrn.data.stream import SceneStream, stream_batches
from qgmrn.engine import checkpoint as ckpt
from qgmrn.engine import distributed as qdist
from qgmrn.engine import losses
from qgmrn.engine.errors import NonFiniteLossError
from qgmrn.engine.evaluate import (
    gather_predictions,
    predict,
    routing_arrays,
    save_routing_paths,
    scores,
)
from qgmrn.engine.run import Run, save_resume_checkpoint, save_run_checkpoint
from qgmrn.engine.runtime import autocast, batch_images, sampled_loader
from qgmrn.engine.schedules import lr_at, tau_at
from qgmrn.fileio import atomic_write_json
from qgmrn.model import set_tau

# The fixed split's loader seeds its workers with seed * EPOCH_SEED_STRIDE + epoch: distinct for
# every (seed, epoch) pair while epoch < EPOCH_SEED_STRIDE. Changing it changes every run's data
# order (and breaks the exact resume of runs started before the change).
EPOCH_SEED_STRIDE = 100_003
# the stop reason of a run asked to stop by SIGINT/SIGTERM (qgmrn.engine.interrupt): not finished
INTERRUPTED = "interrupted"


def train_loop(run: Run) -> str:
    """Epochs until the budget (epochs, minutes, steps) is spent, validating at epoch ends and
    every `eval_every_steps`, checkpointing after each stretch; returns why it stopped."""
    tc, state = run.cfg.train, run.state
    stop_reason = None
    if run.max_steps is not None and state.step >= run.max_steps:
        stop_reason = "max_steps"
        save_resume_checkpoint(run)
    while stop_reason is None and state.epoch < tc.epochs:
        stop_reason = train_one_epoch(run, _epoch_batches(run))
        # a step-based validation due at this step, also when a stop request came first (the
        # resumed run would not redo it)
        due = stop_reason == "validate" or (stop_reason == INTERRUPTED and _validation_due(run))
        if stop_reason == "validate":
            stop_reason = None
        if state.batch_in_epoch >= run.steps_per_epoch:  # the epoch is complete
            state.epoch += 1
            state.batch_in_epoch = 0
            due |= bool(tc.eval_every_epochs) and state.epoch % max(tc.eval_every_epochs, 1) == 0
        if due:
            validate(run)
        save_resume_checkpoint(run)
        if run.stop.requested:  # asked during the validation or the save: no further step
            stop_reason = INTERRUPTED
    return stop_reason or "epochs"


def train_one_epoch(run: Run, loader: Iterable) -> str | None:
    """Train on the rest of the current epoch, logging every `log_every` steps and saving
    checkpoint.pt every `checkpoint_every_steps`. Returns why it stopped early (`_stop_reason`)
    or None when the epoch is done. Updates `run.state` as it goes."""
    tc, s = run.cfg.train, run.state
    run.model.train()
    means = _RunningMeans(run.device)
    cheap_check = run.device.type == "cpu" and not run.info.enabled  # no sync to wait for
    bar = tqdm(
        total=run.steps_per_epoch,
        initial=s.batch_in_epoch,
        desc=f"epoch {s.epoch}",
        leave=False,
        disable=not (run.progress and run.info.is_main),
    )
    stop, t_prev = None, time.perf_counter()
    try:
        for batch in loader:
            means.wait += time.perf_counter() - t_prev
            out = train_step(run, batch)
            means.add(out, s.step, run.info.world_size)
            s.step += 1
            s.batch_in_epoch += 1
            bar.update(1)
            now = time.perf_counter()
            s.train_seconds += now - t_prev  # data loading included
            t_prev = now
            if cheap_check:  # stop at the very step
                _check_finite(means.first_bad, run)
            if s.step % tc.log_every == 0:
                _check_finite(means.first_bad, run)
                row = means.row(run, out)
                run.log.write(row)
                bar.set_postfix(
                    loss=f"{row['loss']:.3f}", acc=f"{row['acc']:.3f}", lr=f"{out.lr:.1e}"
                )
            if tc.checkpoint_every_steps and s.step % tc.checkpoint_every_steps == 0:
                _check_finite(means.first_bad, run)
                save_resume_checkpoint(run)
            stop = _stop_reason(run)
            if stop is not None:
                break
        _check_finite(means.first_bad, run)
    finally:
        bar.close()
    return stop


def train_step(run: Run, batch) -> StepOutput:
    """One optimizer step: lr and tau of this step (`qgmrn.engine.schedules`), the forward pass
    under autocast, loss = CE + lambda * L_load (eq. 13), backward through the straight-through
    gates, optional gradient clipping, the Adam step. With the auxiliary attribute loss (ours)
    its weighted term joins that loss (reach "all") or takes a backward pass of its own into the
    visual network and its head only (reach "visual", `AttributeLoss.inputs`)."""
    tc, step = run.cfg.train, run.state.step
    model, opt, device = run.model, run.optimizer, run.device
    lr, tau = lr_at(step, tc), tau_at(step, tc)
    for group in opt.param_groups:
        group["lr"] = lr
    set_tau(ckpt.unwrap(model), tau)
    images = batch_images(batch, device, run.channels_last)  # (B, 3, H, W)
    questions = batch.questions.to(device, non_blocking=True)  # (B, T)
    lengths = batch.lengths.to(device, non_blocking=True)  # (B,)
    answers = batch.answers.to(device, non_blocking=True)  # (B,)
    with autocast(device, run.amp):
        out = model(images, questions, lengths)
        ce = losses.vqa_loss(out.logits.float(), answers)
        load = (
            losses.load_balance_loss([g.float() for g in out.gates])
            if out.gates
            else torch.zeros((), device=device)
        )
        loss = ce + tc.load_balance_weight * load
        attr, own = None, None
        if run.attributes is not None:  # ours: the auxiliary attribute loss on y_L
            attr_loss, attr_acc = run.attributes(batch)
            weighted = tc.attribute_loss_weight * attr_loss
            if run.attributes.inputs is None:
                loss = loss + weighted  # reach "all": through the gates into the router too
            else:
                own = weighted  # reach "visual": its own backward pass below
            attr = torch.stack([attr_loss.detach().float(), attr_acc])
    finite = torch.isfinite(loss.detach())
    opt.zero_grad(set_to_none=True)
    if own is not None:
        finite = finite & torch.isfinite(own.detach())
        # restricted to the visual network and the head: none of it reaches the router, whose
        # gates then learn from the VQA loss alone (the graph is kept for that loss's pass)
        own.backward(inputs=run.attributes.inputs, retain_graph=step >= tc.attribute_pretrain_steps)
    if attr is not None and step < tc.attribute_pretrain_steps:
        if own is None:  # reach "all": the attribute term alone, through the whole model
            (tc.attribute_loss_weight * attr_loss).backward()
    else:
        loss.backward()
    if tc.grad_clip is not None:
        # every optimised parameter: the model's and, when on, the attribute head's
        nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], tc.grad_clip)
    opt.step()
    with torch.no_grad():
        correct = (out.logits.argmax(-1) == answers).float().mean()
        ratios = [g.detach().float().mean() for g in out.gates]
    return StepOutput(
        ce.detach().float(),
        load.detach().float(),
        correct,
        ratios,
        finite,
        lr,
        tau,
        len(answers),
        attr,
    )


def validate(run: Run, *, collect_paths: bool = False) -> dict[str, Any]:
    """Score the current weights on the validation split: a "val" row in metrics.jsonl, and
    best.pt when they beat the best so far. `collect_paths`: keep the predictions with their
    routing paths in `run.last_val_pred` (the end-of-run validation, for `final_eval`)."""
    state, split = run.state, run.data.eval_split
    pred = predict(
        run.model,
        run.val_loader,
        run.device,
        amp=run.amp,
        channels_last=run.channels_last,
        collect_paths=collect_paths,
        progress=run.progress,
        desc=f"eval {split}",
    )
    pred = gather_predictions(pred, run.info)
    run.last_val_pred = pred if collect_paths else None
    result = scores(pred, split, run.data.val.depths)
    run.log.write(
        {
            "kind": "val",
            "step": state.step,
            "epoch": state.epoch,
            "split": split,
            "n": result["n"],
            "overall": result["overall"],
            "by_type": result["by_type"],
            "by_depth": result["by_depth"],
            "by_type_depth0": result.get("by_type_depth0", {}),
        }
    )
    run.last_val_step = state.step
    acc = result["overall"] if result["overall"] is not None else -1.0
    if state.best_val_acc is None or acc > state.best_val_acc:
        state.best_val_acc, state.best_step = acc, state.step
        save_run_checkpoint(run, run.out_dir / "best.pt", with_optimizer=False)
    return result


def final_eval(run: Run, stop_reason: str, t_start: float) -> dict[str, Any]:
    """Evaluate the best weights (best.pt) once more, collecting routing paths; write
    eval.json and routing_paths.npz. Returns the eval dict."""
    tc, state, info, device = run.cfg.train, run.state, run.info, run.device
    best_path = run.out_dir / "best.pt"
    qdist.barrier(info)  # best.pt is written by rank 0
    model_eval = ckpt.unwrap(run.model)
    used = "best.pt" if best_path.exists() else "checkpoint.pt"
    best_is_current = state.best_step == state.step
    if best_path.exists() and not best_is_current:
        model_eval.load_state_dict(ckpt.read_checkpoint(best_path)["model"])
    if best_is_current and run.last_val_pred is not None and run.last_val_step == state.step:
        pred = run.last_val_pred  # the end-of-run validation scored these very weights
    else:
        pred = predict(
            model_eval,
            run.val_loader,
            device,
            amp=run.amp,
            channels_last=run.channels_last,
            collect_paths=True,
            progress=run.progress,
            desc="routing paths",
        )
        pred = gather_predictions(pred, info)
    result = scores(pred, run.data.eval_split, run.data.val.depths)
    result.update(
        checkpoint=used,
        checkpoint_step=state.best_step,
        train={
            "steps": state.step,
            "epochs_completed": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "steps_per_epoch": run.steps_per_epoch,
            # whole epochs plus the part of the current one: "0.4 epochs", not "0 epochs"
            "epochs_seen": state.epoch + state.batch_in_epoch / max(1, run.steps_per_epoch),
            "stop_reason": stop_reason,
            "epochs_budget": tc.epochs,
            "max_minutes": tc.max_minutes,
            "train_minutes": state.train_seconds / 60.0,
            "wall_minutes_this_call": (time.monotonic() - t_start) / 60.0,
            "global_batch": tc.batch_size,
            "world_size": info.world_size,
            "device": str(device),
            "torch": torch.__version__,
        },
    )
    if info.is_main:
        atomic_write_json(
            run.out_dir / "eval.json", result, indent=2, trailing_newline=True, fsync=False
        )
        save_routing_paths(run.out_dir / "routing_paths.npz", routing_arrays(model_eval, pred))
    return result


# --------------------------------------------------------------------------------------------
# the bookkeeping of the loop


def _epoch_batches(run: Run) -> Iterable:
    """The batches of the rest of the current epoch: this rank's share of a seeded permutation
    of the train split, or the next steps of the training stream."""
    tc, state, info, train = run.cfg.train, run.state, run.info, run.data.train
    if isinstance(train, SceneStream):
        rest = run.steps_per_epoch - state.batch_in_epoch
        batches = stream_batches(train, state.step, run.cfg.data.num_workers, run.device)
        return itertools.islice(batches, rest)
    sampler = qdist.ResumableSampler(
        train,
        num_replicas=info.world_size,
        rank=info.rank,
        seed=tc.seed,
        epoch=state.epoch,
        start=state.batch_in_epoch * run.data.per_rank_batch,
    )
    loader = sampled_loader(
        train,
        sampler,
        run.data.per_rank_batch,
        run.cfg.data.num_workers,
        run.device,
        seed=tc.seed * EPOCH_SEED_STRIDE + state.epoch,
        drop_last=True,
    )
    return closing_loader(loader)


def _validation_due(run: Run) -> bool:
    """Whether a step-based validation (`eval_every_steps`) falls on the current step."""
    every = run.cfg.train.eval_every_steps
    return bool(every) and run.state.step % every == 0


def _stop_reason(run: Run) -> str | None:
    """Why the epoch stops after this step: INTERRUPTED (SIGINT/SIGTERM), "max_steps",
    "validate" (a step-based validation is due) or "max_minutes"; None to go on."""
    tc, s = run.cfg.train, run.state
    if run.stop.requested:
        return INTERRUPTED
    if run.max_steps is not None and s.step >= run.max_steps:
        return "max_steps"
    if _validation_due(run):
        return "validate"
    # under DDP the ranks agree on the wall-clock budget at log steps only
    if tc.max_minutes is not None and (not run.info.enabled or s.step % tc.log_every == 0):
        spent = s.train_seconds >= tc.max_minutes * 60.0
        if qdist.any_true(spent, run.info, run.device):
            return "max_minutes"
    return None


@dataclass
class StepOutput:
    """What one training step leaves for the log, detached, on the device."""

    ce: Tensor  # () cross-entropy
    load: Tensor  # () load-balancing loss L_load (0 for a model without gates)
    correct: Tensor  # () fraction of the batch answered right
    exec_ratio: list[Tensor]  # per modular layer: () mean of its gates
    finite: Tensor  # () bool: the loss was finite
    lr: float
    tau: float
    batch: int
    attributes: Tensor | None = None  # (2,) auxiliary attribute loss and cell accuracy (ours)


class _RunningMeans:
    """Sums since the last log row, kept on the device (no per-step host sync on a GPU), and
    the first step whose loss was not finite (-1: none yet)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self._reset()

    def _reset(self) -> None:
        self.sums = torch.zeros(3, device=self.device)  # ce, load, correct
        self.attr: Tensor | None = None  # auxiliary attribute loss, cell accuracy (ours)
        self.exec: list[Tensor] = []
        self.steps = self.samples = 0
        self.wait = 0.0  # seconds spent waiting for the loader
        self.t0 = time.perf_counter()

    def add(self, out: StepOutput, step: int, world_size: int) -> None:
        bad = (self.first_bad < 0) & ~out.finite
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, step), self.first_bad)
        self.sums += torch.stack([out.ce, out.load, out.correct])
        if out.attributes is not None:
            self.attr = out.attributes if self.attr is None else self.attr + out.attributes
        if self.exec:
            self.exec = [a + r for a, r in zip(self.exec, out.exec_ratio, strict=True)]
        else:
            self.exec = list(out.exec_ratio)
        self.steps += 1
        self.samples += out.batch * world_size

    def row(self, run: Run, out: StepOutput) -> dict[str, Any]:
        """The log row of the steps since the last one (averaged over ranks), then reset."""
        sums = torch.cat([self.sums, torch.stack(self.exec)]) if self.exec else self.sums
        if run.info.enabled:
            torch.distributed.all_reduce(sums)
            sums /= run.info.world_size
        vals = (sums / self.steps).tolist()
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        row = {
            "step": run.state.step,
            "epoch": run.state.epoch,
            "loss": vals[0],
            "load_loss": vals[1],
            "acc": vals[2],
            "lr": out.lr,
            "tau": out.tau,
            "samples_per_s": self.samples / elapsed,
            "data_wait_frac": self.wait / elapsed,
            "exec_ratio": vals[3:],
        }
        if self.attr is not None:  # one process only (build_attribute_loss): no all-reduce
            row["attr_loss"], row["attr_acc"] = (self.attr / self.steps).tolist()
        self._reset()
        return row


def _check_finite(first_bad: Tensor, run: Run) -> None:
    if run.info.enabled:  # all ranks stop together, naming the earliest bad step
        never = torch.iinfo(torch.long).max
        t = torch.where(first_bad < 0, torch.full_like(first_bad, never), first_bad)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        first_bad = torch.where(t == never, torch.full_like(t, -1), t)
    bad = int(first_bad.item())
    if bad >= 0:
        last = run.out_dir / "checkpoint.pt"
        kept = f"the last good checkpoint {last} is kept" if last.exists() else "no checkpoint"
        raise NonFiniteLossError(
            f"non-finite training loss at step {bad} (epoch {run.state.epoch}); training "
            f"stopped, {kept} (lower the learning rate or enable grad_clip)"
        )
