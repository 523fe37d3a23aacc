"""Runnable book examples: python -m experiments.NAME (outputs under runs/NAME/)."""
