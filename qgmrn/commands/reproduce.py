"""`qgmrn reproduce`: run notebooks 01-06 in order through papermill, then 00.

Each notebook is executed with the parameters ``profile``, ``device``, ``data_dir`` and
``results_dir`` (plus the profile's step budgets, `STEP_PARAMETERS`) and written, with its
outputs, to ``<results>/<profile>/notebooks/``. Steps are timed; the first failure stops the run
with a message naming the notebook. ``--update-notebooks`` copies the executed notebooks back
into ``notebooks/``, papermill's injected-parameters cell included (it shows the values the run
used), which is how the committed notebooks come to carry the outputs of a real demo run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import time
from pathlib import Path

from qgmrn.commands import add_data_dir_argument
from qgmrn.config import PROFILES
from qgmrn.fileio import project_root

# The pipeline, in order. 00_overview comes last: its table of runs reads what 01-06 wrote, so
# it stays in step with them.
NOTEBOOKS: tuple[str, ...] = (
    "01_data_preparation",
    "02_model_walkthrough",
    "03_train",
    "04_ablations",
    "05_clevr_humans",
    "06_figures",
    "00_overview",
)


# Per-profile budgets of the steps that train (ours); profiles not listed (smoke, paper) keep the
# profile's own TrainConfig, as does every other use (03_train run by hand, `qgmrn train`).
# 03 trains for a number of steps, not minutes: at 5 minutes it read 42.6% on a loaded machine
# (500 steps), level with the question-type prior, and what it reached depended on the machine's
# load. 800 steps are 51,200 samples at batch 64; the plateau study's arm of this recipe
# (results/studies/plateau/runs/lr1e-3_perception) read 45.0% at its first pass, 781 steps = 50k
# samples. max_minutes is only a cap for a machine far slower than ours. 05 fine-tunes for 300
# steps for the same reason (1.5 minutes gave 331 steps and 41.0% on a quiet machine, 141 steps
# and 33.8% on a loaded one). 04 trains nothing under demo (its Table 2 comes from the
# reference seed runs; `qgmrn.analysis.ablations`).
STEP_PARAMETERS: dict[str, dict[str, dict[str, object]]] = {
    "demo": {
        "03_train": {"max_steps": 800, "max_minutes": 20.0},
        "05_clevr_humans": {"max_steps": 300, "max_minutes": 10.0},
    },
}


def select(only: str | None) -> list[str]:
    """Notebooks named by `only` ("01,03" or "03_train"), in pipeline order; all if None."""
    if not only:
        return list(NOTEBOOKS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = []
    for w in wanted:
        matches = [nb for nb in NOTEBOOKS if nb == w or nb.split("_", 1)[0] == w.zfill(2)]
        if not matches:
            raise ValueError(f"--only: no notebook {w!r}; choose from {', '.join(NOTEBOOKS)}")
        chosen += matches
    return [nb for nb in NOTEBOOKS if nb in chosen]


def execute_notebook(
    name: str,
    output: str | Path,
    parameters: dict,
    *,
    notebooks_dir: str | Path | None = None,
    kernel: str = "python3",
) -> float:
    """Execute ``notebooks/<name>.ipynb`` with `parameters` into `output`; returns seconds.

    The kernel runs in the project root; errors propagate (papermill's
    ``PapermillExecutionError`` names the cell and the exception).
    """
    import papermill as pm

    root = project_root()
    nb_dir = Path(notebooks_dir) if notebooks_dir else root / "notebooks"
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # the kernel's own log lines (e.g. ipykernel's "running over TCP without encryption") go to
    # a file beside the executed notebook, not into the output of the notebook that called this
    with stderr_of_children_to(Path(output).with_suffix(".kernel.log")):
        pm.execute_notebook(
            str(nb_dir / f"{name}.ipynb"),
            str(output),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(root),
            progress_bar=False,
        )
    return time.perf_counter() - t0


@contextlib.contextmanager
def stderr_of_children_to(path: str | Path):
    """Within the block, processes started from here inherit `path` (appended to) as their
    standard error. File descriptor 2 itself is redirected, since a child writes there directly;
    Python's `sys.stderr` (inside a Jupyter kernel, the cell's output) is left as it is."""
    saved = os.dup(2)
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield Path(path)
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="demo", choices=PROFILES, help="default: demo")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    add_data_dir_argument(parser, "data directory (default: the profile's)")
    parser.add_argument(
        "--results-dir",
        "--results",
        default="results",
        help="results root, the notebooks' results_dir (default: results; --results still works)",
    )
    parser.add_argument("--only", default=None, help="comma-separated notebooks, e.g. 01,03")
    parser.add_argument(
        "--notebooks", default=None, help="folder with the notebooks (default: <project>/notebooks)"
    )
    parser.add_argument(
        "--train-source",
        choices=("fixed", "stream"),
        default=None,
        help="training data of 03/04: the train split's files or fresh scenes (default: profile)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="04: keep the Table 2 runs that already have an eval.json instead of retraining "
        "them (by default every run is recomputed)",
    )
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel (default: python3)")
    parser.add_argument(
        "--update-notebooks",
        action="store_true",
        help="copy the executed notebooks, with their outputs, back into notebooks/",
    )


def _fmt_seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def run(args: argparse.Namespace) -> int:
    missing = [
        m for m in ("papermill", "pandas", "matplotlib") if importlib.util.find_spec(m) is None
    ]
    if missing:
        print(
            f"qgmrn reproduce: error: {', '.join(missing)} not installed: the notebooks need the "
            "notebooks extra: pip install -e '.[notebooks]' (make reproduce installs it)",
            file=sys.stderr,
        )
        return 1
    root = project_root()
    nb_dir = Path(args.notebooks) if args.notebooks else root / "notebooks"
    # Paths stay as given: the kernel runs in the project root, and relative paths keep the
    # executed notebooks free of this machine's absolute paths.
    results = Path(args.results_dir)
    data_dir = args.data_dir or ""
    out_dir = results / args.profile / "notebooks"
    try:
        names = select(args.only)
    except ValueError as e:
        print(f"qgmrn reproduce: {e}", file=sys.stderr)
        return 2
    missing = [n for n in names if not (nb_dir / f"{n}.ipynb").exists()]
    if missing:
        print(
            f"qgmrn reproduce: missing notebook(s) in {nb_dir}: {', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {
        "profile": args.profile,
        "device": args.device,
        "data_dir": data_dir,
        "results_dir": str(results),
    }
    print(f"qgmrn reproduce: profile={args.profile} device={args.device} -> {results}")
    if args.reuse:
        print("qgmrn reproduce: --reuse: 04 keeps Table 2 runs that already have an eval.json")
    timings: list[tuple[str, float]] = []
    for name in names:
        out_nb = out_dir / f"{name}.ipynb"
        print(f"[{name}] running ...", flush=True)
        t0 = time.perf_counter()
        try:
            step_params = {**params, **STEP_PARAMETERS.get(args.profile, {}).get(name, {})}
            if args.train_source and name in ("03_train", "04_ablations"):
                step_params["train_source"] = args.train_source
            if name == "03_train":
                step_params["overwrite"] = True  # reproduce recomputes the run it reports
            if name == "04_ablations":
                step_params["reuse"] = bool(args.reuse)
            execute_notebook(name, out_nb, step_params, notebooks_dir=nb_dir, kernel=args.kernel)
        except Exception as e:  # papermill raises PapermillExecutionError with the cell's error
            elapsed = time.perf_counter() - t0
            reason = f"{getattr(e, 'ename', type(e).__name__)}: {getattr(e, 'evalue', e)}"
            print(
                f"qgmrn reproduce: notebook {name} FAILED after {_fmt_seconds(elapsed)}: "
                f"{reason}\n  the executed notebook, with the traceback, is {out_nb}",
                file=sys.stderr,
            )
            _summary(timings, results, args.profile)
            return 1
        elapsed = time.perf_counter() - t0
        timings.append((name, elapsed))
        print(f"[{name}] done in {_fmt_seconds(elapsed)} -> {out_nb}", flush=True)
    _summary(timings, results, args.profile)
    if args.update_notebooks:
        for name, _t in timings:
            update_committed_notebook(out_dir / f"{name}.ipynb", nb_dir / f"{name}.ipynb")
        print(f"updated {len(timings)} notebook(s) in {nb_dir} with these outputs")
    return 0


def update_committed_notebook(executed: Path, target: Path) -> None:
    """Write `executed` to `target` (atomically), papermill's injected-parameters cell kept:
    a reader sees the notebook's defaults in its ``parameters`` cell and, right below, the
    values the run that made the outputs used (a budget of 5 minutes where the default says 0,
    say). Papermill's record of the notebook it ran reads relative to the project root."""
    import json

    from qgmrn.fileio import atomic_write_json

    nb = json.loads(Path(executed).read_text())
    meta = nb.get("metadata", {}).get("papermill", {})
    with contextlib.suppress(KeyError, ValueError):  # no machine's absolute path in the record
        meta["input_path"] = str(Path(meta["input_path"]).resolve().relative_to(project_root()))
    atomic_write_json(target, nb, indent=1, ensure_ascii=False, trailing_newline=True, fsync=False)


def _summary(timings: list[tuple[str, float]], results: Path, profile: str) -> None:
    if not timings:
        return
    print("\nstep                      time")
    for name, t in timings:
        print(f"{name:<25} {_fmt_seconds(t)}")
    print(f"{'total':<25} {_fmt_seconds(sum(t for _, t in timings))}")
    base = results / profile
    print(
        f"\nresults: {base}\n  notebooks: {base / 'notebooks'}\n  runs: {base / 'runs'}\n"
        f"  tables: {base / 'tables'}\n  figures: {base / 'figures'}"
    )
