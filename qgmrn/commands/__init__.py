"""Command-line twins of the training notebooks (train, evaluate, finetune, reproduce)."""
