"""Eager input validation shared by the modules: clear errors before any XLA trace.

Every check runs once per call, in Python, outside ``jit``: types and shapes always (they
are static), values only when they are concrete (:func:`is_concrete`). Messages start with
the public function's name (``where``) and name the argument, what was expected and what
came: ``fit: lr must be a finite number, got nan``. Wrong types raise ``TypeError``, wrong
values ``ValueError``.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when x holds real values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def describe(value) -> str:
    """A short description of a value for error messages: ``int 0``, ``float32 (3, 2)``."""
    if isinstance(value, jax.core.Tracer):
        return f"traced {value.dtype} {tuple(value.shape)}"
    if isinstance(value, (np.ndarray, jax.Array)):
        if value.ndim == 0 and value.size == 1 and is_concrete(value):
            return f"{value.dtype} scalar {value.item()!r}"
        return f"{value.dtype} {tuple(value.shape)}"
    if isinstance(value, np.generic):
        return f"{value.dtype} {value.item()!r}"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def host_view(x):
    """x as an array without any dtype conversion: JAX arrays and tracers unchanged, anything
    else through ``np.asarray`` (which keeps int64 and float64 even when JAX's x64 is off).

    Look at values the caller passed through this view *before* ``jnp.asarray``: with x64
    off, ``jnp.asarray`` turns int64 ``2**32 + 1`` into 1.
    """
    if isinstance(x, (jax.Array, jax.core.Tracer)):
        return x
    return np.asarray(x)


# --------------------------------------------------------------------------------------
# Scalars and keys


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_key(where: str, key, name: str = "key") -> None:
    """A ``jax.random`` key: a typed key (``jax.random.key``) or a legacy uint32 (2,) key
    (``jax.random.PRNGKey``). Works on traced keys (dtype and shape are static).

    Raises:
        TypeError: anything else, e.g. the plain int ``0``.
    """
    dtype = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()) or ())
    if isinstance(key, (jax.Array, jax.core.Tracer)) and dtype is not None:
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
            return
        if dtype == jnp.uint32 and shape == (2,):
            return
    raise TypeError(
        f"{where}: {name} must be a jax.random key, e.g. jax.random.key(0); got {describe(key)}"
    )


def check_int(where: str, name: str, value, minimum: int | None = 1) -> int:
    """A Python or NumPy integer (not bool, float or str), at least ``minimum``.

    Returns:
        ``int(value)``.

    Raises:
        TypeError: not an integer. ValueError: below ``minimum``.
    """
    if not _is_integer(value):
        raise TypeError(f"{where}: {name} must be an integer, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {int(value)}")
    return int(value)


def check_float(where: str, name: str, value, *, positive: bool = False) -> float:
    """A real, finite number: int, float, NumPy scalar or 0-d array (not bool, str or complex).

    A traced 0-d real value (inside ``jit``) is returned unchanged: its value cannot be seen.

    Returns:
        ``float(value)`` (or the tracer).

    Raises:
        TypeError: not a real number. ValueError: NaN or inf, or (``positive=True``) <= 0.
    """
    if isinstance(value, jax.core.Tracer):
        if value.shape == () and jnp.issubdtype(value.dtype, jnp.floating | jnp.integer):
            return value
        raise TypeError(f"{where}: {name} must be a real scalar, got {describe(value)}")
    dtype = getattr(value, "dtype", None)
    if isinstance(value, (np.ndarray, jax.Array)):
        ok = value.shape == () and (
            jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
        )
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not ok:
        raise TypeError(f"{where}: {name} must be a real number, got {describe(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{where}: {name} must be a finite number, got {number}")
    if positive and number <= 0:
        raise ValueError(f"{where}: {name} must be > 0, got {number}")
    return number


# --------------------------------------------------------------------------------------
# Arrays and pytrees


def check_params(where: str, params, name: str = "params") -> None:
    """A non-empty pytree of floating-point arrays (dict of arrays, tuple, ...).

    Raises:
        TypeError: ``None``, a leaf that is not an array (a bare list of numbers), or a leaf
            of integer, bool or complex dtype; the message names the leaf's path.
        ValueError: a pytree without any leaf (``{}``).
    """
    if params is None:
        raise TypeError(
            f"{where}: {name} must be a pytree of floating-point arrays "
            "(e.g. a dict of jax arrays), got None"
        )
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    if not leaves:
        raise ValueError(f"{where}: {name} holds no arrays, got {describe(params)}")
    for path, leaf in leaves:
        label = f"{name}{jax.tree_util.keystr(path)}"
        if not isinstance(leaf, (np.ndarray, np.generic, jax.Array, jax.core.Tracer)):
            raise TypeError(
                f"{where}: {label} must be an array (e.g. jnp.asarray(...)), got "
                f"{describe(leaf)}; {name} must be a pytree of floating-point arrays"
            )
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"{where}: {label} must have a floating-point dtype (e.g. float32), got "
                f"{describe(leaf)}"
            )


def check_finite(where: str, name: str, x, *, hint: str = "clean the data first") -> None:
    """No NaN or inf in a concrete array (or in any floating leaf of a pytree).

    Tracers are skipped (their values are unknown). One ``np.isfinite`` pass per leaf.

    Raises:
        ValueError: e.g. ``fit: x_test holds 3 non-finite values (first at index (12, 40));
            clean the data first``.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(x)[0]:
        if not is_concrete(leaf):
            continue
        values = np.asarray(leaf)
        if values.dtype.kind in "biu":  # integers and bools are always finite
            continue
        try:
            finite = np.isfinite(values)
        except TypeError:  # not numbers at all: other checks name that
            continue
        if finite.all():
            continue
        bad = np.argwhere(~finite)
        first = tuple(int(i) for i in bad[0])
        label = f"{name}{jax.tree_util.keystr(path)}"
        raise ValueError(
            f"{where}: {label} holds {len(bad)} non-finite values (first at index {first}); {hint}"
        )


# --------------------------------------------------------------------------------------
# Labels and targets


def check_label_dtype(name: str, t) -> None:
    """Labels must have an integer dtype (not float, not bool).

    Raises:
        ValueError: e.g. ``labels must be integers (an integer dtype); got float32 (3,)``.
    """
    t = host_view(t)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise ValueError(
            f"{name}: labels must be integers (an integer dtype); got {t.dtype} {tuple(t.shape)} "
            "(pass class indices as an integer array, or one-hot rows of the scores' shape)"
        )


def check_labels(name: str, t, num_classes: int) -> None:
    """Integer labels with values in ``[0, num_classes)``, checked on the caller's values.

    Pass ``t`` as the caller gave it (or through :func:`host_view`), *before* any
    ``jnp.asarray``: the values are read with NumPy, so int64 labels are not narrowed first.
    The dtype is always checked; the range only when ``t`` is concrete.

    Raises:
        ValueError: a non-integer dtype (float or bool labels), or a value out of range.
    """
    t = host_view(t)
    check_label_dtype(name, t)
    if is_concrete(t) and np.size(t):
        values = np.asarray(t)
        lo, hi = values.min(), values.max()
        if lo < 0 or hi >= num_classes:
            bad = int(lo) if lo < 0 else int(hi)
            raise ValueError(
                f"{name}: label {bad} is out of range for {num_classes} classes "
                f"(labels must lie in [0, {num_classes - 1}])"
            )


def check_targets(name: str, t) -> None:
    """Concrete one-hot or soft targets must be probability rows: finite, >= 0, each row
    (last axis) summing to 1 within ``sqrt(eps)`` of t's dtype. Skipped for tracers.

    Raises:
        ValueError: naming the first offending row.
    """
    t = host_view(t)
    if not is_concrete(t) or not np.size(t):
        return
    values = np.asarray(t)
    check_finite(name, "t", values, hint="targets must be probability rows")
    if values.dtype.kind == "b":
        return
    rows = values.reshape(-1, values.shape[-1]).astype(np.float64)
    if (rows < 0).any():
        row = int(np.argwhere((rows < 0).any(axis=1))[0, 0])
        raise ValueError(
            f"{name}: t must hold probability rows (one-hot or soft targets >= 0 summing to "
            f"1); row {row} has a negative entry {rows[row].min():g}"
        )
    tol = math.sqrt(float(jnp.finfo(values.dtype).eps)) if values.dtype.kind == "f" else 1e-6
    sums = rows.sum(axis=1)
    off = np.abs(sums - 1.0) > tol
    if off.any():
        row = int(np.argwhere(off)[0, 0])
        raise ValueError(
            f"{name}: t must hold probability rows (one-hot or soft targets summing to 1 "
            f"within {tol:.1e}); row {row} sums to {sums[row]:g}"
        )


def nan_unless(valid: jax.Array, dtype) -> jax.Array:
    """1 where ``valid``, NaN elsewhere, in ``dtype``.

    For values that cannot be checked under ``jit`` (labels): multiplying a result by it
    makes the result NaN where the input was invalid and, through autodiff, its gradient
    too, instead of a finite, wrong number. Costs one elementwise select.
    """
    return jnp.where(valid, jnp.ones((), dtype), jnp.full((), jnp.nan, dtype))
