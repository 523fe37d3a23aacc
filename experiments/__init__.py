"""Runnable book examples: python -m experiments.NAME (outputs under runs/NAME/)."""

import time

STARTED = time.perf_counter()
"""When the experiments package was imported: before JAX and the data are, so a time
measured from here is the whole job but Python's own start-up (a few tens of ms)."""

from experiments import _interrupt  # noqa: E402 - after STARTED, which times the whole job

if _interrupt.launched_as_command():  # before the experiment imports JAX and matplotlib
    _interrupt.exit_on_ctrl_c_while_starting()
    _interrupt.deliver_swallowed_interrupts()
