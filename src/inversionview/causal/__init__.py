"""Causal checks of a reading: activation patching with task-aware metrics."""
