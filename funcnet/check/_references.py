"""The three ways of computing ``cᵀ·J`` (a cotangent pulled back through a function).

Every function here takes ``fun``, a function of a list of float arrays (the leaves being
differentiated) returning a list of float arrays (the outputs being checked), the point
``diff`` (that list of leaves) and cotangents ``cots`` stacked along a leading axis of
size K (one array per output). Each returns one array per leaf, shaped ``(K, *leaf)``:

- :func:`reverse`: ``jax.vjp`` (the rule's ``bwd`` for a custom_vjp, or reverse-mode
  autodiff of a plain forward);
- :func:`forward`: ``jax.jvp`` along every basis direction ``eᵢ`` and the dot-product
  identity ⟨vjp(c), eᵢ⟩ = ⟨c, jvp(eᵢ)⟩, for what reverse mode cannot go through
  (``lax.while_loop``, Pallas kernels) and for ``jax.custom_jvp`` rules;
- :func:`central_differences`: ``(F(x + hᵢeᵢ) − F(x − hᵢeᵢ)) / 2hᵢ`` with
  ``hᵢ = h·max(1, |xᵢ|)``, meant for float64.

The basis directions are evaluated with ``vmap`` in chunks (as
:func:`funcnet.gradient.numerical_gradient` does), so one compiled program covers all of
them; the K cotangents share every evaluation of ``fun``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from funcnet._reduce import max_keeping_nan
from funcnet.gradient import DEFAULT_MAX_CHUNK_ELEMENTS

Leaves = list
LeafFunction = Callable[[Leaves], Leaves]


def pair(outs: Leaves, cots: Leaves) -> jax.Array:
    """⟨cₖ, out⟩ for each of the K stacked cotangents: shape ``(K,)``."""
    total = 0.0
    for o, c in zip(outs, cots, strict=True):
        axes = tuple(range(1, c.ndim))
        total = total + jnp.sum(c * o[None].astype(c.dtype), axis=axes)
    return total


def reverse(fun: LeafFunction, diff: Leaves, cots: Leaves) -> Leaves:
    """``cₖᵀ·J`` by ``jax.vjp``: one forward pass, then the pullback of all K cotangents at
    once (``vmap``; one at a time where the rule cannot be batched)."""
    _, pullback = jax.vjp(fun, diff)
    return pull_reverse(pullback, cots)


def _map(fn, n: int, chunk: int):
    """``[fn(i) for i in range(n)]`` stacked: one ``vmap`` when a chunk covers all of
    them (faster to compile), else ``lax.map`` in chunks; one at a time (a ``lax.map``
    without batching) where ``fn`` cannot be batched (a ``jax.pure_callback`` without a
    ``vmap_method``). An error of ``fn`` itself is raised again by that last try."""
    try:
        if chunk >= n:
            return jax.vmap(fn)(jnp.arange(n))
        return jax.lax.map(fn, jnp.arange(n), batch_size=chunk)
    except Exception:  # noqa: BLE001 - not batchable: one direction at a time
        return jax.lax.map(fn, jnp.arange(n))


def _chunk(n: int, work: int) -> int:
    """Basis directions evaluated at once, keeping ``chunk · work`` values bounded."""
    return max(1, min(n, DEFAULT_MAX_CHUNK_ELEMENTS // max(work, 1)))


def _unravel_columns(columns: jax.Array, unravel) -> Leaves:
    """(n, K) columns ⟨cₖ, J eᵢ⟩ -> one ``(K, *leaf)`` array per leaf."""
    return jax.vmap(unravel, in_axes=1)(columns)


def forward(fun: LeafFunction, diff: Leaves, cots: Leaves) -> Leaves:
    """``cₖᵀ·J`` by ``jax.jvp`` along every basis direction (the dot-product test with the
    standard basis: element i of the pullback is ⟨cₖ, J eᵢ⟩)."""
    flat, unravel = ravel_pytree(diff)
    n = flat.shape[0]
    work = n + sum(c[0].size for c in cots)

    def column(i):
        tangent = unravel(jnp.zeros_like(flat).at[i].set(1))
        _, out_tangent = jax.jvp(fun, (diff,), (tangent,))
        return pair(out_tangent, cots)

    columns = _map(column, n, _chunk(n, work))
    return _unravel_columns(columns, unravel)


def central_differences(fun: LeafFunction, diff: Leaves, cots: Leaves, h: float = 1e-4) -> Leaves:
    """``cₖᵀ·J`` by central differences of ``x ↦ ⟨cₖ, fun(x)⟩``, step ``h·max(1, |xᵢ|)``
    (the actual step, ``(xᵢ + s) − (xᵢ − s)``, is the denominator)."""
    flat, unravel = ravel_pytree(diff)
    n = flat.shape[0]
    work = n + sum(c[0].size for c in cots)

    def column(i):
        s = h * jnp.maximum(1.0, jnp.abs(flat[i]))
        up, down = flat[i] + s, flat[i] - s
        f_up = pair(fun(unravel(flat.at[i].set(up))), cots)
        f_down = pair(fun(unravel(flat.at[i].set(down))), cots)
        return (f_up - f_down) / (up - down)

    columns = _map(column, n, _chunk(n, work))
    return _unravel_columns(columns, unravel)


def output_magnitude(fun: LeafFunction, diff: Leaves, cots: Leaves) -> jax.Array:
    """``maxₖ Σ |cₖ · fun(x)|``: the size of the reduced output, whose rounding the finite
    differences divide by the step."""
    total = 0.0
    for o, c in zip(fun(diff), cots, strict=True):
        axes = tuple(range(1, c.ndim))
        total = total + jnp.sum(jnp.abs(c * o[None].astype(c.dtype)), axis=axes)
    return max_keeping_nan(total)


def traceable(how: Callable[..., object], *args) -> str:
    """``""`` when ``how(*args)`` traces (abstractly, nothing is computed), else the first
    line of the error JAX raised."""
    try:
        jax.eval_shape(how, *args)
    except Exception as e:  # noqa: BLE001 - any tracing error means "this mode does not work"
        return first_line(e)
    return ""


def first_line(e: BaseException, limit: int = 160) -> str:
    """``TypeName: first line of the message``, at most ``limit`` characters."""
    text = str(e).strip().splitlines()
    msg = f"{type(e).__name__}: {text[0] if text else ''}"
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def error_text(e: BaseException, limit: int = 600) -> str:
    """``TypeName: message`` on one line (its lines joined, JAX's traceback-filtering
    notice left out), at most ``limit`` characters: for a row that raised."""
    lines = [ln.strip() for ln in str(e).strip().splitlines()]
    lines = [ln for ln in lines if ln and not set(ln) <= {"-"}]
    lines = [ln for ln in lines if not ln.startswith("For simplicity, JAX has removed")]
    msg = f"{type(e).__name__}: {' '.join(lines)}"
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def pull_reverse(pullback, cots: Leaves) -> Leaves:
    """Apply a ``jax.vjp`` pullback to K stacked cotangents (``vmap``; one at a time where
    the rule cannot be batched)."""
    try:
        return jax.vmap(lambda c: pullback(c)[0])(cots)
    except Exception:  # noqa: BLE001 - a rule without a batching rule: one at a time
        return jax.lax.map(lambda c: pullback(c)[0], cots)
