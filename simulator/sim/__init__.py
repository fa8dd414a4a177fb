"""The SimPy world: one small module per component, each with its state, contention and operations."""
