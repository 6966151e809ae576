"""Training and evaluation on Lightning: the module, EMA, run folders, checkpoints."""
