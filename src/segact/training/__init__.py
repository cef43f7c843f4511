"""Training one fold: the orchestrator (engine), the epoch and early stopping (fitting), the
reporting protocols, the model call, checkpoints and Ctrl-C."""
