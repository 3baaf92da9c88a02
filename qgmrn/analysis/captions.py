"""The numbers behind the paper's figure claims, and whether they hold for a run.

A figure shows; a caption measures. Each function here turns a run's routing paths into the
number that decides the paper's claim about a figure, so that a notebook can print it under the
figure and say in words whether the claim holds at this budget:

- Figure 2 (sec. 4.4): routing paths of one question subtype gather together, more so in later
  stages. Measured by `subtype_separation`: per stage, how often a question's nearest routing
  path (over the stage's gates) belongs to a question of the same subtype, against chance.
- Figure 3 (sec. 4.4): fewer modules execute in deeper layers. Measured by `execution_trend`:
  the median execution ratio per layer and its least-squares slope over the layer index.

Dimension letters: N questions, G gates of a stage or of the whole network, L routed layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from qgmrn.analysis.routing import PER_SUBTYPE, sample_per_subtype, split_stages


def slope(values: Sequence[float]) -> float:
    """Least-squares slope of `values` against their index 0, 1, ... (0.0 for fewer than 2)."""
    y = np.asarray(values, dtype=float)
    if len(y) < 2:
        return 0.0
    x = np.arange(len(y), dtype=float)
    return float(np.polyfit(x, y, 1)[0])


def nearest_neighbour_agreement(x: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest-neighbour accuracy of `labels` from the rows of `x` (N, G).

    Distance: squared Euclidean (the Hamming distance on 0/1 gates). Test-time paths are binary,
    so many are tied; a question's score is the share of its *tied* nearest neighbours that have
    its label (the expected accuracy of 1-NN with random tie-breaking), so the result does not
    depend on the order of the rows. Returns the mean over the N questions.
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(x)
    if n < 2:
        raise ValueError(f"need at least 2 questions for a nearest neighbour, got {n}")
    sq = (x * x).sum(1)
    d = sq[:, None] + sq[None, :] - 2.0 * x @ x.T  # (N, N)
    np.fill_diagonal(d, np.inf)
    nearest = d <= d.min(1, keepdims=True) + 1e-9  # (N, N) tied nearest neighbours
    same = labels[:, None] == labels[None, :]
    return float(((nearest & same).sum(1) / nearest.sum(1)).mean())


def chance_agreement(labels: np.ndarray) -> float:
    """The nearest-neighbour accuracy of a neighbour drawn at random among the other questions:
    sum over labels of p_c (n_c - 1) / (N - 1)."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def subtype_separation(
    paths: np.ndarray,
    layer_sizes: Sequence[int],
    stage_of_layer: Sequence[int],
    subtypes: np.ndarray,
    *,
    per_subtype: int = PER_SUBTYPE,
    seed: int = 0,
) -> pd.DataFrame:
    """Figure 2's number: per stage, the nearest-neighbour subtype accuracy of the routing paths
    over that stage's gates (`nearest_neighbour_agreement`) on at most `per_subtype` questions
    of each subtype (drawn with `seed` as `routing.tsne_by_stage` draws them, so with the same
    arguments the number measures the figure's points), beside chance and their ratio.
    Index: stage, numbered 1 to S as the paper does (`routing.split_stages`); columns: n, gates,
    nn_accuracy, chance, lift (accuracy / chance)."""
    idx = sample_per_subtype(subtypes, per_subtype, seed)
    labels = np.asarray(subtypes)[idx]
    stages = split_stages(np.asarray(paths)[idx], layer_sizes, stage_of_layer)
    chance = chance_agreement(labels)
    rows = {}
    for stage, x in stages.items():
        acc = nearest_neighbour_agreement(x, labels)
        rows[stage] = {
            "n": len(labels),
            "gates": x.shape[1],
            "nn_accuracy": acc,
            "chance": chance,
            "lift": acc / chance,
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "stage"
    return frame


def execution_trend(ratios: np.ndarray) -> dict[str, object]:
    """Figure 3's number: from per-question execution ratios (N, L), the median ratio of each
    layer, its least-squares slope per layer, and the first and last layer's medians."""
    ratios = np.asarray(ratios, dtype=float)
    medians = np.median(ratios, axis=0)
    return {
        "medians": medians.round(3).tolist(),
        "slope_per_layer": slope(medians),
        "first": float(medians[0]),
        "last": float(medians[-1]),
    }


def separation_caption(frame: pd.DataFrame) -> str:
    """Figure 2's claim in words, with the numbers of `subtype_separation`."""
    acc = frame["nn_accuracy"].tolist()
    trend = slope(acc)
    per_stage = ", ".join(f"stage {s}: {a:.1%}" for s, a in zip(frame.index, acc, strict=True))
    grows = trend > 0 and acc[-1] > acc[0]
    monotone = bool(np.all(np.diff(acc) >= 0))
    above = bool((frame["lift"] > 1.2).all())
    if grows and above:
        verdict = "holds" if monotone else "holds in part"
    else:
        verdict = "does not hold"
    if not grows:
        growth = "does not grow with the stage"
    elif monotone:
        growth = "grows with the stage"
    else:
        growth = "rises from the first to the last stage, but not stage by stage,"
    return (
        f"Nearest-neighbour subtype accuracy of the routing paths ({per_stage}; chance "
        f"{frame['chance'].iloc[0]:.1%}), slope {trend:+.3f} per stage. The paper's claim "
        f"(paths of a subtype gather, more so in later stages) {verdict} for this run: "
        f"separation {growth} and is "
        + ("above" if above else "not clearly above")
        + " chance in every stage."
    )


def execution_caption(trends: Mapping[str, Mapping[str, object]]) -> str:
    """Figure 3's claim in words, one sentence per model, from `execution_trend`."""
    parts = []
    for label, t in trends.items():
        falls = t["slope_per_layer"] < 0 and t["last"] < t["first"]
        parts.append(
            f"{label}: median execution ratio {t['first']:.2f} in the first routed layer, "
            f"{t['last']:.2f} in the last, slope {t['slope_per_layer']:+.3f} per layer: "
            + ("falls with depth, as the paper reports" if falls else "does not fall with depth")
            + "."
        )
    return " ".join(parts)


# Table 2's comparisons, by our row labels (`tables.table2_run_names`): modules per layer with
# GroupNorm as the third norm, and each cardinality with BatchNorm vs GroupNorm.
CARDINALITY_ROWS: tuple[str, ...] = ("c=8, w/ q, gn", "c=16, w/ q, gn", "c=32, w/ q, gn")
NORM_PAIRS: tuple[tuple[str, str], ...] = (
    ("c=8, w/ q", "c=8, w/ q, gn"),
    ("c=16, w/ q", "c=16, w/ q, gn"),
    ("c=32, w/ q", "c=32, w/ q, gn"),
)
# the question feature to the classifier: (without, with), both BatchNorm rows
Q_ROWS: tuple[str, str] = ("c=16, w/o q", "c=16, w/ q")
ROUTED_STATIC = ("BRN (c=16)", "BRN (c=16), static twin (ours)")


def _ours_blocks(table: pd.DataFrame, column: str) -> dict[str, pd.Series]:
    """{our group: its rows' `column` by model label}, a label listed once (Table 2 repeats a
    row in several sections)."""
    out = {}
    for group in dict.fromkeys(table.index.get_level_values(0)):
        if not str(group).startswith("ours"):
            continue
        block = table.xs(group, level=0)[column]
        labels = block.index.get_level_values(-1)
        out[group] = pd.Series(block.to_numpy(), index=labels).groupby(level=0, sort=False).first()
    return out


def table_caption(table: pd.DataFrame, column: str = "Overall") -> str:
    """Tables 1 and 2 in words (as built by `qgmrn.analysis.tables`, with the question-type
    prior as a row, `tables.with_prior`): per block of our runs, the best row and how many rows
    beat the prior, and where the rows exist, the comparisons the paper makes: the routed BRN
    against its static twin (ours), the question feature to the classifier or not, c=8 < c=16 <
    c=32 (gn) and GroupNorm against BatchNorm."""
    prior_rows = [g for g in table.index.get_level_values(0) if str(g).startswith("prior")]
    prior = float(table.xs(prior_rows[0], level=0)[column].iloc[0]) if prior_rows else None
    parts = [f"Question-type prior {prior:.1f}." if prior is not None else "No prior row."]
    for group, rows in _ours_blocks(table, column).items():
        rows = rows.dropna()
        if rows.empty:
            continue
        best = rows.idxmax()
        text = f"{group}: best {best} at {rows[best]:.1f}"
        if prior is not None:
            above = int((rows > prior).sum())
            text += f" ({rows[best] - prior:+.1f} against the prior); {above} of {len(rows)} "
            text += "rows above the prior"
        sentences = [text + "."]
        routed, static = ROUTED_STATIC
        if routed in rows and static in rows:
            gap = rows[routed] - rows[static]
            sentences.append(
                f"Routed BRN (c=16) {rows[routed]:.1f} vs its static twin {rows[static]:.1f}: "
                f"{gap:+.1f} points, "
                + ("routing ahead." if gap > 0 else "routing not ahead at this budget.")
            )
        without, with_q = Q_ROWS
        if without in rows and with_q in rows:
            gap = rows[with_q] - rows[without]
            sentences.append(
                f"Question feature to the classifier (c=16): w/ q {rows[with_q]:.1f} vs w/o q "
                f"{rows[without]:.1f}: {gap:+.1f} points, "
                + ("w/ q ahead, as in the paper." if gap > 0 else "w/ q not ahead at this budget.")
            )
        if all(r in rows for r in CARDINALITY_ROWS):
            vals = [rows[r] for r in CARDINALITY_ROWS]
            order = vals[0] < vals[1] < vals[2]
            sentences.append(
                "Modules per layer (gn) c=8 / 16 / 32: "
                + " / ".join(f"{v:.1f}" for v in vals)
                + (
                    ": more modules, higher, as in the paper."
                    if order
                    else ": not in the paper's order (c=8 < c=16 < c=32) at this budget."
                )  # fmt: skip
            )
        pairs = [(rows[b], rows[g]) for b, g in NORM_PAIRS if b in rows and g in rows]
        if pairs:
            wins = sum(g > b for b, g in pairs)
            sentences.append(
                f"GroupNorm ahead of BatchNorm in {wins} of {len(pairs)} cardinalities ("
                + ", ".join(f"{g - b:+.1f}" for b, g in pairs)
                + " points; the paper: gn ahead in all three)."
            )
        parts.append(" ".join(sentences))
    return " ".join(parts)
