"""From run directories to the paper's tables and figures; notebooks call only these.

- `tables`: Tables 1 and 2, the paper's published numbers beside ours (csv + markdown).
- `routing`: routing_paths.npz, stages, t-SNE per stage (Fig. 2), execution ratios (Fig. 3).
- `saliency`: gradient saliency of one image under several questions (Fig. 4).
- `curves`: learning curves (metrics.jsonl) and accuracy by question type (eval.json).
- `gumbel_demo`: the Gumbel-sigmoid / straight-through walkthrough of notebook 02.
- `walkthrough`, `architecture`: the routed model taken apart, and drawn (Figure 1), for 02.
- `runs`: loading a trained run for inspection (model, vocabulary, images, questions).
- `ablations`: what notebook 04 trains live (`presets`) and how long that takes.
- `compare`: a set of runs side by side: at equal training samples, samples to a target
  accuracy, where their steps were trained, what their routers learned, Welch's interval.

Every function takes paths or arrays and returns a figure or a DataFrame; figures and tables
are written atomically (`qgmrn.fileio`). Needs the analysis extra (`pip install 'qgmrn[analysis]'`:
pandas, matplotlib, seaborn, scikit-learn, scipy); the library itself does not.
"""

import importlib.util as _util

_MISSING = [m for m in ("pandas", "matplotlib", "scipy", "sklearn") if _util.find_spec(m) is None]
if _MISSING:
    raise ImportError(
        f"qgmrn.analysis needs {', '.join(_MISSING)}: install the analysis extra "
        "(pip install -e '.[analysis]', or '.[notebooks]' for the notebooks too)"
    )
