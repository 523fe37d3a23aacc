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
import os
from pathlib import Path
from typing import NamedTuple

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


def _is_real_dtype(dtype) -> bool:
    """An integer or floating dtype (not bool, complex or a key)."""
    return bool(jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer))


INT32_MAX = 2**31 - 1


def check_int(where: str, name: str, value, minimum: int | None = 1) -> int:
    """A Python or NumPy integer (not bool, float or str), at least ``minimum`` and at
    most :data:`INT32_MAX` (sizes, strides and counts reach JAX as int32 indices and loop
    counters; a larger one wrapped or failed inside XLA).

    Returns:
        ``int(value)``.

    Raises:
        TypeError: not an integer. ValueError: below ``minimum`` or above INT32_MAX.
    """
    if not _is_integer(value):
        raise TypeError(f"{where}: {name} must be an integer, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {int(value)}")
    if value > INT32_MAX:
        raise ValueError(f"{where}: {name} must be at most {INT32_MAX:,}, got {int(value):,}")
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
        if value.shape == () and _is_real_dtype(value.dtype):
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
# Hyperparameters: checked when concrete, NaN when traced and out of range


class Interval(NamedTuple):
    """The values a hyperparameter may take, printed the mathematicians' way: ``[0, 1)``."""

    low: float
    high: float
    low_closed: bool = True
    high_closed: bool = False

    def __str__(self) -> str:
        def end(v: float) -> str:
            return "inf" if math.isinf(v) else f"{v:g}"

        return (
            f"{'[' if self.low_closed else '('}{end(self.low)}, "
            f"{end(self.high)}{']' if self.high_closed else ')'}"
        )

    def requirement(self) -> str:
        """``must be > 0``, ``must be >= 0`` or ``must lie in [0, 1)``."""
        if math.isinf(self.high) and self.low == 0:
            return "must be >= 0" if self.low_closed else "must be > 0"
        return f"must lie in {self}"

    def holds(self, v):
        """Whether v lies in the interval (False for NaN): a bool for a number, a traced
        bool for a tracer."""
        above = v >= self.low if self.low_closed else v > self.low
        below = v <= self.high if self.high_closed else v < self.high
        return above & below if isinstance(v, jax.core.Tracer) else bool(above and below)


UNIT = Interval(0.0, 1.0)
"""[0, 1): a dropout ratio, a momentum or decay rate of an optimizer, Adam's β's."""
UNIT_CLOSED = Interval(0.0, 1.0, high_closed=True)
"""[0, 1]: batch norm's running-average momentum (1 keeps the state as it is)."""
NONNEGATIVE = Interval(0.0, math.inf)
"""[0, inf): a learning rate of an optimizer, ε, a weight-decay λ, an init std."""
POSITIVE = Interval(0.0, math.inf, low_closed=False)
"""(0, inf): a finite-difference step h, gradient_descent's lr."""


def hyperparameter(where: str, name: str, value, interval: Interval):
    """A real scalar hyperparameter (lr, ratio, momentum, β, ε, λ, h, ...) in ``interval``.

    - Concrete (a Python or NumPy number, a 0-d real array): checked now, returned as a
      Python ``float`` (weakly typed: it takes the dtype of the array it meets).
    - Traced (inside ``jit``/``vmap``/``grad``, e.g. a ``fit_many`` search over it): its
      value cannot be seen, so it is returned as a floating tracer that is **NaN where the
      value lies outside** ``interval`` (or is NaN): every result computed from it turns NaN,
      so a bad value shows (``fit_many`` flags that run as diverged) instead of giving a
      finite, wrong number. Where a result does not depend on the value arithmetically
      (a dropout mask), multiply it by :func:`nan_unless` ``(interval.holds(value))``.

    Raises:
        TypeError: not a real scalar (bool, str, complex, an array with elements).
        ValueError: a concrete value that is NaN, inf or outside ``interval``, e.g.
            ``dropout: ratio must lie in [0, 1), got 1.0``.
    """
    if isinstance(value, jax.core.Tracer):
        if value.shape != () or not _is_real_dtype(value.dtype):
            raise TypeError(f"{where}: {name} must be a real scalar, got {describe(value)}")
        if not jnp.issubdtype(value.dtype, jnp.floating):
            value = value.astype(jnp.result_type(float))
        return jnp.where(interval.holds(value), value, jnp.nan)
    number = check_float(where, name, value)
    if not interval.holds(number):
        raise ValueError(f"{where}: {name} {interval.requirement()}, got {number}")
    return number


