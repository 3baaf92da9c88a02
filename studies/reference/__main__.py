"""`python -m studies.reference [REFERENCE_DIR] [--routed PRESET]`: `studies.reference.summary`."""

from studies.reference.summary import main

raise SystemExit(main())
