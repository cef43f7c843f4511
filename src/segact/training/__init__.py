"""Training the folds of a run from its typed settings (settings): one fold in flight (engine),
the one epoch loop (group), the epoch and early stopping (fitting), protocols, checkpoints."""