def hyperparameter_ok(value, interval: Interval):
    """``True`` for a concrete value (already checked by :func:`hyperparameter`), else the
    traced bool ``value in interval`` (False for NaN), for :func:`nan_unless`."""
    if not isinstance(value, jax.core.Tracer):
        return True
    return interval.holds(value)


def nan_unless_ok(x, ok):
    """``x`` unchanged where ``ok`` is the Python ``True``; else every floating leaf of the
    pytree x replaced by NaN where ``ok`` is False, and its gradient NaN too.

    The value goes through a select as well as the product with :func:`nan_unless`: XLA
    rewrites ``(x·mask)·c`` as ``select(mask, x·c, 0)``, which would turn a dropped unit's
    NaN back into 0; the product keeps the gradient NaN (the select alone passes 0 back).
    """
    if ok is True:
        return x

    def poison(leaf):
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            return leaf
        return jnp.where(ok, leaf * nan_unless(ok, leaf.dtype), jnp.full((), jnp.nan, leaf.dtype))

    return jax.tree_util.tree_map(poison, x)


def floating(x, dtype=None) -> jax.Array:
    """x as a floating array: float x (any precision) unchanged, integer or bool x promoted
    to ``dtype`` (default: JAX's default float, float32 or float64 with x64), as NumPy does
    when an integer array meets a float hyperparameter (``np.array([2, 4]) * 0.5`` is
    ``[1., 2.]``). Complex x is refused by the callers' own dtype checks."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    return x.astype(dtype or jnp.result_type(float))


def accumulation_dtype(*dtypes) -> np.dtype:
    """The dtype in which sums and means over a batch, and the arithmetic around them, are
    computed: the given floating dtypes promoted together and with float32.

    float16 and bfloat16 give float32 (float16 overflows at 65,504: 8,000 losses of 10
    summed in float16 are inf; bfloat16 keeps 8 bits: its running sums stall), float32
    stays float32 and float64 float64. Callers round their result to the input's dtype
    once, at the end.
    """
    wide = jnp.dtype(jnp.float32)
    for dtype in dtypes:
        wide = jnp.promote_types(wide, dtype)
    return wide


# --------------------------------------------------------------------------------------
# State and optimizer leaves


def check_floating_tree(where: str, tree, name: str, hint: str) -> None:
    """Every leaf of ``tree`` is an array of a floating dtype (float16 ... float64).

    For model state (batch norm's running statistics) and an optimizer's params and
    gradients: integer or bool leaves would truncate every update (0.9·0 + 0.1·2.3 → 0).

    Raises:
        TypeError: naming the leaf, the expected and the actual dtype, e.g.
            ``running_update: state['running_mean'] must be floating (e.g. float32) ...,
            got int32 (2,)``.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            dtype = np.asarray(leaf).dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{where}: {name}{jax.tree_util.keystr(path)} must be floating (e.g. "
                f"float32), got {describe(leaf)}; {hint}"
            )


def check_model_state(where: str, state, name: str = "model_state") -> None:
    """Model state (running statistics) holds floating arrays only.

    Raises:
        TypeError: an integer, bool or complex leaf (see :func:`check_floating_tree`).
    """
    check_floating_tree(
        where,
        state,
        name,
        "running statistics are averages and must be floating: create the state with a "
        "floating dtype or convert it with .astype(jnp.float32)",
    )


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
    (last axis) summing to 1: within ``sqrt(eps)`` of t's dtype for floating rows (float16
    and bfloat16 too), exactly for integer and bool rows (a bool row holds exactly one
    True: two Trues or none are refused like a float row summing to 2 or 0). Skipped for
    tracers.

    Raises:
        ValueError: naming the first offending row.
    """
    t = host_view(t)
    if not is_concrete(t) or not np.size(t):
        return
    values = np.asarray(t)
    check_finite(name, "t", values, hint="targets must be probability rows")
    # Bool rows are one-hot rows like any other: as 0/1 they must sum to 1.
    rows = values.reshape(-1, values.shape[-1]).astype(np.float64)
    if (rows < 0).any():
        row = int(np.argwhere((rows < 0).any(axis=1))[0, 0])
        raise ValueError(
            f"{name}: t must hold probability rows (one-hot or soft targets >= 0 summing to "
            f"1); row {row} has a negative entry {rows[row].min():g}"
        )
    # jnp.issubdtype, not dtype.kind == "f": NumPy calls bfloat16 kind "V".
    floating_t = jnp.issubdtype(values.dtype, jnp.floating)
    tol = math.sqrt(float(jnp.finfo(values.dtype).eps)) if floating_t else 1e-6
    sums = rows.sum(axis=1)
    off = np.abs(sums - 1.0) > tol
    if off.any():
        row = int(np.argwhere(off)[0, 0])
        if values.dtype == np.bool_:
            rule = "one-hot bool rows hold exactly one True"
        elif floating_t:
            rule = f"one-hot or soft targets summing to 1 within {tol:.1e}"
        else:
            rule = "one-hot rows summing to 1"
        raise ValueError(
            f"{name}: t must hold probability rows ({rule}); row {row} sums to {sums[row]:g}"
        )


def nan_unless(valid: jax.Array, dtype) -> jax.Array:
    """1 where ``valid``, NaN elsewhere, in ``dtype``.

    For values that cannot be checked under ``jit`` (labels): multiplying a result by it
    makes the result NaN where the input was invalid and, through autodiff, its gradient
    too, instead of a finite, wrong number. Costs one elementwise select.
    """
    return jnp.where(valid, jnp.ones((), dtype), jnp.full((), jnp.nan, dtype))


# --------------------------------------------------------------------------------------
# Files a run will write


def output_file_problem(path: str | os.PathLike) -> str | None:
    """Why a file could not be written at ``path`` (atomically: a temporary file in its
    folder, renamed over it), as a phrase for an error message; None when it could.

    Checked: the path names something (not ``''``), is not a folder nor a device, FIFO or
    socket, and its folder exists, is a folder, and may be written by this user. Made
    before a long run starts, so that a run does not fail at its first save.
    """
    text = os.fsdecode(path)
    if not text:
        return "is empty; pass a file path, e.g. run.ckpt.npz"
    target = Path(text)
    if target.is_dir():
        return f"{target} is a folder; pass a file path, e.g. {target / 'run.ckpt.npz'}"
    if target.exists() and not target.is_file():
        return f"{target} exists and is not a regular file (a device, FIFO or socket)"
    folder = target.parent
    for above in (folder, *folder.parents):
        if above.exists() and not above.is_dir():
            return f"{target}: {above} is not a folder"
    if not folder.exists():
        return f"{target}: the folder {folder} does not exist; create it first"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{target}: the folder {folder} is not writable by this user"
    if target.exists() and not os.access(target, os.R_OK):
        return f"{target} exists and cannot be read by this user"
    return None


def check_output_file(where: str, name: str, path) -> Path:
    """``path`` (a str or os.PathLike) as a Path, checked by :func:`output_file_problem`.

    Raises:
        TypeError: not a str or os.PathLike.
        ValueError: ``fit: checkpoint_path /missing/c.npz: the folder /missing does not
            exist; create it first``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: {name} must be a str or os.PathLike, got {describe(path)}")
    problem = output_file_problem(path)
    if problem is not None:
        raise ValueError(f"{where}: {name} {problem}")
    return Path(os.fsdecode(path))
