"""The pieces every layer is made of: :func:`make_layer` (plain forward + hand-written
rule -> validated public layer), broadcasting helpers, and the registry's record types and
samplers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcnet._checks import (
    describe,
    host_view,
)

# --------------------------------------------------------------------------------------
# Helpers


def make_layer(
    name: str,
    plain: Callable[..., jax.Array],
    fwd: Callable[..., tuple[jax.Array, Any]],
    bwd: Callable[[Any, jax.Array], tuple[Any, ...]],
    validate: Callable[..., None] | None = None,
) -> Callable[..., jax.Array]:
    """Wrap a plain forward and its hand-written rule into a validated public layer.

    The plain forward is renamed ``name`` so that traced graphs (``funcnet.graph``) and
    JAX's debug info show the layer under the book's name.
    """
    plain.__name__ = plain.__qualname__ = name
    rule = jax.custom_vjp(plain)
    rule.defvjp(fwd, bwd)
    arg_names = tuple(inspect.signature(plain).parameters)

    @functools.wraps(plain)
    def layer(*args):
        if len(args) != len(arg_names):
            raise TypeError(
                f"{name}: takes {len(arg_names)} arguments {arg_names}, got {len(args)}"
            )
        # Validators see the caller's values (NumPy views: int64 labels are not narrowed).
        views = tuple(host_view(a) for a in args)
        for arg, view in zip(arg_names, views, strict=True):
            if not (jnp.issubdtype(view.dtype, jnp.number) or view.dtype == jnp.bool_):
                raise TypeError(f"{name}: {arg} must be a numeric array, got {describe(view)}")
        if validate is not None:
            validate(*views)
        # Converted from the arguments themselves: Python scalars stay weakly typed.
        return rule(*(jnp.asarray(a) for a in args))

    layer.fun = plain
    layer.rule = rule
    layer.fwd = fwd
    layer.bwd = bwd
    # Names this function itself: functools.wraps and jax.vmap copy the attributes above
    # onto their wrappers, which compute something else (funcnet.check.verify tells them
    # apart by this).
    layer.funcnet_layer = layer
    return layer


def _shape_token(x: jax.Array) -> jax.Array:
    """A zero-element array whose shape and dtype record x's (a residual costing nothing)."""
    return jnp.zeros((0, *jnp.shape(x)), jnp.result_type(x))


def unbroadcast(g: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Sum a broadcast cotangent back to ``shape``: the reverse of numpy broadcasting."""
    shape = tuple(shape)
    extra = g.ndim - len(shape)
    if extra:
        g = jnp.sum(g, axis=tuple(range(extra)))
    stretched = tuple(
        i for i, (gs, s) in enumerate(zip(g.shape, shape, strict=True)) if s == 1 and gs != 1
    )
    if stretched:
        g = jnp.sum(g, axis=stretched, keepdims=True)
    return g.reshape(shape)


# --------------------------------------------------------------------------------------
# Registry: every custom-rule layer with valid sample inputs, for tests and funcnet.check


class LayerCase(NamedTuple):
    """One input configuration of a registered layer.

    ``make_inputs(rng, dtype)`` returns the layer's positional arguments, drawn from a
    ``numpy.random.Generator`` (test data: NumPy draws them without compiling anything);
    ``argnums`` are the arguments to differentiate (integer labels are never among them).
    """

    name: str
    make_inputs: Callable[[np.random.Generator, Any], tuple[jax.Array, ...]]
    argnums: tuple[int, ...] = (0,)


class RegisteredLayer(NamedTuple):
    """A layer with a custom backward rule and the cases it is verified on."""

    name: str
    layer: Callable[..., jax.Array]
    cases: tuple[LayerCase, ...]


def _normal(rng, shape, dtype, scale=1.0):
    return jnp.asarray(scale * rng.standard_normal(shape), dtype)


def _away_from_zero(rng, shape, dtype, margin=0.1):
    """Values with |x| >= margin, so finite differences never straddle ReLU's kink."""
    u = rng.standard_normal(shape)
    return jnp.asarray(np.sign(u) * (margin + np.abs(u)), dtype)
