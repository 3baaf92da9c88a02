"""Our studies of our own runs, beside the `qgmrn` package and not part of it.

Each study reads the run folders of one `results/` folder, whose naming rules it knows, and
writes its summary there; it is run as a command from the project root:

    python -m studies.reference results/reference      # reference/: the longer runs
    python -m studies.learnability results/learnability  # learnability/: which data learns
    python studies/plateau/summarize.py                 # plateau/: scripts, see its README

The analysis they build on (one run, or any set of runs) is the package's, `qgmrn.analysis`.
"""
