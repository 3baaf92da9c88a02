"""The routed model taken apart, for notebook 02: shapes at every step, the router's P~ for one
question (untrained and trained), noisy training paths beside the test-time path, the gradient a
closed gate still gets, what skipping closed modules saves at inference, path distances by
subtype, and the functions its exercises call (the open rate at another tau, a stage closed).

Dimension letters: B batch, T question length, D question feature, L routed layers, M_l modules
(gates) of layer l, G = sum of M_l, C channels, h w the final feature map, A answers.

Each function runs the model's own submodules in the order of `qgmrn.model.QGMRN.forward`
(text encoder -> router -> routed backbone -> coordinate maps -> head), so what it shows is
what the model computes.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from qgmrn.engine.losses import load_balance_loss, vqa_loss
from qgmrn.nn.gumbel import gumbel_sigmoid

# where each step lives, for the walkthrough's table
_FILES = {
    "text": "qgmrn/nn/text.py",
    "router": "qgmrn/nn/router.py + qgmrn/nn/gumbel.py",
    "backbone": "qgmrn/nn/routable.py + qgmrn/nn/blocks.py",
    "coords": "qgmrn/nn/coords.py",
    "head": "qgmrn/nn/heads.py",
}


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


@torch.no_grad()
def trace_shapes(
    model: nn.Module, images: Tensor, questions: Tensor, lengths: Tensor, *, layers: int = 2
) -> pd.DataFrame:
    """One forward pass of a routed model (`QGMRN`), step by step: a row per tensor with its
    shape, the paper's equation and the file that computes it. Routing logits P~ and gates are
    shown for the first `layers` routed layers and the last. The last row's logits equal
    ``model(images, questions, lengths).logits`` in eval mode (checked here)."""
    rows = [("question tokens", _shape(questions), "input", "qgmrn/data/dataset.py")]
    q = model.text(questions, lengths)  # (B, D)
    rows.append(("q: question feature", _shape(q), "eq. 1", _FILES["text"]))
    gates, gate_logits = model.router(q)  # L x (B, M_l)
    shown = sorted({*range(min(layers, len(gates))), len(gates) - 1})
    for layer in shown:
        rows.append(
            (f"P~ layer {layer + 1} of {len(gates)}", _shape(gate_logits[layer]), "eq. 3",
             _FILES["router"])
        )  # fmt: skip
        rows.append(
            (f"gates layer {layer + 1} (0/1)", _shape(gates[layer]), "sec. 3.3", _FILES["router"])
        )
    feats = model.backbone(images, gates)  # (B, C, h, w)
    rows.append(("y_L: routed backbone output", _shape(feats), "eq. 4", _FILES["backbone"]))
    y = model.coords(feats)  # (B, C + 2, h, w)
    rows.append(("y_L with coordinate maps", _shape(y), "sec. 4.2", _FILES["coords"]))
    logits = model.head(y, q)  # (B, A)
    rows.append(("logits", _shape(logits), "sec. 3.4", _FILES["head"]))
    if not model.training:
        full = model(images, questions, lengths).logits
        if not torch.allclose(full, logits, atol=1e-5):
            raise AssertionError("trace_shapes diverged from the model's forward")
    return pd.DataFrame(rows, columns=["step", "shape", "paper", "file"])


def load_balance_on_batch(
    model: nn.Module, images: Tensor, questions: Tensor, lengths: Tensor, answers: Tensor
) -> dict[str, float]:
    """The two terms of eq. 13 on one batch: the answer cross-entropy and L_load, with the
    mean execution ratio (the share of open gates) that L_load pulls towards balance."""
    with torch.no_grad():
        out = model(images, questions, lengths)
        gates = [g.float() for g in out.gates]
        return {
            "cross_entropy": float(vqa_loss(out.logits.float(), answers)),
            "load_balance": float(load_balance_loss(gates)) if gates else 0.0,
            "execution_ratio": float(torch.cat([g.reshape(-1) for g in gates]).mean()),
        }


def training_vs_test_paths(
    model: nn.Module, questions: Tensor, lengths: Tensor, *, samples: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The routing path of each question as training samples it (Gumbel noise: a different
    path per draw) and as the test-time path (noise-free: gate open iff P~ > 0).

    Returns (noisy (samples, B, G) uint8, test (B, G) uint8). The model's mode is restored."""
    was_training = model.training
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            q = model.text(questions, lengths)
            model.train()
            noisy = [torch.cat(model.router(q)[0], dim=1) for _ in range(samples)]
            model.eval()
            test = torch.cat(model.router(q)[0], dim=1)  # (B, G)
    finally:
        model.train(was_training)
    return torch.stack(noisy).to(torch.uint8).numpy(), test.to(torch.uint8).numpy()


