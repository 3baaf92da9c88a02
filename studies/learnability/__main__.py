"""`python -m studies.learnability [STUDY_DIR] [--data DATA]`: `studies.learnability.summary`."""

from studies.learnability.summary import main

raise SystemExit(main())
