"""The traced graph as plain immutable data: values (the edges) and nodes (the operations)."""

from __future__ import annotations

import dataclasses
import numbers
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax

from funcnet.graph import _dot, _text
from funcnet.graph._options import (
    check_color,
    check_digits,
    check_max_values,
    check_rankdir,
    check_wrap,
)


class Value(NamedTuple):
    """An edge of the graph: one array with its forward and backward values.

    ``kind`` is ``"input"`` (a leaf of the function's arguments, ``name`` is the
    parameter's name, e.g. ``apple`` or ``params['W1']``), ``"const"`` (a literal or a
    closed-over array) or ``"intermediate"`` (an output of node ``producer``).
    ``backward`` is d output / d value, summed over every path (``None`` for integer and
    boolean values, which have no derivative). ``consumers`` are the nodes reading it.
    """

    id: int
    kind: str
    name: str
    forward: jax.Array
    backward: jax.Array | None
    producer: int | None
    consumers: tuple[int, ...]


class Node(NamedTuple):
    """An operation: ``outputs = name(*inputs)`` over value ids.

    ``kind`` is ``"layer"`` (a funcnet custom_vjp layer, backward through its own rule),
    ``"custom_vjp"`` (another custom_vjp function), ``"call"`` (a custom_jvp function or
    nested jit left whole) or ``"primitive"`` (a JAX primitive such as ``mul`` or ``exp``).
    ``scope`` lists the calls this node was expanded from, as ``(number, name)`` pairs.
    ``params`` holds the primitive's simple parameters, e.g. ``(("y", -1),)``.
    """

    id: int
    name: str
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    scope: tuple[tuple[int, str], ...]
    params: tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
    """The computational graph of a function at given arguments (see :func:`trace`).

    ``values[i]`` is the edge with id ``i``; ``inputs`` and ``outputs`` are value ids
    (outputs in ``jax.tree.leaves`` order of the function's result); ``cotangent`` is the
    upstream gradient the backward pass started from, one array per output.
    """

    name: str
    values: tuple[Value, ...]
    nodes: tuple[Node, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    cotangent: tuple[jax.Array, ...]

    def input(self, name: str) -> Value:
        """The input edge of the parameter ``name`` (e.g. ``"apple"``).

        Raises:
            TypeError: ``name`` is not a str.
            KeyError: the graph has no input of that name (the message lists them).
        """
        if not isinstance(name, str):
            raise TypeError(
                f"Graph.input: name must be a str (a parameter name), got "
                f"{type(name).__name__} {name!r}"
            )
        for i in self.inputs:
            if self.values[i].name == name:
                return self.values[i]
        names = ", ".join(self.values[i].name for i in self.inputs)
        raise KeyError(f"graph {self.name!r} has no input {name!r}; its inputs are {names}")

    def output(self, index: int = 0) -> Value:
        """The output edge number ``index`` (the only one for a scalar function); negative
        indices count from the end, as for a list.

        Raises:
            TypeError: ``index`` is not an int.
            IndexError: there is no output ``index`` (the message says how many there are).
        """
        n = len(self.outputs)
        if not isinstance(index, numbers.Integral) or isinstance(index, bool):
            raise TypeError(
                f"Graph.output: index must be an int, got {type(index).__name__} {index!r}"
            )
        if not -n <= index < n:
            raise IndexError(
                f"Graph.output: index {index} is out of range; graph {self.name!r} has {n} "
                f"output{'s' * (n != 1)} (index 0{f' to {n - 1}' if n > 1 else ''})"
            )
        return self.values[self.outputs[index]]

    def table(self, digits: int | None = 6, max_values: int = 6) -> str:
        """Text table, one row per node output: inputs, forward, backward (needs nothing
        installed). ``digits`` (an int in [1, 17]) significant digits per number;
        ``digits=None`` prints exact values (``3.3000000000000003``). Arrays with more
        than ``max_values`` elements show their shape only."""
        check_digits("Graph.table", digits)
        check_max_values("Graph.table", max_values)
        return _text.table(self, digits, max_values)

    def to_dot(
        self,
        digits: int | None = 4,
        max_values: int = 6,
        backward_color: str = "red3",
        rankdir: str = "LR",
        wrap: int | None = None,
    ) -> str:
        """Graphviz DOT source: each edge's forward value above its backward value, the
        latter in ``backward_color`` (a Graphviz colour name or ``#rrggbb``); arrays by
        shape and, with at most ``max_values`` elements, by value, broken after every
        ``wrap`` numbers. ``rankdir="LR"`` draws left to right like the book;
        ``rankdir="TB"`` top to bottom, which fits a page's width for a long chain of
        layers (with ``wrap=3``, the two-layer net is about 1,000 px wide at 150 dpi)."""
        check_digits("Graph.to_dot", digits)
        check_max_values("Graph.to_dot", max_values)
        check_color("Graph.to_dot", backward_color)
        check_rankdir("Graph.to_dot", rankdir)
        check_wrap("Graph.to_dot", wrap)
        return _dot.to_dot(self, digits, max_values, backward_color, rankdir, wrap)

    def render(self, path: str | os.PathLike, **dot_options: Any) -> Path:
        """Draw the graph to ``path`` (``.svg``, ``.png`` or ``.pdf``) with Graphviz's
        ``dot``; returns the path. ``dot_options`` go to :meth:`to_dot` (``digits``,
        ``max_values``, ``backward_color``, ``rankdir``, ``wrap``). Raises
        ``GraphvizNotFoundError`` (saying how to install it) when ``dot`` is missing."""
        return _dot.render(self, path, **dot_options)

    def _repr_svg_(self) -> str | None:
        """SVG for notebooks; None (text fallback) when Graphviz is not installed."""
        return _dot.svg_or_none(self)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return (
            f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes, "
            f"{len(self.values)} edges>"
        )
