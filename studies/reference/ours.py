"""Our labelled arm beside the paper's: the runs trained with the auxiliary attribute loss
(ours, not the paper's method; `PRESET_attr`, `PRESET_attrv`) against their paper-faithful twins
`PRESET`, at equal samples, over seeds and by type, and what their routers learned.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pandas as pd

from qgmrn.analysis import curves, tables
from qgmrn.analysis._io import save_figure
from qgmrn.analysis.compare import (
    CI,
    equal_samples_frame,
    honest_frame,
    routing_frame,
    samples_text,
    val_rows,
)
from qgmrn.config import upgrade_config_dict
from studies.reference.naming import OURS_SUFFIX, OURS_SUFFIXES, SEED_RUN, ours_twins
from studies.reference.seeds import mean_over_seeds, seeds_frame, seeds_gap


def ours_arms(routed: str, names) -> dict[str, str]:
    """The arms of the comparison (label -> preset run name) that have a run among `names` (a
    run named after the preset, or one of its seed runs `PRESET_sN`): our routed run of each
    reach, our static run, and the paper's two."""
    arms = {f"ours routed, reach {reach}": f"{routed}{suffix}"
            for suffix, reach in OURS_SUFFIXES.items()}  # fmt: skip
    arms |= {
        "ours static": f"{routed}_static{OURS_SUFFIX}",
        "paper routed": routed,
        "paper static": f"{routed}_static",
    }
    presets = {m["preset"] if (m := SEED_RUN.match(n)) else n for n in names}
    return {label: preset for label, preset in arms.items() if preset in presets}


def ours_caption(equal: pd.DataFrame, twins: dict[str, str]) -> str:
    """Each run of our arm against its paper-faithful twin at the largest sample budget both
    reached (`equal_samples_frame`'s columns), in points."""
    parts = []
    for name, twin in twins.items():
        both = equal.loc[[name, twin]].dropna(axis=1)
        if both.empty:
            parts.append(f"{name}: no common budget with {twin} yet")
            continue
        budget = both.columns[-1]
        a, b = both.loc[name, budget], both.loc[twin, budget]
        parts.append(f"{name} {a:.1f} vs {twin} {b:.1f} at {budget} samples ({a - b:+.1f})")
    return "At equal training samples (val, percent): " + "; ".join(parts) + "."


def ours_comparison(
    ours: dict[str, Path],
    paper: dict[str, Path],
    routed: str = "brn_c16",
    prior: float | None = None,
):
    """Our labelled arm beside its paper-faithful twins: a dict with
    `equal` (validation accuracy, percent, at common sample budgets: `equal_samples_frame`),
    `caption` (`ours_caption`), `twins` (`ours_twins`), `by_type` and `step` (accuracy by type of
    the routed and static runs of both arms at the largest step all four validated, with the
    differences routed - static and ours - paper; None where one of the four is missing),
    `over_seeds` and `seeds_step` (the same by type at the largest step that every run of the
    four arms shares, the paper's arms over all their seeds `PRESET_sN` in `paper`: each arm's
    mean and standard deviation; None without such a step), `gaps` (at that step: each of our
    routed arms minus our static one and minus the paper's routed one, ours static minus the
    paper's, the paper's routed minus static; the difference of the means and the half-width of
    its 95% interval over seeds, `seeds_gap`, NaN for an arm of one seed) and `figure` (their
    validation curves against training samples up to the longest run of our arm, the budgets
    they are compared at; `prior`, a fraction: the question-type prior as a line)."""
    twins = ours_twins(ours, paper)
    both = ours | {t: paper[t] for t in twins.values()}
    arms = ours_arms(routed, ours | paper)
    routed_arms = [a for a in arms if a.startswith("ours routed")]
    complete = routed_arms and {"ours static", "paper routed", "paper static"} <= set(arms)
    over_seeds, seeds_step, gaps = None, None, None
    if complete:
        with contextlib.suppress(ValueError):
            frame, seeds_step = seeds_frame(ours | paper, arms)
            over_seeds = mean_over_seeds(frame)
            pairs = [(a, b) for a in routed_arms for b in ("ours static", "paper routed")]
            pairs += [("ours static", "paper static"), ("paper routed", "paper static")]
            gaps = pd.concat(
                seeds_gap(frame, a, b).loc[[f"{a} - {b}", f"{a} - {b} {CI}"]] for a, b in pairs
            )
    equal = equal_samples_frame(both)
    labels = {n: f"{n} (ours: + attribute loss{_reach_words(p)})" for n, p in ours.items()}
    labels |= {t: f"{t} (paper)" for t in twins.values()}
    reach = max((_samples_seen(p) for p in ours.values()), default=0) or None
    title = "our arm beside the paper's"
    if reach:
        title += f", to {samples_text(reach)} samples (the longest run of our arm)"
    figure = curves.plot_validation_curves(
        {labels[n]: p for n, p in both.items()}, title=title, prior=prior, max_samples=reach
    )
    by_type, step = None, None
    default_seed = {label: name for label, name in arms.items() if name in both}
    if complete and set(default_seed) == set(arms):
        with contextlib.suppress(ValueError):  # no common validation step yet
            frame, step = seeds_frame({n: both[n] for n in arms.values()}, arms)  # one seed each
            by_type = frame.droplevel("seed")
            for arm in routed_arms:
                reach = arm.removeprefix("ours routed, ")
                by_type.loc[f"ours ({reach}): routed - static"] = (
                    by_type.loc[arm] - by_type.loc["ours static"]
                )
                by_type.loc[f"routed: ours ({reach}) - paper"] = (
                    by_type.loc[arm] - by_type.loc["paper routed"]
                )
    return {
        "equal": equal,
        "caption": ours_caption(equal, twins),
        "twins": twins,
        "by_type": by_type,
        "step": step,
        "over_seeds": over_seeds,
        "gaps": gaps,
        "seeds_step": seeds_step,
        "figure": figure,
    }


