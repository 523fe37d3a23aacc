"""The book's update rules (ch6.1, ``common/optimizer.py``) as ``optax.GradientTransformation``s.

Each rule is a pure ``init(params) -> state`` / ``update(grads, state, params=None) ->
(updates, state)`` pair: the book's ``optimizer.update(params, grads)``, which changes
``params`` and its own ``self.v``/``self.h`` in place, becomes ``updates`` to add with
``optax.apply_updates`` and a new state (a NamedTuple of pytrees shaped like the params).
They work anywhere optax does: ``optax.chain``, ``funcnet.train.fit(optimizer=...)``,
under ``jit`` and ``vmap`` (a hyperparameter may be a traced scalar).

Dtypes and hyperparameters:

- Params and gradients must be floating; an integer or bool leaf raises ``TypeError``
  (an integer weight cannot take a fractional step: it would silently stay put).
- The gradients (and the params, when passed to ``update``) must have the structure and
  leaf shapes of the params that ``init`` made the state for; otherwise ``update`` raises
  ``ValueError`` naming the rule, the leaf and both shapes (``adam: grads['w'] has shape
  (4,), expected (3,): ...``) or the leaves missing and unexpected. Shapes are static, so
  this is checked while the update is traced and costs nothing when it runs. ``sgd``'s
  state (:class:`SGDState`) holds no arrays, only that structure and those shapes.
- Every rule computes in float32 or wider (the gradient's dtype promoted with float32) and
  casts the update to the gradient's dtype at the end; the state (v, h, m) is kept in that
  wider dtype. In bfloat16, 0.999 is 1.0 and 1 − β2 would be 0 (Adam would not move); in
  float16, 1e-7 is 0 and 0.9999 is 1.0. So float16/bfloat16 params get the book's update
  rounded once to half precision. float32 and float64 params are unchanged by this.
- A concrete hyperparameter out of range (a negative lr, β = 1, NaN) raises ``ValueError``
  when the optimizer is built. A traced one (``vmap``/``fit_many`` over lr, β, ...) cannot
  be checked: where it is out of range or NaN, that run's updates are NaN, so its params
  turn NaN and ``fit_many`` flags the run as diverged.

For every parameter array p with gradient g (defaults are the book's)::

    sgd(lr=0.01)                        p ← p − lr·g
    momentum(lr=0.01, momentum=0.9)     v ← momentum·v − lr·g;  p ← p + v
    nesterov(lr=0.01, momentum=0.9)     p ← p + momentum²·v − (1+momentum)·lr·g;
                                        then v ← momentum·v − lr·g
    adagrad(lr=0.01)                    h ← h + g²;  p ← p − lr·g / (√h + ε)
    rmsprop(lr=0.01, decay_rate=0.99)   h ← decay·h + (1−decay)·g²;  p ← p − lr·g / (√h + ε)
    adam(lr=0.001, beta1=0.9,           t ← t+1;  lr_t = lr·√(1−β2ᵗ)/(1−β1ᵗ);
         beta2=0.999)                   m ← m + (1−β1)(g−m);  v ← v + (1−β2)(g²−v);
                                        p ← p − lr_t·m / (√v + ε)

with v, h, m starting at 0 and ε = 1e-7 (the book's constant; ``eps=`` changes it).

How optax's peers compare (read from optax 0.2.8's source, each one tested):

- ``sgd``: the same as ``optax.sgd(lr)``.
- ``momentum``: the same as ``optax.sgd(lr, momentum=m)`` for a constant lr; the state
  differs by a factor: the book's v (a step, in parameter units) is −lr × optax's trace.
- ``nesterov``: the same as ``optax.sgd(lr, momentum=m, nesterov=True)`` for a constant lr
  (state as for momentum). The book's repository code adds momentum²·v *after* changing
  v (g then weighs −(1+m+m²)·lr); this is the paper's form, which the issue asks for.
- ``adagrad``: ``optax.adagrad`` starts h at 0.1 and puts ε inside the root,
  g/√(h + ε); it is the same as ``optax.adagrad(lr, initial_accumulator_value=0, eps=0)``
  when ``eps=0`` here.
- ``rmsprop``: the same as ``optax.rmsprop(lr, decay=0.99, eps=1e-7, eps_in_sqrt=False)``
  (optax's defaults are decay 0.9 and ε = 1e-8 inside the root).
- ``adam``: ``optax.adam`` divides the bias-corrected m̂ by √v̂ + ε; the book folds the
  corrections into lr_t and divides by √v + ε, which is optax's with ε/√(1−β2ᵗ) at step t
  (31.6·ε at t = 1; the same when ``eps=0``; optax's default ε is 1e-8).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcnet import _checks
from funcnet._checks import is_concrete

PyTree = Any
Scalar = Any  # a Python number, a NumPy scalar or a 0-d (possibly traced) JAX array

EPS = 1e-7
"""The book's constant in the denominators of AdaGrad, RMSprop and Adam."""


