"""The learnability study: which training data lets the demo models learn fastest.

    python -m studies.learnability.run --presets brn_c16 --arms stream fixed5k   # train
    python -m studies.learnability results/learnability                         # summarise

- `run`: the arms (fixed splits of two sizes and aspects, the stream of fresh scenes, with a
  curriculum), each run into `results/learnability/runs/<preset>__<arm>/`.
- `summary`: summary.md, curves.png and by_type.png of those runs.
"""