def _samples_seen(run_dir: Path) -> int:
    """Training samples at a run's last validation pass (0 before its first)."""
    val = val_rows(run_dir)
    batch = curves.run_batch_size(run_dir) or 1
    return int(val.index.max()) * batch if len(val) else 0


def _reach_words(run_dir: Path) -> str:
    """The words ", reach R" for a routed run of our arm, from its config (an old one's reach
    upgraded to "all"); none for a static one (no router to reach)."""
    cfg = upgrade_config_dict(json.loads((Path(run_dir) / "config.json").read_text()))
    if cfg.get("model", {}).get("gate") == "static":
        return ""
    return f", reach {cfg['train']['attribute_loss_reach']}"


def ours_section(
    ours: dict[str, Path],
    paper: dict[str, Path],
    routed: str,
    figure: Path,
    prior: float | None = None,
) -> list[str]:
    """summary.md's section on our labelled arm (`ours_comparison`; `prior`, a fraction, drawn
    in its figure), its honest scores, and `figure` (the validation curves of the arm and its
    twins)."""
    c = ours_comparison(ours, paper, routed, prior)
    save_figure(c["figure"], figure)
    weights = sorted(
        {json.loads((p / "config.json").read_text())["train"]["attribute_loss_weight"]
         for p in ours.values()}
    )  # fmt: skip
    lines = [
        "## Our labelled arm: + an auxiliary attribute loss (ours, not the paper's method)",
        "",
        "One arm outside the paper's method is kept, apart, because the paper-faithful runs cannot",
        "approach the paper's accuracy within reach. These runs add a loss on a 1x1 head that",
        "reads y_L and predicts, per cell, the colour, shape, size and material of the object",
        "covering it (or none), labelled from the stream renderer's object buffer",
        f"(`qgmrn.data.attributes`; weight {', '.join(f'{w:g}' for w in weights)}). The head",
        "exists only in training: the model evaluated is the paper's. Everything else is the",
        "recipe of their paper-faithful twins; they stay out of every table above.",
        "",
        'Two reaches of the loss (`TrainConfig.attribute_loss_reach`): `PRESET_attr` ("all",',
        "the first runs) adds it to the VQA loss, so its gradient also reaches the router",
        'through the straight-through gates; `PRESET_attrv` ("visual") backpropagates it on',
        "its own into the visual network and the head only, so the router learns from the VQA",
        "loss alone. A static twin has no router to reach: `PRESET_static_attr` is the static",
        "arm of both.",
        "",
        "Validation accuracy (percent) at equal training samples:",
        "",
        tables.plain_markdown(c["equal"].round(1)),
        "",
        c["caption"],
        "",
        "Best on val beside the last validation pass and the last checkpoint on test:",
        "",
        tables.plain_markdown(honest_frame(ours)),
        "",
    ]
    if c["over_seeds"] is not None:
        lines += [
            f"By type at step {c['seeds_step']:,}, the last validation step every seed run shares",
            "(a fixed step, nothing chosen on val): each arm's mean over its seeds, and the",
            "standard deviation where it has more than one:",
            "",
            tables.plain_markdown(c["over_seeds"].round(1)),
            "",
            "The differences at that step, each beside the half-width of its 95% confidence",
            "interval (Welch's t over seeds, `welch`): a difference larger than it is one the",
            "seeds support; nan: an arm of one seed.",
            "",
            tables.plain_markdown(c["gaps"].round(1)),
            "",
        ]
    if c["by_type"] is not None:
        lines += [
            f"By type at step {c['step']:,}, the last validation step the default-seed runs of",
            "every arm share (a fixed step, nothing chosen on val; one seed each, no error bar):",
            "",
            tables.plain_markdown(c["by_type"].round(1)),
            "",
        ]

    routed_presets = {routed} | {f"{routed}{suffix}" for suffix in OURS_SUFFIXES}

    def is_routed(name: str) -> bool:  # the routed preset, our runs of it, and their seed runs
        m = SEED_RUN.match(name)
        return name in routed_presets or bool(m and m["preset"] in routed_presets)

    routes = routing_frame({n: p for n, p in (ours | paper).items() if is_routed(n)})
    if routes.index.isin(list(ours)).any() and len(routes) > 1:
        lines += [
            "What the routed BRNs' routers learned (their best.pt's routing paths on val;",
            "Figure 2's and Figure 3's numbers; `routing_frame`). Mind the budgets: `step`.",
            "",
            tables.plain_markdown(routes.round(3)),
            "",
        ]
    lines += [f"![our arm beside the paper's]({figure.name})", ""]
    return lines
