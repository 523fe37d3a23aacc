"""How a graph's values read: book-like numbers, arrays by shape, and the text table.

Numbers are written with ``digits`` significant digits (``220``, not
``220.00000000000003``); ``digits=None`` writes each value's exact shortest form, the way
Python prints it (``3.3000000000000003``). The raw values stay in the graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from funcnet.graph._options import check_digits, check_max_values, check_wrap

if TYPE_CHECKING:
    from funcnet.graph._graph import Graph, Value


def format_number(x: Any, digits: int | None = 6) -> str:
    """One number, e.g. ``format_number(220.00000000000003) == "220"``.

    Floats get ``digits`` significant digits (an int in [1, 17]; ``None``: the shortest
    exact repr of the value's own dtype); integers and booleans are written as they are.
    ``format_number(v, 10)`` is how the chapter-5 experiments print their prices
    (``220``, ``3.3``).

    Raises:
        TypeError: ``x`` is not a number, or ``digits`` is not an int or None.
        ValueError: ``x`` holds more than one number, or ``digits`` is outside [1, 17].
    """
    check_digits("format_number", digits)
    a = np.asarray(x)
    if not (a.dtype == np.bool_ or np.issubdtype(a.dtype, np.number)):
        raise TypeError(f"format_number: x must be a number, got {type(x).__name__} {x!r}")
    if a.ndim != 0:
        raise ValueError(
            f"format_number: x must be a single number, got an array of shape {a.shape}; "
            "use value_lines for arrays"
        )
    return _number(a, digits)


def _number(x: np.ndarray, digits: int | None) -> str:
    if x.dtype == np.bool_:
        return str(bool(x))
    if np.issubdtype(x.dtype, np.integer):
        return str(int(x))
    if np.issubdtype(x.dtype, np.complexfloating):
        return str(complex(x)) if digits is None else f"{complex(x):.{digits}g}"
    if digits is None:
        return str(x[()])
    return f"{float(x) + 0.0:.{digits}g}"  # + 0.0 turns -0 into 0


def _row_lines(row: np.ndarray, digits: int | None, wrap: int | None) -> list[str]:
    """A 1-D row as ``[a, b, c]``, broken after every ``wrap`` numbers."""
    numbers = [_number(v, digits) for v in row]
    step = wrap or max(len(numbers), 1)
    chunks = [", ".join(numbers[i : i + step]) for i in range(0, len(numbers), step)]
    opens = ["["] + [" "] * (len(chunks) - 1)
    closes = [","] * (len(chunks) - 1) + ["]"]
    return [o + c + e for o, c, e in zip(opens, chunks, closes, strict=True)]


def value_lines(
    x: Any, digits: int | None = 6, max_values: int = 6, wrap: int | None = None
) -> list[str]:
    """A value as lines of text: a scalar as one number; an array as its shape, then,
    when it has at most ``max_values`` elements, its values (one line per row, broken
    after every ``wrap`` numbers when ``wrap`` is given).

    ``value_lines(jnp.ones((2, 3)), max_values=4) == ["(2, 3)"]``;
    ``value_lines(jnp.arange(3.), wrap=2) == ["(3,)", "[0, 1,", " 2]"]``.
    """
    check_digits("value_lines", digits)
    check_max_values("value_lines", max_values)
    check_wrap("value_lines", wrap)
    return _value_lines(np.asarray(x), digits, max_values, wrap)


def _value_lines(x: np.ndarray, digits: int | None, max_values: int, wrap: int | None) -> list[str]:
    if x.ndim == 0:
        return [_number(x, digits)]
    shape = "(" + ", ".join(str(n) for n in x.shape) + ("," if x.ndim == 1 else "") + ")"
    if x.size > max_values or x.size == 0:
        return [shape]
    if x.ndim == 1:
        return [shape, *_row_lines(x, digits, wrap)]
    depth = x.ndim - 1
    rows = [_row_lines(row, digits, wrap) for row in x.reshape(-1, x.shape[-1])]
    lines = []
    for r, row in enumerate(rows):
        if r < len(rows) - 1:
            row[-1] += ","
        lines += row
    lines = [("[" * depth if i == 0 else " " * depth) + line for i, line in enumerate(lines)]
    lines[-1] += "]" * depth
    return [shape, *lines]


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