# --------------------------------------------------------------------------------------
# Hyperparameter checks (once, in Python, when the optimizer is built)


def _check_scalar(fn: str, name: str, value: Scalar) -> None:
    """A real scalar: a Python/NumPy number or a 0-d JAX array (values checked elsewhere)."""
    if isinstance(value, (bool, np.bool_)) or not (
        isinstance(value, numbers.Real) or isinstance(value, (jax.Array, np.ndarray, np.generic))
    ):
        raise TypeError(f"{fn}: {name} must be a real number, got {type(value).__name__}")
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        dtype = jnp.result_type(value)
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
            raise TypeError(f"{fn}: {name} must be a real number, got an array of {dtype}")
        if np.ndim(value) != 0:
            raise ValueError(f"{fn}: {name} must be a scalar, got shape {np.shape(value)}")


def _check_nonnegative(fn: str, name: str, value: Scalar) -> None:
    """A finite number >= 0 (a learning rate, ε)."""
    _check_scalar(fn, name, value)
    if is_concrete(value):
        v = float(value)
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{fn}: {name} must be a finite number >= 0, got {v}")


def _check_unit(fn: str, name: str, value: Scalar) -> None:
    """A number in [0, 1) (momentum, decay rate, β)."""
    _check_scalar(fn, name, value)
    if is_concrete(value):
        v = float(value)
        if not 0 <= v < 1:  # False for NaN too
            raise ValueError(f"{fn}: {name} must lie in [0, 1), got {v}")


def _wide(dtype: Any) -> Any:
    """The computing dtype of a leaf: its dtype promoted with float32 (float32 for float16
    and bfloat16, float64 for float64), wide enough for 1 − 0.999 and for 1e-7."""
    return jnp.promote_types(dtype, jnp.float32)


def _as(value: Scalar, like: jax.Array) -> jax.Array:
    """``value`` in ``like``'s computing dtype (:func:`_wide`)."""
    return jnp.asarray(value, dtype=_wide(like.dtype))


def _w(x: jax.Array) -> jax.Array:
    """x in its computing dtype."""
    return x.astype(_wide(x.dtype))


def _zeros(params: PyTree) -> PyTree:
    """The state's accumulators: zeros shaped like the params, in the computing dtype."""
    return jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), _wide(jnp.result_type(p))), params)


def _check_leaves(fn: str, name: str, tree: PyTree) -> None:
    _checks.check_floating_tree(
        fn,
        tree,
        name,
        "an integer or bool parameter cannot take a fractional step (it would stay put); "
        "convert it with .astype(jnp.float32)",
    )


# --------------------------------------------------------------------------------------
# Gradients against the params the state was made for (shapes are static: these checks run
# once, while the update is traced, and cost nothing when the compiled step runs)

Layout = tuple[Any, tuple[tuple[str, tuple[int, ...]], ...]]
"""A pytree's structure (its treedef) and each leaf's path and shape: static data."""


def _layout(tree: PyTree) -> Layout:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return treedef, tuple((jax.tree_util.keystr(path), tuple(np.shape(x))) for path, x in leaves)


def _check_like(fn: str, name: str, tree: PyTree, expected: Layout) -> None:
    """``tree`` (the gradients, or the params passed to update) has the structure and the
    leaf shapes of the params that ``fn``'s state was made for (``expected``).

    Raises:
        ValueError: naming ``fn``, the leaves missing or unexpected, or the first leaf of
            another shape with both shapes.
    """
    treedef, leaves = _layout(tree)
    want_treedef, want_leaves = expected
    made = f"the params {fn}'s state was made for (opt.init(params))"
    if treedef != want_treedef:
        have, want = dict(leaves), dict(want_leaves)
        missing = [p for p in want if p not in have]
        extra = [p for p in have if p not in want]
        what = "; ".join(
            part
            for part in (
                f"missing {', '.join(name + p for p in missing)}" if missing else "",
                f"unexpected {', '.join(name + p for p in extra)}" if extra else "",
            )
            if part
        )
        raise ValueError(
            f"{fn}: {name} do not match {made}: "
            + (what or f"{name} is {treedef}, the params were {want_treedef}")
        )
    for (path, shape), (_, want) in zip(leaves, want_leaves, strict=True):
        if shape != want:
            raise ValueError(
                f"{fn}: {name}{path} has shape {shape}, expected {want}: the shape of "
                f"params{path} in {made}"
            )


