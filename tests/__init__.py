"""The test suite; `tests.studies` mirrors `studies/`, the other folders mirror `qgmrn/`."""
