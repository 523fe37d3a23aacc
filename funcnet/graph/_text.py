"""How a graph's values read: book-like numbers, arrays by shape, and the text table.

Numbers are written with ``digits`` significant digits (``220``, not
``220.00000000000003``); ``digits=None`` writes each value's exact shortest form, the way
Python prints it (``3.3000000000000003``). The raw values stay in the graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from funcnet.graph._graph import Graph, Value


def format_number(x: Any, digits: int | None = 6) -> str:
    """One number, e.g. ``format_number(220.00000000000003) == "220"``.

    Floats get ``digits`` significant digits (``None``: the shortest exact repr of the
    value's own dtype); integers and booleans are written as they are.
    """
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return str(bool(x))
    if np.issubdtype(x.dtype, np.integer):
        return str(int(x))
    if np.issubdtype(x.dtype, np.complexfloating):
        return str(complex(x)) if digits is None else f"{complex(x):.{digits}g}"
    if digits is None:
        return str(x[()])
    return f"{float(x) + 0.0:.{digits}g}"  # + 0.0 turns -0 into 0


def _nested(a: np.ndarray, digits: int | None) -> str:
    if a.ndim == 0:
        return format_number(a, digits)
    return "[" + ", ".join(_nested(row, digits) for row in a) + "]"


def value_lines(x: Any, digits: int | None = 6, max_values: int = 6) -> list[str]:
    """A value as lines of text: a scalar as one number; an array as its shape, then,
    when it has at most ``max_values`` elements, its values (one line per row).

    ``value_lines(jnp.ones((2, 3)), max_values=4) == ["(2, 3)"]``.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        return [format_number(x, digits)]
    shape = "(" + ", ".join(str(n) for n in x.shape) + ("," if x.ndim == 1 else "") + ")"
    if x.size > max_values or x.size == 0:
        return [shape]
    if x.ndim == 1:
        return [shape, _nested(x, digits)]
    rows = [_nested(row, digits) for row in x.reshape(-1, x.shape[-1])]
    depth = x.ndim - 1
    rows = [("[" * depth if i == 0 else " " * depth) + r for i, r in enumerate(rows)]
    rows[-1] += "]" * depth
    return [shape, *(r + ("," if i < len(rows) - 1 else "") for i, r in enumerate(rows))]


def value_text(x: Any, digits: int | None = 6, max_values: int = 6) -> str:
    """:func:`value_lines` on one line, e.g. ``"(3,) [1, 2, 3]"``."""
    return " ".join(line.strip() for line in value_lines(x, digits, max_values))


def value_ref(graph: Graph, value: Value, digits: int | None = 6) -> str:
    """How a node's input is named in the table: a parameter name, a constant's value, or
    ``#k`` for the output of node k (``#k.j`` for its output j when it has several)."""
    if value.kind == "input":
        return value.name
    if value.kind == "const":
        return value_text(value.forward, digits, max_values=3)
    node = graph.nodes[value.producer]
    if len(node.outputs) == 1:
        return f"#{node.id + 1}"
    return f"#{node.id + 1}.{node.outputs.index(value.id)}"


def node_label(graph: Graph, node_id: int) -> str:
    """A node's name in the table, with the layers it was expanded from: ``affine/add``."""
    node = graph.nodes[node_id]
    return "/".join([name for _, name in node.scope] + [node.name])


def table(graph: Graph, digits: int | None = 6, max_values: int = 6) -> str:
    """The graph as a text table: one row per input, then one per node output, with the
    node's inputs, the forward value and the backward value (d output / d value).

    Integer values (labels) have no backward value and show ``-``.
    """

    def fwd_bwd(v: Value) -> list[str]:
        back = "-" if v.backward is None else value_text(v.backward, digits, max_values)
        return [value_text(v.forward, digits, max_values), back]

    rows = [["", "op", "inputs", "forward", "backward"]]
    for i in graph.inputs:
        v = graph.values[i]
        rows.append(["", "input", v.name, *fwd_bwd(v)])
    outputs = set(graph.outputs)
    for node in graph.nodes:
        inputs = ", ".join(value_ref(graph, graph.values[i], digits) for i in node.inputs)
        for k, out in enumerate(node.outputs):
            v = graph.values[out]
            ref = value_ref(graph, v, digits)
            label = node_label(graph, node.id) if k == 0 else ""
            rows.append([ref, label, inputs if k == 0 else "", *fwd_bwd(v)])
            if out in outputs:
                rows[-1][0] += " (output)"
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    n_in, n_nodes = len(graph.inputs), len(graph.nodes)
    title = f"{graph.name}: {n_in} input{'s' * (n_in != 1)}, {n_nodes} node{'s' * (n_nodes != 1)}"
    return "\n".join([title, *lines])