def _check_update(fn: str, grads: PyTree, params: PyTree, expected: Layout) -> None:
    """The gradients (and ``params``, if given) against the state's params; the gradients'
    dtypes (floating)."""
    _check_like(fn, "grads", grads, expected)
    if params is not None:
        _check_like(fn, "params", params, expected)
    _check_leaves(fn, "grads", grads)


def _init(fn: str, make_state: Callable[[PyTree], Any]) -> Callable[[PyTree], Any]:
    def init(params):
        _check_leaves(fn, "params", params)
        return make_state(params)

    return init


def _finish(fn: str, grads: PyTree, updates: PyTree, checks: tuple) -> PyTree:
    """Updates cast to each gradient's dtype; NaN where a traced hyperparameter is out of
    range (``checks``: pairs (value, interval))."""
    updates = jax.tree.map(lambda u, g: u.astype(g.dtype), updates, grads)
    ok = True
    for value, interval in checks:
        here = _checks.hyperparameter_ok(value, interval)
        if here is not True:
            ok = here if ok is True else ok & here
    return _checks.nan_unless_ok(updates, ok)


_LR = _checks.NONNEGATIVE
_UNIT = _checks.UNIT


# --------------------------------------------------------------------------------------
# SGD


def sgd(lr: Scalar = 0.01) -> optax.GradientTransformation:
    """The book's ``SGD``: ``p ← p − lr·g``. Same as ``optax.sgd(lr)``.

    Args:
        lr: learning rate, a finite number >= 0 (may be traced under ``jit``/``vmap``).

    Returns:
        A transformation with state :class:`SGDState` (no arrays: the params' structure
        and shapes, static); updates ``−lr·g``, each of g's shape and dtype.
    """
    _check_nonnegative("sgd", "lr", lr)

    def update(grads, state, params=None):
        _check_update("sgd", grads, params, state.layout)
        updates = jax.tree.map(lambda g: -_as(lr, g) * _w(g), grads)
        return _finish("sgd", grads, updates, ((lr, _LR),)), state

    return optax.GradientTransformation(_init("sgd", lambda p: SGDState(_layout(p))), update)


@jax.tree_util.register_pytree_node_class
class SGDState:
    """The state of :func:`sgd`: no arrays (the book's ``SGD`` keeps none), only the
    structure and leaf shapes of the params it was made for, as static pytree data, so
    that ``update`` can refuse gradients of other shapes as the other rules do."""

    __slots__ = ("layout",)

    def __init__(self, layout: Layout):
        self.layout = layout

    def tree_flatten(self):
        return (), self.layout

    @classmethod
    def tree_unflatten(cls, layout: Layout, children: tuple) -> SGDState:
        del children
        return cls(layout)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SGDState) and self.layout == other.layout

    def __hash__(self) -> int:
        return hash(self.layout)

    def __repr__(self) -> str:
        return f"SGDState(params {', '.join(f'{p} {s}' for p, s in self.layout[1])})"


# --------------------------------------------------------------------------------------
# Momentum and Nesterov


class MomentumState(NamedTuple):
    """The book's ``Momentum.v``: the last step taken, shaped like the params (starts at 0)."""

    v: PyTree


class NesterovState(NamedTuple):
    """The book's ``Nesterov.v``: the velocity, shaped like the params (starts at 0)."""

    v: PyTree


def momentum(lr: Scalar = 0.01, momentum: Scalar = 0.9) -> optax.GradientTransformation:
    """The book's ``Momentum``: ``v ← momentum·v − lr·g; p ← p + v`` (v starts at 0).

    The same as ``optax.sgd(lr, momentum=momentum)`` for a constant lr; optax keeps the
    trace ``m ← g + momentum·m`` (gradient units) and steps ``−lr·m``, so the book's
    ``v = −lr·m``.

    Args:
        lr: learning rate, a finite number >= 0.
        momentum: the book's α, in [0, 1).

    Returns:
        A transformation with state :class:`MomentumState`; updates ``v`` (params' shapes).
    """
    _check_nonnegative("momentum", "lr", lr)
    _check_unit("momentum", "momentum", momentum)

    def update(grads, state, params=None):
        _check_update("momentum", grads, params, _layout(state.v))
        v = jax.tree.map(lambda v, g: _as(momentum, g) * v - _as(lr, g) * _w(g), state.v, grads)
        checks = ((lr, _LR), (momentum, _UNIT))
        return _finish("momentum", grads, v, checks), MomentumState(v=v)

    init = _init("momentum", lambda p: MomentumState(v=_zeros(p)))
    return optax.GradientTransformation(init, update)


