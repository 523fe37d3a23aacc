"""The one place that reads JAX internals: a jaxpr turned into a flat list of steps.

``jax.make_jaxpr`` gives a function's computation as equations over variables. This module
turns it into plain data that the rest of :mod:`funcnet.graph` can evaluate without
knowing anything about jaxprs: numbered *slots* (one per value), and *steps*, each with a
name, the slots it reads and writes, and an ``apply`` function that binds the equation's
primitive (as ``jax.core.eval_jaxpr`` does). Because ``apply`` binds the original
primitive, ``jax.vjp(step.apply, ...)`` goes through that primitive's own derivative rule:
for a funcnet layer (one ``custom_vjp_call`` equation) that is the layer's hand-written
``bwd``.

What is read here, tested with jax 0.10.2 and 0.11.2 (``tests/test_graph.py`` checks it):

- ``ClosedJaxpr.jaxpr.debug_info.arg_names``: the names of the traced function's
  parameters (one per array leaf);
- ``custom_vjp_call`` / ``custom_jvp_call``: the callee's name is the start of
  ``params["call_jaxpr"].jaxpr.debug_info.func_src_info`` (``'mul at …'``);
- ``jit`` (``pjit``) / ``closed_call``: the callee is ``params["jaxpr"]``, its name
  ``params["name"]``;
- ``Primitive.bind(*invals, **Primitive.get_bind_params(params))``, called afresh for
  every evaluation (the bind parameters hold single-use wrapped functions).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

# Equations that call another jaxpr as a function, and where that jaxpr is in params.
_CALLS = {
    "custom_vjp_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
}


class Step(NamedTuple):
    """One equation of the flattened jaxpr: ``outputs = apply(*inputs)`` over slots.

    ``kind`` is ``"primitive"`` for a JAX primitive (``mul``, ``exp``, ``dot_general``),
    ``"custom_vjp"`` for a ``jax.custom_vjp`` function left whole (a funcnet layer) or
    ``"call"`` for another call left whole (a custom_jvp function, a nested ``jit``); calls
    are named after the called function. ``scope`` lists the calls this step
    was inlined from, outermost first, as ``(call number, name)`` pairs. ``params`` keeps
    the equation's simple parameters (numbers, strings, tuples of them) for display.
    """

    name: str
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    apply: Callable[..., tuple[jax.Array, ...]]
    scope: tuple[tuple[int, str], ...]
    params: tuple[tuple[str, Any], ...]


class Program(NamedTuple):
    """A function's computation as slots and steps.

    Slots ``0 .. len(input_names) - 1`` are the function's array leaves, in
    ``jax.tree.leaves(args)`` order; ``consts`` gives the value of every constant slot
    (literals and closed-over arrays); ``outputs`` the slots of the output leaves, which
    ``out_tree`` puts back together.
    """

    input_names: tuple[str, ...]
    consts: tuple[tuple[int, jax.Array], ...]
    steps: tuple[Step, ...]
    outputs: tuple[int, ...]
    out_tree: Any
    num_slots: int


def _bind(eqn: Any, *invals: Any) -> tuple[jax.Array, ...]:
    """Evaluate one equation as ``jax.core.eval_jaxpr`` does, always returning a tuple."""
    params = eqn.primitive.get_bind_params(eqn.params)
    out = eqn.primitive.bind(*invals, **params)
    return tuple(out) if eqn.primitive.multiple_results else (out,)


def _call_name(eqn: Any) -> str | None:
    """The called function's name for a call equation, None for anything else."""
    key = _CALLS.get(eqn.primitive.name)
    if key is None or key not in eqn.params:
        return None
    if "name" in eqn.params:
        return str(eqn.params["name"])
    info = eqn.params[key].jaxpr.debug_info
    source = getattr(info, "func_src_info", None) or eqn.primitive.name
    return source.split(" at ")[0]


def _simple_params(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    def simple(v: Any) -> bool:
        if isinstance(v, tuple):
            return all(simple(u) for u in v)
        return isinstance(v, int | float | str | bool)

    return tuple((k, v) for k, v in sorted(params.items()) if simple(v))


def jaxpr_program(
    f: Callable[..., Any], args: tuple[Any, ...], expand: bool | Collection[str]
) -> Program:
    """Trace ``f(*args)`` with ``jax.make_jaxpr`` and flatten it into a :class:`Program`.

    ``expand`` says which calls to inline: ``False`` keeps every call (layer, custom_jvp
    function, nested jit) as one step, ``True`` inlines all of them recursively, and a
    collection of names inlines the calls of those names only.
    """
    if isinstance(expand, str):
        expand = {expand}
    closed, out_shape = jax.make_jaxpr(f, return_shape=True)(*args)
    n_in = len(closed.jaxpr.invars)
    names = getattr(closed.jaxpr.debug_info, "arg_names", None) or ()
    input_names = tuple(
        (names[i] if i < len(names) and names[i] else f"arg{i}") for i in range(n_in)
    )
    consts: list[tuple[int, jax.Array]] = []
    steps: list[Step] = []
    counter = {"slots": n_in, "calls": 0}

    def new_slot() -> int:
        counter["slots"] += 1
        return counter["slots"] - 1

    def const_slot(value: Any, aval: Any) -> int:
        slot = new_slot()
        consts.append((slot, jnp.asarray(value, dtype=aval.dtype)))
        return slot

    def inline(closed_jaxpr: Any, in_slots: list[int], scope: tuple) -> list[int]:
        jaxpr = closed_jaxpr.jaxpr
        env: dict[Any, int] = dict(zip(jaxpr.invars, in_slots, strict=True))
        for var, value in zip(jaxpr.constvars, closed_jaxpr.consts, strict=True):
            env[var] = const_slot(value, var.aval)

        def read(v: Any) -> int:
            return const_slot(v.val, v.aval) if isinstance(v, jax_core.Literal) else env[v]

        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            name = _call_name(eqn)
            if name is not None and (expand is True or (expand and name in expand)):
                counter["calls"] += 1
                inner = eqn.params[_CALLS[eqn.primitive.name]]
                outs = inline(inner, ins, (*scope, (counter["calls"], name)))
            else:
                outs = [new_slot() for _ in eqn.outvars]
                kind = "primitive" if name is None else "call"
                kind = "custom_vjp" if eqn.primitive.name == "custom_vjp_call" else kind
                params = _simple_params(eqn.params) if name is None else ()
                step = Step(
                    name or eqn.primitive.name,
                    kind,
                    tuple(ins),
                    tuple(outs),
                    functools.partial(_bind, eqn),
                    scope,
                    params,
                )
                steps.append(step)
            for var, slot in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, jax_core.DropVar):
                    env[var] = slot
        return [read(v) for v in jaxpr.outvars]

    outputs = inline(closed, list(range(n_in)), ())
    return Program(
        input_names,
        tuple(consts),
        tuple(steps),
        tuple(outputs),
        jax.tree.structure(out_shape),
        counter["slots"],
    )
