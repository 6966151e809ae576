"""Cross-modal distillation: the framework (base), shared masks and losses, and the methods."""