def nesterov(lr: Scalar = 0.01, momentum: Scalar = 0.9) -> optax.GradientTransformation:
    """The book's ``Nesterov`` (Bengio et al. 2012, arXiv:1212.0901, eq. 7)::

        p ← p + momentum²·v − (1+momentum)·lr·g;   then  v ← momentum·v − lr·g

    (the update uses v before it is changed). The same as
    ``optax.sgd(lr, momentum=momentum, nesterov=True)`` for a constant lr, with the book's
    ``v = −lr`` × optax's trace. The book's repository code changes v first and then adds
    ``momentum²·v``, which weighs the current gradient by −(1+m+m²)·lr instead of
    −(1+m)·lr; this follows the paper.

    Args:
        lr: learning rate, a finite number >= 0.
        momentum: in [0, 1).

    Returns:
        A transformation with state :class:`NesterovState`.
    """
    _check_nonnegative("nesterov", "lr", lr)
    _check_unit("nesterov", "momentum", momentum)

    def update(grads, state, params=None):
        _check_update("nesterov", grads, params, _layout(state.v))

        def step(v, g):
            mu, eta = _as(momentum, g), _as(lr, g)
            return mu * mu * v - (1 + mu) * eta * _w(g)

        updates = jax.tree.map(step, state.v, grads)
        v = jax.tree.map(lambda v, g: _as(momentum, g) * v - _as(lr, g) * _w(g), state.v, grads)
        checks = ((lr, _LR), (momentum, _UNIT))
        return _finish("nesterov", grads, updates, checks), NesterovState(v=v)

    init = _init("nesterov", lambda p: NesterovState(v=_zeros(p)))
    return optax.GradientTransformation(init, update)


# --------------------------------------------------------------------------------------
# AdaGrad and RMSprop


class AdaGradState(NamedTuple):
    """The book's ``AdaGrad.h``: the sum of squared gradients so far (starts at 0)."""

    h: PyTree


class RMSpropState(NamedTuple):
    """The book's ``RMSprop.h``: the moving average of squared gradients (starts at 0)."""

    h: PyTree


def adagrad(lr: Scalar = 0.01, *, eps: Scalar = EPS) -> optax.GradientTransformation:
    """The book's ``AdaGrad``: ``h ← h + g²; p ← p − lr·g / (√h + eps)`` (h starts at 0).

    ``optax.adagrad`` differs: its h starts at 0.1 and its ε sits inside the root,
    ``g/√(h + ε)``; with ``eps=0`` here it is ``optax.adagrad(lr,
    initial_accumulator_value=0, eps=0)``.

    Args:
        lr: learning rate, a finite number >= 0.
        eps: the book's 1e-7 (finite, >= 0).

    Returns:
        A transformation with state :class:`AdaGradState`.
    """
    _check_nonnegative("adagrad", "lr", lr)
    _check_nonnegative("adagrad", "eps", eps)

    def update(grads, state, params=None):
        _check_update("adagrad", grads, params, _layout(state.h))
        h = jax.tree.map(lambda h, g: h + _w(g) * _w(g), state.h, grads)
        updates = jax.tree.map(
            lambda g, h: -_as(lr, g) * _w(g) / (jnp.sqrt(h) + _as(eps, g)), grads, h
        )
        checks = ((lr, _LR), (eps, _LR))
        return _finish("adagrad", grads, updates, checks), AdaGradState(h=h)

    init = _init("adagrad", lambda p: AdaGradState(h=_zeros(p)))
    return optax.GradientTransformation(init, update)


