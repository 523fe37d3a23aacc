"""Eager input validation shared by the modules: clear errors before any XLA trace."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when x holds real values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_labels(name: str, t, num_classes: int) -> None:
    """Integer labels of dtype int and values in [0, num_classes), checked when concrete.

    Raises:
        ValueError: t has a non-integer dtype, or (outside jit) a value out of range.
    """
    if not jnp.issubdtype(jnp.asarray(t).dtype, jnp.integer):
        raise ValueError(
            f"{name}: integer labels must have an integer dtype, got {jnp.asarray(t).dtype}; "
            "pass one-hot rows of the scores' shape, or labels as int32"
        )
    if is_concrete(t) and np.size(t):
        values = np.asarray(t)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"{name}: label {bad} is out of range for {num_classes} classes "
                f"(labels must lie in [0, {num_classes - 1}])"
            )