def closed_gate_gradients(
    model: nn.Module,
    images: Tensor,
    questions: Tensor,
    lengths: Tensor,
    answers: Tensor,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """Why a closed module is still computed in training: one training-mode forward and
    backward; for the gates that came out closed (0) and open (1), the share whose routing
    logit P~ received a non-zero gradient. With the straight-through estimator a closed gate's
    gradient is dL/dy . (module output) x dB~/dP~, so the module's output must exist (the
    gradient is zero only where that output, or the gradient reaching it, is zero): only
    inference, which needs no gradient, may skip it (`sparse=True`). The model is left as it
    was: its mode, no gradients, and its BatchNorm statistics (which a training-mode forward
    updates) restored, so that the cells after this one see the model they loaded."""
    was_training = model.training
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    torch.manual_seed(seed)
    model.train()
    try:
        q = model.text(questions, lengths)
        gates, logits = model.router(q)
        for p in logits:
            p.retain_grad()
        out = model.head(model.coords(model.backbone(images, gates)), q)
        vqa_loss(out.float(), answers).backward()
        g = torch.cat([x.detach().reshape(-1) for x in gates])
        grad = torch.cat([p.grad.reshape(-1) for p in logits])
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    rows = []
    for state, mask in (("closed (0)", g == 0), ("open (1)", g == 1)):
        n = int(mask.sum())
        nonzero = int((grad[mask] != 0).sum())
        rows.append({"gates": state, "count": n, "with a non-zero gradient": nonzero})
    return pd.DataFrame(rows).set_index("gates")


def path_distances(
    paths: np.ndarray, subtypes: np.ndarray, *, max_pairs: int = 20000, seed: int = 0
) -> pd.DataFrame:
    """Mean Hamming distance (share of the G gates that differ) between the routing paths of
    question pairs of the same subtype and of different subtypes, over at most `max_pairs`
    random pairs of each kind. Index: within / across; columns: pairs, mean, std."""
    paths = np.asarray(paths)
    subtypes = np.asarray(subtypes)
    rng = np.random.default_rng(seed)
    n = len(paths)
    i = rng.integers(0, n, 4 * max_pairs)
    j = rng.integers(0, n, 4 * max_pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    same = subtypes[i] == subtypes[j]
    rows = {}
    for name, mask in (("within a subtype", same), ("across subtypes", ~same)):
        a, b = i[mask][:max_pairs], j[mask][:max_pairs]
        d = (paths[a] != paths[b]).mean(axis=1)
        rows[name] = {"pairs": len(d), "mean": float(d.mean()), "std": float(d.std())}
    return pd.DataFrame.from_dict(rows, orient="index")


def first_batch(
    dataset, size: int, indices: Sequence[int] | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(images (B, 3, H, W) normalized as in training, questions (B, T), lengths (B,), answers
    (B,)) of `size` items of a `qgmrn.data.ClevrQuestions` (the first ones, or `indices`)."""
    from qgmrn.data import normalize_images
    from qgmrn.data.dataset import collate

    idx = list(indices) if indices is not None else list(range(size))
    batch = collate([dataset[k] for k in idx])
    return normalize_images(batch.images), batch.questions, batch.lengths, batch.answers


def untrained_like(model_cfg, vocab, *, seed: int = 0, device: str = "cpu", **changes) -> nn.Module:
    """A freshly initialised model of `model_cfg` (a `qgmrn.config.ModelConfig`, e.g. a loaded
    run's ``cfg.model``) with `changes` to its fields (``init_exec_prob=0.3``), in eval mode:
    the run's model as it was before its first training step. Seeded; the global random state
    is left as it was."""
    from qgmrn.model import build_model

    cfg = dataclasses.replace(model_cfg, **changes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg, len(vocab), vocab.num_answers)
    return model.to(device).eval()


def _router(model: nn.Module) -> nn.Module:
    from qgmrn.nn.router import Router

    router = getattr(model, "router", None)
    if not isinstance(router, Router):
        raise ValueError(
            f"{type(model).__name__} has no learned router (a static twin or a baseline)"
        )
    return router


def _on(model: nn.Module, *tensors: Tensor) -> list[Tensor]:
    device = next(model.parameters()).device
    return [t.to(device) for t in tensors]


@torch.no_grad()
def routing_logits(model: nn.Module, questions: Tensor, lengths: Tensor) -> Tensor:
    """P~ = fc(q): the real-valued routing path of each question (eq. 3), every routed layer's
    gates in forward order. Shapes: questions (B, T), lengths (B,) -> (B, G)."""
    router = _router(model)
    questions, lengths = _on(model, questions, lengths)
    return router.fc(model.text(questions, lengths)).cpu()  # (B, G)


def router_view(
    models: Mapping[str, nn.Module], questions: Tensor, lengths: Tensor, *, layer: int = 0
) -> pd.DataFrame:
    """The router opened for one question (the first row of `questions`), per module of routed
    layer `layer` (0-based): P~, the probability sigmoid(P~) that training opens the module
    (eq. 9) and the test-time gate [P~ > 0] (sec. 4.2), for each model. Index: module;
    columns: (model, quantity)."""
    frames = {}
    for label, model in models.items():
        start = sum(model.gate_sizes[:layer])
        p = routing_logits(model, questions[:1], lengths[:1])[
            0, start : start + model.gate_sizes[layer]
        ]
        frames[label] = pd.DataFrame(
            {"P~": p.numpy(), "sigmoid(P~)": torch.sigmoid(p).numpy(), "test gate": (p > 0).int()}
        )
    out = pd.concat(frames, axis=1)
    out.index.name = "module"
    return out


def router_summary(
    model: nn.Module, questions: Tensor, lengths: Tensor, *, samples: int = 10_000, seed: int = 0
) -> pd.Series:
    """How the router treats the given questions (all gates, all layers): its bias b and the
    question-dependent part W q of P~ = W q + b, the mean opening probability sigmoid(P~) in
    training (eq. 9) beside the share of `samples` Gumbel-sigmoid draws (at the gate's tau) that
    opened, and the test-time execution ratio, the share of gates with P~ > 0 (sec. 4.2)."""
    router = _router(model)
    p = routing_logits(model, questions, lengths)  # (B, G)
    bias = router.fc.bias.detach().cpu()  # (G,)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        drawn = gumbel_sigmoid(p.expand(samples, *p.shape), router.gate.tau).mean()
    return pd.Series(
        {
            "bias b, mean over gates": float(bias.mean()),
            "sigmoid(b), mean over gates": float(torch.sigmoid(bias).mean()),
            "|W q|, largest": float((p - bias).abs().max()),
            "P~ = W q + b, smallest": float(p.min()),
            "P~ = W q + b, largest": float(p.max()),
            "training: sigmoid(P~), mean (eq. 9)": float(torch.sigmoid(p).mean()),
            f"training: open in {samples:,} Gumbel draws": float(drawn),
            "test: execution ratio, share of P~ > 0": float((p > 0).float().mean()),
        }
    )


def layer_open_rates(
    models: Mapping[str, nn.Module], questions: Tensor, lengths: Tensor
) -> pd.DataFrame:
    """The execution ratio of each routed layer (open modules / M_l) for the given questions
    (averaged over them), per model: expected in training (mean sigmoid(P~), eq. 9) and at test
    time ([P~ > 0]). The models share one architecture. Index: layer (1-based); columns:
    ("layer", stage (1-based) and modules M_l), then (model, quantity)."""
    first = next(iter(models.values()))
    columns = {
        ("layer", "stage"): [s + 1 for s in first.stage_of_layer],
        ("layer", "modules M_l"): list(first.gate_sizes),
    }
    for label, model in models.items():
        p = routing_logits(model, questions, lengths)  # (B, G)
        layers = p.split(list(model.gate_sizes), dim=1)  # L x (B, M_l)
        columns[(label, "training: sigmoid(P~)")] = [float(torch.sigmoid(c).mean()) for c in layers]
        columns[(label, "test: execution ratio")] = [float((c > 0).float().mean()) for c in layers]
    out = pd.DataFrame(columns, index=pd.RangeIndex(1, len(first.gate_sizes) + 1, name="layer"))
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out


def plot_router_logits(
    models: Mapping[str, nn.Module],
    questions: Tensor,
    lengths: Tensor,
    *,
    init_exec_prob: float | None = 0.7,
    title: str = "",
) -> Figure:
    """P~ of every gate for one question (the first row), one series per model, with the
    test-time threshold P~ = 0 (sigmoid 0.5) and the initial bias log(p / (1 - p)) for
    `init_exec_prob` p; dotted lines between routed layers, solid between stages."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    markers = iter("o^sDv")
    first = next(iter(models.values()))
    for label, model in models.items():
        p = routing_logits(model, questions[:1], lengths[:1])[0].numpy()
        ax.plot(np.arange(len(p)), p, next(markers, "o"), ms=3, alpha=0.8, label=label)
    edges = np.r_[0, np.cumsum(first.gate_sizes)]
    stages = first.stage_of_layer
    for layer in range(1, len(first.gate_sizes)):
        same = stages[layer] == stages[layer - 1]
        x = edges[layer] - 0.5
        ax.axvline(x, color="0.8" if same else "0.5", lw=0.8, ls=":" if same else "-")
    for stage in sorted(set(stages)):
        layers = [i for i, s in enumerate(stages) if s == stage]
        middle = (edges[layers[0]] + edges[layers[-1] + 1]) / 2
        ax.text(
            middle,
            1.01,
            f"stage {stage + 1}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
            color="0.3",
        )
    ax.axhline(0.0, color="C3", lw=1.0, label=r"test-time threshold $\tilde{P}$ = 0 (sigmoid 0.5)")
    if init_exec_prob is not None:
        b = math.log(init_exec_prob / (1 - init_exec_prob))
        label = f"initial bias log({init_exec_prob:g} / {1 - init_exec_prob:g})"
        ax.axhline(b, color="0.4", lw=1.0, ls="--", label=label)
    ax.set_xlabel(
        "gate (routed layers in order; dotted lines between layers, solid between stages)"
    )
    ax.set_ylabel(r"$\tilde{P}$ (routing logit)")
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False)
    if title:
        ax.set_title(title, fontsize=9, pad=16)
    fig.tight_layout()
    return fig


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def time_sparse_inference(
    model: nn.Module,
    images: Tensor,
    questions: Tensor,
    lengths: Tensor,
    *,
    batch_size: int | None = None,
    repeats: int = 5,
    threads: int | None = 1,
) -> dict[str, float]:
    """One pass of inference over the given questions, timed on this machine: the dense forward
    (every module computed, closed ones multiplied by 0) against the sparse one that skips the
    modules no question of a batch opens (``model(..., sparse=True)``, `qgmrn.nn.sparse`), in
    batches of `batch_size` (default: all at once). Eval mode, no gradient; one warm-up pass
    each, then `repeats` rounds, dense and sparse interleaved so that a busy spell of a shared
    machine slows both; times are medians. `threads`: torch's CPU threads while timing (restored
    after; None leaves them): one by default, as `benchmarks/bench_sparse.py`, since on a busy
    2-core machine two threads mostly wait for each other.

    Returns seconds per pass (``dense_s``, ``sparse_s``), ``speedup`` (dense / sparse, the median
    of the per-round ratios), the test-time ``execution_ratio`` (share of open gates, over the
    questions), ``computed_share`` (share of modules the sparse path computes: open for some
    question of its batch, averaged over batches), ``max_logit_diff`` and ``same_answers``
    (sparse against dense), ``questions``, ``batch_size`` and torch's ``threads``."""
    images, questions, lengths = _on(model, images, questions, lengths)
    n = len(questions)
    parts = _chunks(n, batch_size or n)
    was_training, kept_threads = model.training, torch.get_num_threads()
    model.eval()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.no_grad():

            def dense() -> list[Tensor]:
                return [model(images[s], questions[s], lengths[s]).logits for s in parts]

            def sparse() -> list[Tensor]:
                return [
                    model(images[s], questions[s], lengths[s], sparse=True).logits for s in parts
                ]

            d_logits, s_logits = torch.cat(dense()), torch.cat(sparse())  # warm-up, checked
            d_times, s_times = [], []
            sync = torch.cuda.synchronize if images.is_cuda else (lambda: None)
            for _ in range(repeats):
                for fn, times in ((dense, d_times), (sparse, s_times)):
                    sync()
                    t0 = time.perf_counter()
                    fn()
                    sync()
                    times.append(time.perf_counter() - t0)
            gates = model(images, questions, lengths).gates  # L x (B, M_l)
        used_threads = torch.get_num_threads()
    finally:
        model.train(was_training)
        torch.set_num_threads(kept_threads)
    open_ = torch.cat(gates, dim=1) > 0  # (B, G)
    computed = [float(open_[s].any(dim=0).float().mean()) for s in parts]
    return {
        "questions": n,
        "batch_size": batch_size or n,
        "threads": used_threads,
        "execution_ratio": float(open_.float().mean()),
        "computed_share": float(np.mean(computed)),
        "dense_s": statistics.median(d_times),
        "sparse_s": statistics.median(s_times),
        "speedup": statistics.median(d / s for d, s in zip(d_times, s_times, strict=True)),
        "max_logit_diff": float((d_logits - s_logits).abs().max()),
        "same_answers": float((d_logits.argmax(1) == s_logits.argmax(1)).float().mean()),
    }


def open_rate_at_tau(
    model: nn.Module,
    questions: Tensor,
    lengths: Tensor,
    tau: float,
    *,
    samples: int = 1000,
    seed: int = 0,
) -> pd.Series:
    """The router's gates for the given questions sampled as training samples them, at
    temperature `tau` (`gumbel_sigmoid` on the router's P~; the model itself is not changed):
    the rate sigmoid(P~) predicts (eq. 9), the share of hard gates that opened, the share of
    soft samples B~ within 0.1 of 0 or 1 (eq. 11), and the test-time share of open gates."""
    p = routing_logits(model, questions, lengths)  # (B, G)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        soft = gumbel_sigmoid(p.expand(samples, *p.shape), tau, hard=False)
    return pd.Series(
        {
            "tau": float(tau),
            "predicted: sigmoid(P~), mean": float(torch.sigmoid(p).mean()),
            "training: hard gates open": float((soft > 0.5).float().mean()),
            "training: soft B~ within 0.1 of 0 or 1": float(
                ((soft < 0.1) | (soft > 0.9)).float().mean()
            ),
            "test: gates open (P~ > 0)": float((p > 0).float().mean()),
        }
    )


def _forward_with_gates(
    model: nn.Module,
    images: Tensor,
    questions: Tensor,
    lengths: Tensor,
    edit: Callable[[list[Tensor]], list[Tensor]],
) -> Tensor:
    """`QGMRN.forward`'s logits with the routing path replaced by ``edit(gates)``."""
    q = model.text(questions, lengths)  # (B, D)
    gates, _ = model.router(q)  # L x (B, M_l)
    return model.head(model.coords(model.backbone(images, edit(list(gates)))), q)  # (B, A)


def accuracy_with_closed_stage(
    model: nn.Module, dataset, stage: int, *, questions: int = 256, batch_size: int = 64
) -> pd.DataFrame:
    """Test-time accuracy per question type on the first `questions` items of `dataset` (a
    `qgmrn.data.ClevrQuestions`), with the routing path as the router makes it and with every
    gate of `stage` (1-based) forced to 0: each of its blocks then passes its shortcut only
    (eq. 4 with P = 0). Index: question types in `qgmrn.clevr.QUESTION_TYPES` order, then "all";
    columns: questions, both accuracies, the change in points and two standard errors of that
    change (paired over the same questions: a change within it may be chance)."""
    from qgmrn.clevr import QUESTION_TYPES, SUBTYPE_TO_TYPE, SUBTYPES

    stages = sorted(set(model.stage_of_layer))
    if stage - 1 not in stages:
        raise ValueError(f"stage {stage} does not exist: this model has stages 1..{len(stages)}")
    closed = [s == stage - 1 for s in model.stage_of_layer]

    def close(gates: list[Tensor]) -> list[Tensor]:
        return [torch.zeros_like(g) if c else g for g, c in zip(gates, closed, strict=True)]

    n = min(questions, len(dataset))
    correct = {"as routed": [], "closed": []}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for part in _chunks(n, batch_size):
                batch = first_batch(dataset, 0, range(part.start, part.stop))
                images, qs, ls, answers = _on(model, *batch)
                routed = model(images, qs, ls).logits.argmax(1)
                shut = _forward_with_gates(model, images, qs, ls, close).argmax(1)
                correct["as routed"].append((routed == answers).cpu())
                correct["closed"].append((shut == answers).cpu())
    finally:
        model.train(was_training)
    types = np.array(
        [
            SUBTYPE_TO_TYPE.get(SUBTYPES[s], "?") if s >= 0 else "?"
            for s in np.asarray(dataset.subtypes[:n])
        ]
    )
    routed = torch.cat(correct["as routed"]).numpy()
    shut = torch.cat(correct["closed"]).numpy()
    rows = {}
    for name in [t for t in QUESTION_TYPES if (types == t).any()] + ["all"]:
        mask = np.ones(n, bool) if name == "all" else types == name
        change = shut[mask].astype(float) - routed[mask]  # per question: -1, 0 or 1
        rows[name] = {
            "questions": int(mask.sum()),
            "accuracy, as routed": float(routed[mask].mean()),
            f"accuracy, stage {stage} closed": float(shut[mask].mean()),
            "change (points)": 100 * float(change.mean()),
            "2 s.e. (points)": 200 * float(change.std(ddof=1) / np.sqrt(len(change)))
            if len(change) > 1
            else float("nan"),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "question type"
    return out
