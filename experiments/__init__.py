"""Runnable book examples: python -m experiments.NAME (outputs under runs/NAME/)."""

import time

STARTED = time.perf_counter()
"""When the experiments package was imported: before JAX and the data are, so a time
measured from here is the whole job but Python's own start-up (a few tens of ms)."""
