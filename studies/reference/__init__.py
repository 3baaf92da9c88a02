"""The reference study: the longer runs of `results/reference/`, summarised beside them.

    python -m studies.reference results/reference

- `naming`: the folder names of the study's runs (`PRESET_sN`, `PRESET_static`, `PRESET_attr`,
  `PRESET_attrv`).
- `seeds`: a preset's runs over seeds at a common step; the routed BRN against its static twin.
- `separation`: Table 2 over seeds, at the budget where its rows separate; Table 2 at the last
  budget, beside the paper's (notebook 04).
- `ours`: our labelled arm (the auxiliary attribute loss) beside its paper-faithful twins.
- `summary`: summary.md and its figures (`summarize`, the command's `main`).

The comparisons of any set of runs that these build on are the package's
(`qgmrn.analysis.compare`); only the naming rules and the study's questions live here.
"""