def rmsprop(
    lr: Scalar = 0.01, decay_rate: Scalar = 0.99, *, eps: Scalar = EPS
) -> optax.GradientTransformation:
    """The book's ``RMSprop``: ``h ← decay·h + (1−decay)·g²; p ← p − lr·g / (√h + eps)``.

    The same as ``optax.rmsprop(lr, decay=decay_rate, eps=eps, eps_in_sqrt=False)``;
    optax's defaults differ (decay 0.9, ε = 1e-8 inside the root).

    Args:
        lr: learning rate, a finite number >= 0.
        decay_rate: in [0, 1).
        eps: the book's 1e-7 (finite, >= 0).

    Returns:
        A transformation with state :class:`RMSpropState`.
    """
    _check_nonnegative("rmsprop", "lr", lr)
    _check_unit("rmsprop", "decay_rate", decay_rate)
    _check_nonnegative("rmsprop", "eps", eps)

    def update(grads, state, params=None):
        _check_update("rmsprop", grads, params, _layout(state.h))

        def accumulate(h, g):
            decay = _as(decay_rate, g)
            return decay * h + (1 - decay) * _w(g) * _w(g)

        h = jax.tree.map(accumulate, state.h, grads)
        updates = jax.tree.map(
            lambda g, h: -_as(lr, g) * _w(g) / (jnp.sqrt(h) + _as(eps, g)), grads, h
        )
        checks = ((lr, _LR), (decay_rate, _UNIT), (eps, _LR))
        return _finish("rmsprop", grads, updates, checks), RMSpropState(h=h)

    init = _init("rmsprop", lambda p: RMSpropState(h=_zeros(p)))
    return optax.GradientTransformation(init, update)


# --------------------------------------------------------------------------------------
# Adam


class AdamState(NamedTuple):
    """The book's ``Adam.iter``, ``m`` and ``v``: steps taken (int32) and the moving
    averages of the gradients and of their squares (params' shapes, starting at 0)."""

    iter: jax.Array
    m: PyTree
    v: PyTree


def adam(
    lr: Scalar = 0.001, beta1: Scalar = 0.9, beta2: Scalar = 0.999, *, eps: Scalar = EPS
) -> optax.GradientTransformation:
    """The book's ``Adam``::

        t ← t+1;  lr_t = lr·√(1−β2ᵗ)/(1−β1ᵗ)
        m ← m + (1−β1)(g−m);  v ← v + (1−β2)(g²−v);  p ← p − lr_t·m / (√v + eps)

    ``optax.adam`` divides the bias-corrected ``m̂ = m/(1−β1ᵗ)`` by ``√v̂ + ε`` with
    ``v̂ = v/(1−β2ᵗ)``; this rule equals that one with ε/√(1−β2ᵗ) in place of ε at step t
    (ε enters 31.6 times larger at t = 1, with β2 = 0.999), so the two agree with a
    constant ε only for ``eps=0`` (``optax.adam(lr, beta1, beta2, eps=0)``); optax's
    default ε is 1e-8.

    Args:
        lr: learning rate, a finite number >= 0.
        beta1: in [0, 1).
        beta2: in [0, 1).
        eps: the book's 1e-7 (finite, >= 0).

    Returns:
        A transformation with state :class:`AdamState`.
    """
    _check_nonnegative("adam", "lr", lr)
    _check_unit("adam", "beta1", beta1)
    _check_unit("adam", "beta2", beta2)
    _check_nonnegative("adam", "eps", eps)

    def update(grads, state, params=None):
        _check_update("adam", grads, params, _layout(state.m))
        t = state.iter + 1
        m = jax.tree.map(lambda m, g: m + (1 - _as(beta1, g)) * (_w(g) - m), state.m, grads)
        v = jax.tree.map(lambda v, g: v + (1 - _as(beta2, g)) * (_w(g) * _w(g) - v), state.v, grads)

        def step(m, v):
            tt = t.astype(m.dtype)
            lr_t = _as(lr, m) * jnp.sqrt(1 - _as(beta2, m) ** tt) / (1 - _as(beta1, m) ** tt)
            return -lr_t * m / (jnp.sqrt(v) + _as(eps, m))

        checks = ((lr, _LR), (beta1, _UNIT), (beta2, _UNIT), (eps, _LR))
        updates = _finish("adam", grads, jax.tree.map(step, m, v), checks)
        return updates, AdamState(iter=t, m=m, v=v)

    init = _init(
        "adam",
        lambda p: AdamState(iter=jnp.zeros((), jnp.int32), m=_zeros(p), v=_zeros(p)),
    )
    return optax.GradientTransformation(init, update)


# --------------------------------------------------------------------------------------
# By name

OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
}
"""Every rule by its lower-case name (the book's classes ``SGD``, ``Momentum``, ...)."""

BOOK_NAMES: dict[str, str] = {
    "sgd": "SGD",
    "momentum": "Momentum",
    "nesterov": "Nesterov",
    "adagrad": "AdaGrad",
    "rmsprop": "RMSprop",
    "adam": "Adam",
}
"""The book's class name of each rule (for legends and printouts)."""
