"""Training engine: the Lightning module, callbacks and pickle-free checkpoints."""
