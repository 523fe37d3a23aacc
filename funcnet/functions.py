"""Activation, output and loss functions of the book (chapters 3-4), as plain jnp.

These are ordinary differentiable functions: JAX's autodiff goes straight through them.
The hand-written backward rules live in :mod:`funcnet.layers`.

Shapes: ``(...,)`` means any shape; ``(N, C)`` a batch of N rows of C classes.

Conventions shared by every function here and by :mod:`funcnet.layers`:

- **NaN propagates.** A NaN input gives NaN in the outputs that depend on it, forward
  and backward; nothing turns it into a number.
- **Targets ``t``** are integer labels of shape ``(N,)`` (a scalar for 1-D scores), or
  one-hot / soft probability rows of the scores' shape: ``t.ndim`` tells which. Labels
  must have an integer dtype; float or bool ``(N,)`` labels are an error. The caller's
  values are checked with NumPy before any dtype conversion (so int64 ``2**32 + 1`` is
  out of range, not label 1): labels must lie in ``[0, C)``; concrete probability rows
  must be finite, >= 0 and sum to 1 (within ``sqrt(eps)`` of their dtype).
- **Under ``jit``** values cannot be checked: a label outside ``[0, C)`` makes the loss
  NaN, and its gradient NaN too (never a finite, wrong number); probability rows are
  used as given.
- **Integer and bool inputs** give what the book's NumPy gives: kept as integers where
  the result is exact (``relu``, ``step_function``, ``identity_function``), else converted
  to the default float (float32, or float64 with x64) *before any arithmetic*
  (``sigmoid``, ``softmax``, ``log_softmax``, the losses): ``softmax(uint8 [1, 0, 1])``
  subtracts its maximum in float, not in uint8 (where ``0 - 1`` wraps to 255), and
  ``sum_squares_error(int8 [-100], int8 [100])`` is 20000, not the int8 square of 200.
  Mixed inputs take NumPy's promoted dtype (an int8 ``y`` and a float16 ``t`` give
  float16). Nothing casts a float constant to an integer dtype.
- **Half precision.** float16 and bfloat16 inputs are computed in float32: the sums over
  classes (softmax's denominator) and over the batch (the losses), the differences and
  squares, and the ``/ N``; the result is rounded to the input's dtype once, at the end
  (8,000 float16 rows with a mean loss of 10 give 10, not the inf of a float16 sum). A
  result beyond the dtype's range (float16's 65,504) is inf in that dtype. float32 and
  float64 compute in their own dtype, as before.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcnet._checks import (
    accumulation_dtype,
    check_label_dtype,
    check_labels,
    check_targets,
    floating,
    host_view,
    nan_unless,
)

# The book's guard against log(0) in cross_entropy_error (ch4). Only the book-compatible
# loss uses it; the fused softmax_cross_entropy is exact.
CROSS_ENTROPY_DELTA = 1e-7


def _as_numeric(name: str, x, arg: str = "x") -> jax.Array:
    """x as a JAX array, with a clear error for anything that is not numbers."""
    view = host_view(x)
    if not (jnp.issubdtype(view.dtype, jnp.number) or view.dtype == jnp.bool_):
        raise TypeError(f"{name}: {arg} must be a numeric array, got {view.dtype} {view.shape}")
    return jnp.asarray(x)  # from x itself: Python scalars stay weakly typed


def _as_floating(name: str, x, arg: str = "x") -> jax.Array:
    """x as a floating JAX array: float x unchanged, integer or bool x converted to the
    default float (float32, or float64 with x64) before any arithmetic touches it."""
    return floating(_as_numeric(name, x, arg))


def step_function(x: jax.Array) -> jax.Array:
    """Step function (ch3): 1 where x > 0, else 0. Shape (...,) -> (...,).

    Float input gives x's dtype and keeps NaN (NaN in, NaN out: NaN is neither above nor
    below 0); integer and bool input gives int32 0/1.
    """
    x = _as_numeric("step_function", x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        return (x > 0).astype(jnp.int32)
    # The step is piecewise constant: its derivative is 0, at NaN too (stop_gradient).
    return jnp.where(jnp.isnan(x), jax.lax.stop_gradient(x), (x > 0).astype(x.dtype))


def sigmoid(x: jax.Array) -> jax.Array:
    """Logistic sigmoid 1 / (1 + exp(-x)) (ch3). Shape (...,) -> (...,).

    Computed by XLA's logistic primitive, which never overflows: sigmoid(±1000) is
    exactly 1 and 0 with no warning and no NaN, and small values keep full relative
    precision (unlike ``1 / (1 + exp(-x))``, which overflows for x < -709 in float64).
    """
    x = _as_floating("sigmoid", x)
    return jax.lax.logistic(x)


def sigmoid_grad(x: jax.Array) -> jax.Array:
    """Derivative of the sigmoid, (1 - s) * s with s = sigmoid(x) (ch4). Shape (...,)."""
    s = sigmoid(x)
    return (1.0 - s) * s


def relu(x: jax.Array) -> jax.Array:
    """ReLU max(0, x) (ch3). Shape (...,) -> (...,).

    Written as ``where(x <= 0, 0, x)``, the book's mask ``x <= 0``: NaN is not <= 0, so it
    passes through (like ``np.maximum(0, x)``), and the autodiff derivative at exactly 0 is
    0, the convention of the book's Relu layer and of ``jax.nn.relu`` (1 above 0 and at NaN,
    where the upstream gradient is passed on as the book's layer does).
    """
    x = _as_numeric("relu", x)
    return jnp.where(x <= 0, jnp.zeros_like(x), x)


def identity_function(x: jax.Array) -> jax.Array:
    """The identity, the output function for regression (ch3). Shape (...,) -> (...,)."""
    return _as_numeric("identity_function", x)


def _check_scores(name: str, x: jax.Array, arg: str = "x") -> None:
    """Scores over classes on the last axis: at least 1-D, with at least one class."""
    if x.ndim == 0:
        raise ValueError(
            f"{name}: {arg} must have a class axis, shape (C,) or (N, C); got a scalar "
            f"{x.dtype} {x.shape}"
        )
    if x.shape[-1] == 0:
        raise ValueError(f"{name}: {arg} has no classes (its last axis is empty), {arg} {x.shape}")


def softmax(x: jax.Array) -> jax.Array:
    """Softmax over the last axis (ch3). Shape (C,) or (N, C) (or (..., C)) -> the same.

    The maximum along the last axis is subtracted first, so logits of 1e4 stay finite.
    A NaN anywhere in a row makes that whole row NaN. Integer and bool x are converted to
    the default float first; float16/bfloat16 x are computed in float32 and the result
    rounded to x's dtype (see the module docstring).
    """
    x = _as_floating("softmax", x)
    _check_scores("softmax", x)
    wide = x.astype(accumulation_dtype(x.dtype))
    shifted = wide - jax.lax.stop_gradient(jnp.max(wide, axis=-1, keepdims=True))
    e = jnp.exp(shifted)
    return (e / jnp.sum(e, axis=-1, keepdims=True)).astype(x.dtype)


def log_softmax(x: jax.Array) -> jax.Array:
    """log(softmax(x)) over the last axis, computed stably. Shape (C,) or (N, C) (or (..., C)).

    Dtypes as for :func:`softmax`: the result has x's floating dtype (the default float for
    integer or bool x).
    """
    x = _as_floating("log_softmax", x)
    _check_scores("log_softmax", x)
    return wide_log_softmax(x).astype(x.dtype)


def wide_log_softmax(x: jax.Array) -> jax.Array:
    """log_softmax of floating x over the last axis, computed and returned in
    :func:`~funcnet._checks.accumulation_dtype` (float32 for float16/bfloat16 x, x's own
    dtype otherwise): the log-probabilities the losses sum, before any rounding to half
    precision. No checks: for the losses, after theirs."""
    x = x.astype(accumulation_dtype(x.dtype))
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def sum_squares_error(y: jax.Array, t: jax.Array) -> jax.Array:
    """Sum of squares error 0.5 * Σ (y - t)² over all elements (ch4). Returns a scalar.

    The result's dtype is y's and t's promoted dtype when that is floating, else the
    default float (integer and bool inputs are converted before the difference is taken:
    int8 -100 and 100 give 20000, not a wrapped int8 square). The differences, squares and
    the sum are computed in float32 or wider (float16 squares overflow above 256) and the
    sum rounded to the result's dtype once.
    """
    y, t = _as_numeric("sum_squares_error", y, "y"), _as_numeric("sum_squares_error", t, "t")
    if y.shape != t.shape:
        raise ValueError(f"sum_squares_error: y {y.shape} and t {t.shape} must have the same shape")
    dtype = jnp.result_type(y, t)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.result_type(float)
    wide = accumulation_dtype(dtype)
    diff = y.astype(wide) - t.astype(wide)
    return (0.5 * jnp.sum(diff * diff)).astype(dtype)


# --------------------------------------------------------------------------------------
# Targets: labels or probability rows, validated on the caller's values


def prepare_targets(name: str, y: jax.Array, t, arg: str = "y") -> tuple[jax.Array, jax.Array]:
    """Validate scores ``y`` and targets ``t`` and return them as a batch ``(N, C)``.

    ``t`` is read as the caller passed it (NumPy view, no narrowing) and classified by its
    rank: ``t.ndim == y.ndim`` means one-hot or soft probability rows of y's shape (any
    numeric or bool dtype; bool rows hold exactly one True; converted to the dtype the loss
    accumulates in, :func:`~funcnet._checks.accumulation_dtype` of y's floating dtype),
    ``t.ndim == y.ndim - 1`` integer labels (converted to int32 after the range check). A
    1-D y is a batch of one. ``y`` must be floating already (:func:`_as_floating`).

    Returns:
        ``(y2 (N, C), t2)`` with ``t2`` int32 ``(N,)`` or the accumulation dtype ``(N, C)``
        (float32 for a float16 y: float32 soft targets are not rounded to float16).

    Raises:
        ValueError: naming ``name``, the argument, the expected and the actual shape/dtype.
    """
    if y.ndim not in (1, 2):
        raise ValueError(f"{name}: {arg} must be scores (N, C) or (C,), got {arg} {y.shape}")
    _check_scores(name, y, arg)
    if y.ndim == 2 and y.shape[0] == 0:
        raise ValueError(f"{name}: {arg} holds an empty batch, {arg} {y.shape}")
    view = host_view(t)
    if view.ndim == y.ndim:
        if view.shape != y.shape:
            raise ValueError(
                f"{name}: one-hot t must have the shape of {arg}; {arg} {y.shape}, t {view.shape}"
            )
        if not (jnp.issubdtype(view.dtype, jnp.number) or view.dtype == jnp.bool_):
            raise TypeError(f"{name}: t must be numeric, got {view.dtype} {view.shape}")
        check_targets(name, view)
        targets = jnp.asarray(view).astype(accumulation_dtype(y.dtype))
        return y.reshape(-1, y.shape[-1]), targets.reshape(-1, y.shape[-1])
    if view.ndim == y.ndim - 1:
        check_label_dtype(name, view)
        expected = y.shape[:-1]
        if view.shape != expected:
            raise ValueError(
                f"{name}: integer labels t must have shape {expected} for {arg} {y.shape}, "
                f"got t {view.shape}"
            )
        check_labels(name, view, y.shape[-1])
        return y.reshape(-1, y.shape[-1]), jnp.asarray(view).astype(jnp.int32).reshape(-1)
    labels_shape = y.shape[:-1]
    raise ValueError(
        f"{name}: t must be integer labels {labels_shape} or one-hot rows {y.shape} for "
        f"{arg} {y.shape}, got t {view.shape}"
    )


def mean_cross_entropy(
    logp: jax.Array, t: jax.Array, rows_ok: jax.Array | None = None, dtype=None
) -> jax.Array:
    """``-Σₙ Σ_c t[n, c] · logp[n, c] / N`` for log-probabilities ``logp (N, C)``.

    ``t`` is int32 labels ``(N,)`` or probability rows ``(N, C)`` (as from
    :func:`prepare_targets`). A label outside ``[0, C)`` (possible only under ``jit``,
    where values are not checked) makes the loss NaN and, through autodiff, its gradient
    NaN too. A zero-weight class adds nothing even where ``logp = -inf`` (a masked logit),
    instead of ``0 · (-inf) = NaN``. ``rows_ok (N,)``, if given, marks further rows whose
    loss must be NaN for labels (e.g. probabilities holding a NaN outside the labelled class).

    The products, the sum and the ``/ N`` are computed in float32 or wider
    (:func:`~funcnet._checks.accumulation_dtype`; a float16 sum overflows at 65,504 and
    a float16 N above 65,504 is inf) and the loss is rounded once to ``dtype`` (default:
    logp's dtype).
    """
    n, classes = logp.shape
    dtype = logp.dtype if dtype is None else jnp.dtype(dtype)
    wide = accumulation_dtype(logp.dtype, dtype)
    logp = logp.astype(wide)
    if jnp.issubdtype(t.dtype, jnp.integer):
        valid = (t >= 0) & (t < classes)
        if rows_ok is not None:
            valid = valid & rows_ok
        safe = jnp.where(valid, t, 0)
        picked = jnp.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
        return (-jnp.sum(picked * nan_unless(valid, wide)) / n).astype(dtype)
    t = t.astype(wide)
    # Only the 0·(-inf) entries are replaced: elsewhere t·log y stays differentiable in t.
    masked = jnp.isneginf(logp) & (t == 0)
    terms = jnp.where(masked, jnp.zeros_like(logp), t * logp)
    return (-jnp.sum(terms) / n).astype(dtype)


def cross_entropy_error(y: jax.Array, t: jax.Array) -> jax.Array:
    """Mean cross-entropy error of the book's ch4 ``cross_entropy_error`` (eq. 4.3).

    Args:
        y: probabilities, shape (N, C), or (C,) for a batch of one.
        t: one-hot (or soft probability) rows of y's shape, or integer labels (N,) (a
            scalar for a 1-D y). See the module docstring for the checks.

    Returns:
        Scalar ``-Σₙ Σ_c t[n, c] · log(y[n, c] + 1e-7) / N`` (for labels, the log of the
        labelled class). The 1e-7 keeps log(0) finite; it is the book's, and it makes this
        loss differ from the exact one by about 1e-7. NaN in y or t gives NaN; an
        out-of-range label under ``jit`` gives NaN (loss and gradient). The loss has y's
        dtype (the default float for integer or bool y); for float16/bfloat16 y the
        ``+ 1e-7``, the log and the mean are computed in float32 (1e-7 is below float16's
        normal range) and the loss rounded once.
    """
    y = _as_floating("cross_entropy_error", y, "y")
    y2, t2 = prepare_targets("cross_entropy_error", y, t)
    # A label picks one probability per row; a NaN elsewhere in the row must still show.
    rows_ok = ~jnp.any(jnp.isnan(y2), axis=1) if t2.ndim == 1 else None
    logp = jnp.log(y2.astype(accumulation_dtype(y2.dtype)) + CROSS_ENTROPY_DELTA)
    return mean_cross_entropy(logp, t2, rows_ok, dtype=y2.dtype)


def softmax_cross_entropy(logits: jax.Array, t: jax.Array) -> jax.Array:
    """Mean cross-entropy of softmax(logits), fused and exact (log-softmax based).

    Args:
        logits: scores, shape (N, C), or (C,) for a batch of one.
        t: one-hot (or soft probability) rows of logits' shape, or integer labels (N,) (a
            scalar for 1-D logits). See the module docstring for the checks.

    Returns:
        Scalar ``-Σₙ Σ_c t[n, c] · log_softmax(logits)[n, c] / N``; finite for any finite
        logits, including ±1e4 and probabilities that underflow to zero. NaN in a row of
        logits or t gives NaN; an out-of-range label under ``jit`` gives NaN (loss and
        gradient). The loss has the logits' dtype (the default float for integer or bool
        logits); float16/bfloat16 logits are computed in float32 and the loss rounded once.
    """
    logits = _as_floating("softmax_cross_entropy", logits, "logits")
    x2, t2 = prepare_targets("softmax_cross_entropy", logits, t, "logits")
    return mean_cross_entropy(wide_log_softmax(x2), t2, dtype=x2.dtype)
