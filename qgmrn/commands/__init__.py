"""The sub-commands of `qgmrn` (see `qgmrn/cli.py`), one module each: generate, prepare,
download, train, evaluate, finetune, reproduce. Each parses its arguments and calls the library;
none holds logic a notebook would need."""
