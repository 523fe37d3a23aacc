"""trace: run a function forward, then backward node by node, keeping every edge's values."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Collection, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcnet import layers
from funcnet.graph._graph import Graph, Node, Value
from funcnet.graph._jaxpr import Program, jaxpr_program

# The funcnet layers: custom_vjp functions with the book's backward rules.
LAYER_NAMES = frozenset(
    getattr(layers, "REGISTRY", ())
    or ("mul", "add", "relu", "sigmoid", "affine", "softmax_with_loss")
)


def _differentiable(x: jax.Array) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _check_expand(expand: Any) -> None:
    """``expand`` is a bool, one layer name, or a collection of names."""
    if isinstance(expand, (bool, str)):
        return
    if not isinstance(expand, Collection) or not all(isinstance(n, str) for n in expand):
        raise TypeError(
            "trace: expand must be True, False, a name such as 'affine' or a set of names "
            f"such as {{'affine', 'relu'}}, got {type(expand).__name__} {expand!r}"
        )


def _check_args(f: Callable[..., Any], args: tuple[Any, ...]) -> None:
    if not callable(f):
        raise TypeError(
            f"trace: f must be a function to trace, got {type(f).__name__} {f!r}; "
            "call trace(f, *args)"
        )
    try:
        params = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        params = []
    leaves_with_paths = jax.tree_util.tree_leaves_with_path(args)
    if not leaves_with_paths:
        raise ValueError(
            f"trace: {getattr(f, '__name__', 'f')} needs at least one array argument to be "
            f"traced at, got {len(args)} arguments with no arrays: call trace(f, x, ...)"
        )
    array_types = (jax.Array, np.ndarray, np.generic, numbers.Number)
    for path, leaf in leaves_with_paths:
        if not isinstance(leaf, array_types):
            position = path[0].idx
            name = params[position] if position < len(params) else f"#{position}"
            raise TypeError(
                f"trace: argument {name}{jax.tree_util.keystr(path[1:])} must be an array "
                f"or a number, got {type(leaf).__name__} {leaf!r}"
            )


def _output_cotangents(
    program: Program, outputs: Sequence[jax.Array], cotangent: Any
) -> list[jax.Array]:
    """The upstream gradient at each output leaf: 1 for a scalar output by default."""
    shapes = jax.tree.unflatten(program.out_tree, [o.shape for o in outputs])
    for o in outputs:
        if not _differentiable(o):
            raise ValueError(
                f"trace: the output has dtype {o.dtype}; backward values need a "
                f"floating-point output (output shapes {shapes})"
            )
    if cotangent is None:
        if len(outputs) != 1 or outputs[0].shape != ():
            raise ValueError(
                f"trace: the output is not a scalar (shapes {shapes}), so there is no "
                "default upstream gradient; pass cotangent=, arrays of the output's "
                "shapes (e.g. jnp.ones_like(output))"
            )
        return [jnp.ones((), outputs[0].dtype)]
    leaves, tree = jax.tree.flatten(cotangent)
    if tree != program.out_tree:
        raise ValueError(f"trace: cotangent must match the output's structure {shapes}")
    cts = []
    for ct, out in zip(leaves, outputs, strict=True):
        ct = _real_cotangent(ct, out)
        if ct.shape != out.shape:
            raise ValueError(
                f"trace: cotangent must have the output's shape; output {out.shape}, "
                f"cotangent {ct.shape}"
            )
        cts.append(ct)
    return cts


def _real_cotangent(ct: Any, out: jax.Array) -> jax.Array:
    """One cotangent leaf as an array of the output's dtype; a complex, boolean or
    non-numeric cotangent is refused instead of being silently cast (which would drop an
    imaginary part)."""
    dtype = getattr(ct, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(ct).dtype
        except (TypeError, ValueError):
            dtype = np.dtype(object)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(
            f"trace: cotangent must hold real numbers (the output's dtype is {out.dtype}), "
            f"got {type(ct).__name__} of dtype {dtype}"
        )
    return jnp.asarray(ct, dtype=out.dtype)


def _step_vjp(
    apply: Callable[..., tuple[jax.Array, ...]],
    invals: Sequence[jax.Array],
    outvals: Sequence[jax.Array],
    out_cts: Sequence[jax.Array | None],
) -> list[jax.Array | None]:
    """Cotangents of one step's inputs, through ``jax.vjp`` of the step's own primitive
    (so a custom_vjp layer's hand-written rule). Integer inputs and outputs are held fixed;
    an output with no cotangent gets zeros."""
    diff = [i for i, x in enumerate(invals) if _differentiable(x)]
    float_outs = [i for i, o in enumerate(outvals) if _differentiable(o)]
    result: list[jax.Array | None] = [None] * len(invals)
    if not diff or not float_outs:
        return result

    def on_floats(*xs: jax.Array) -> tuple[jax.Array, ...]:
        full = list(invals)
        for i, x in zip(diff, xs, strict=True):
            full[i] = x
        outs = apply(*full)
        return tuple(outs[i] for i in float_outs)

    _, vjp = jax.vjp(on_floats, *(invals[i] for i in diff))
    cts = vjp(
        tuple(jnp.zeros_like(outvals[i]) if out_cts[i] is None else out_cts[i] for i in float_outs)
    )
    for i, ct in zip(diff, cts, strict=True):
        result[i] = ct
    return result


def trace(
    f: Callable[..., Any],
    *args: Any,
    cotangent: Any = None,
    expand: bool | Collection[str] = False,
) -> Graph:
    """The computational graph of ``f`` at ``args``, with forward and backward values.

    ``f`` is any JAX function of arrays (or pytrees of arrays); ``args`` are the
    arguments to trace it at. Nodes are operations: a funcnet layer (``mul``, ``affine``,
    ...) is one node, and so is any other custom_vjp/custom_jvp function or nested
    ``jit``; ``expand=True`` shows the primitives inside all of them, ``expand={"affine"}``
    inside those named. Edges are values: inputs carry the parameter names of ``f``,
    constants their values.

    The graph is evaluated forward, then backward node by node from ``cotangent`` (the
    upstream gradient at the output; default 1 for a scalar output, required otherwise),
    each node through ``jax.vjp`` of its own primitive, so a funcnet layer through its
    hand-written rule, adding the contributions of values used more than once. On an
    input edge the backward value is therefore ``jax.grad(f)`` (for a scalar output); on
    an intermediate edge, the gradient of the rest of the function with respect to it.

    Example (the book's Fig. 5-16)::

        g = trace(lambda apple, apple_num, tax: mul(mul(apple, apple_num), tax), 100., 2., 1.1)
        g.input("apple").backward   # 2.2
        g.render("apples.png")

    Raises:
        TypeError: ``f`` is not callable, an argument is not an array or a number,
            ``expand`` is not a bool or names, or ``cotangent`` is not real (complex,
            boolean or text).
        ValueError: ``f`` has no array argument, its output is not floating point, or
            ``cotangent`` is missing for a non-scalar output or has the wrong shape.
    """
    _check_args(f, args)
    _check_expand(expand)
    program = jaxpr_program(f, args, expand)
    forward: list[Any] = [None] * program.num_slots
    for slot, leaf in enumerate(jax.tree.leaves(args)):
        forward[slot] = jnp.asarray(leaf)
    for slot, value in program.consts:
        forward[slot] = value
    for step in program.steps:
        outs = step.apply(*(forward[s] for s in step.inputs))
        for slot, out in zip(step.outputs, outs, strict=True):
            forward[slot] = out
    out_cts = _output_cotangents(program, [forward[s] for s in program.outputs], cotangent)

    backward: dict[int, jax.Array] = {}

    def accumulate(slot: int, ct: jax.Array | None) -> None:
        if ct is not None:
            backward[slot] = backward[slot] + ct if slot in backward else ct

    for slot, ct in zip(program.outputs, out_cts, strict=True):
        accumulate(slot, ct)
    for step in reversed(program.steps):
        cts = [backward.get(s) for s in step.outputs]
        if all(ct is None for ct in cts):
            continue  # nothing downstream of this step reaches the output
        ins = [forward[s] for s in step.inputs]
        in_cts = _step_vjp(step.apply, ins, [forward[s] for s in step.outputs], cts)
        for slot, ct in zip(step.inputs, in_cts, strict=True):
            accumulate(slot, ct)
    return _assemble(getattr(f, "__name__", "f"), program, forward, backward, out_cts)


def _assemble(
    name: str,
    program: Program,
    forward: list[Any],
    backward: dict[int, jax.Array],
    out_cts: list[jax.Array],
) -> Graph:
    producer: dict[int, int] = {}
    consumers: dict[int, list[int]] = {}
    nodes = []
    for i, step in enumerate(program.steps):
        kind = "layer" if step.kind == "custom_vjp" and step.name in LAYER_NAMES else step.kind
        nodes.append(Node(i, step.name, kind, step.inputs, step.outputs, step.scope, step.params))
        for slot in step.outputs:
            producer[slot] = i
        for slot in dict.fromkeys(step.inputs):
            consumers.setdefault(slot, []).append(i)
    n_in = len(program.input_names)
    values = []
    for slot, x in enumerate(forward):
        if slot < n_in:
            kind, label = "input", program.input_names[slot]
        elif slot in producer:
            kind, label = "intermediate", ""
        else:
            kind, label = "const", ""
        back = backward.get(slot, jnp.zeros_like(x)) if _differentiable(x) else None
        values.append(
            Value(slot, kind, label, x, back, producer.get(slot), tuple(consumers.get(slot, ())))
        )
    return Graph(
        name, tuple(values), tuple(nodes), tuple(range(n_in)), program.outputs, tuple(out_cts)
    )
