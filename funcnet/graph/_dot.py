"""Drawing a graph like the book's chapter-5 figures: Graphviz DOT, SVG and PNG.

Every edge is drawn as ``tail ── value ──> head`` where ``value`` is a small label whose
horizontal rule continues the edge's line: the forward value sits above the line, the
backward value below it in a second colour. Input edges start at the parameter's name.
Layers are boxes (``Affine``, ``ReLU``), ``mul`` and ``add`` the book's circles ``×`` and
``+``; an expanded layer is a dashed frame around its primitives.
"""

from __future__ import annotations

import html
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from funcnet._atomic import atomic_file
from funcnet.graph._text import value_lines, value_text

if TYPE_CHECKING:
    from funcnet.graph._graph import Graph, Node, Value

INSTALL_HINT = (
    "Install Graphviz, which provides `dot`: `sudo apt-get install graphviz` (Debian, "
    "Ubuntu), `brew install graphviz` (macOS), `conda install graphviz`, or see "
    "https://graphviz.org/download/. Without it, print the graph (str(graph) or "
    "graph.table()) or save graph.to_dot() and draw it elsewhere."
)

# How the book draws its nodes: layers by their class names, mul and add as symbols.
_LAYER_LABELS = {
    "mul": "×",
    "add": "+",
    "relu": "ReLU",
    "sigmoid": "Sigmoid",
    "affine": "Affine",
    "softmax_with_loss": "Softmax-with-Loss",
}
_SYMBOLS = {
    "mul": "×",
    "add": "+",
    "add_any": "+",
    "sub": "−",
    "div": "/",
    "neg": "−",
    "dot_general": "dot",
    "reduce_sum": "sum",
    "reduce_max": "max",
    "logistic": "σ",
    "select_n": "where",
    "convert_element_type": "convert",
    "broadcast_in_dim": "broadcast",
}


# Names and constants: bare text, close to the line that starts at them.
_TEXT_NODE = 'shape=plaintext, margin="0.05,0.02", width=0, height=0'


# The keyword arguments of Graph.to_dot, which Graph.render passes on.
DOT_OPTIONS = ("digits", "max_values", "backward_color", "rankdir", "wrap")


class GraphvizNotFoundError(RuntimeError):
    """Graphviz's ``dot`` program (or the ``graphviz`` Python package) is missing."""


def _node_label(node: Node) -> str:
    if node.kind == "layer":
        return _LAYER_LABELS.get(node.name, node.name)
    if node.name == "integer_pow":
        y = dict(node.params).get("y")
        return {-1: "1/x", 2: "x²", 3: "x³"}.get(y, f"x^{y}")
    return _SYMBOLS.get(node.name, node.name) if node.kind == "primitive" else node.name


def _node_attrs(node: Node) -> str:
    label = _node_label(node)
    if node.kind == "layer" and node.name not in ("mul", "add"):
        style = 'shape=box, style="rounded,filled", fillcolor="#dde8f6", margin="0.15,0.1"'
    elif node.kind in ("call", "custom_vjp"):
        style = 'shape=box, style="rounded,dashed"'
    elif len(label) <= 3:
        style = "shape=circle, width=0.5, fixedsize=true"
    else:
        style = "shape=ellipse"
    return f'label="{_escape_dot(label)}", {style}'


def _escape_dot(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _cell(lines: list[str], rows: int, color: str | None) -> str:
    lines = [html.escape(s) for s in lines] + ["&#160;"] * (rows - len(lines))
    body = "<BR/>".join(lines)
    return f'<FONT COLOR="{color}">{body}</FONT>' if color else body


def _edge_label(
    value: Value, digits: int | None, max_values: int, color: str, wrap: int | None
) -> str:
    """Forward value above a horizontal rule, backward value below it in ``color``."""
    top = value_lines(value.forward, digits, max_values, wrap)
    has_bottom = value.backward is not None
    bottom = value_lines(value.backward, digits, max_values, wrap) if has_bottom else []
    rows = max(len(top), len(bottom))
    return (
        '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
        f"<TR><TD>{_cell(top, rows, None)}</TD></TR><HR/>"
        f"<TR><TD>{_cell(bottom, rows, color)}</TD></TR></TABLE>>"
    )


def to_dot(
    graph: Graph,
    digits: int | None,
    max_values: int,
    backward_color: str,
    rankdir: str = "LR",
    wrap: int | None = None,
) -> str:
    """Graphviz DOT source of ``graph`` (see :meth:`Graph.to_dot`; arguments checked there).

    An edge enters its value label on the label's west side and leaves on its east side
    (left to right), or north and south (top to bottom).
    """
    enter, leave = ("w", "e") if rankdir == "LR" else ("n", "s")
    statements: dict[tuple, list[str]] = defaultdict(list)
    edges: list[str] = []
    for node in graph.nodes:
        statements[node.scope].append(f"n{node.id} [{_node_attrs(node)}]")
    for value in graph.values:
        consumers = value.consumers
        if value.kind == "const":
            if not consumers:
                continue
            text = _escape_dot(value_text(value.forward, digits, max_values=3))
            scope = graph.nodes[consumers[0]].scope
            statements[scope].append(f'v{value.id} [{_TEXT_NODE}, label="{text}"]')
            continue
        label = _edge_label(value, digits, max_values, backward_color, wrap)
        if value.kind == "input":
            scope = ()
            name = _escape_dot(value.name)
            statements[()].append(f'i{value.id} [{_TEXT_NODE}, label="{name}"]')
            edges.append(f"i{value.id} -> v{value.id}:{enter} [arrowhead=none]")
        else:
            scope = graph.nodes[value.producer].scope
            edges.append(f"n{value.producer} -> v{value.id}:{enter} [arrowhead=none, weight=4]")
        statements[scope].append(f"v{value.id} [shape=plain, label={label}]")
    for node in graph.nodes:
        # In argument order, constants last: `ordering=in` draws them top to bottom, so
        # constants come from below, as in the book's Fig. 5-20.
        inputs = dict.fromkeys(node.inputs)
        for i in sorted(inputs, key=lambda i: graph.values[i].kind == "const"):
            kind = graph.values[i].kind
            tail = f"v{i}" if kind == "const" else f"v{i}:{leave}"
            heavy = " [weight=4]" if kind == "intermediate" else ""  # a straight main chain
            edges.append(f"{tail} -> n{node.id}{heavy}")
    for k, out in enumerate(graph.outputs):
        statements[()].append(f"o{k} [shape=point, style=invis, width=0.01]")
        edges.append(f"v{out}:{leave} -> o{k}")

    def emit(scope: tuple, indent: str) -> list[str]:
        lines = [indent + s for s in statements.get(scope, [])]
        children = sorted({s[: len(scope) + 1] for s in statements if len(s) > len(scope)})
        for child in children:
            if child[: len(scope)] != scope:
                continue
            number, name = child[-1]
            lines.append(f"{indent}subgraph cluster_{number} {{")
            lines.append(
                f'{indent}  label="{_escape_dot(name)}"; style="dashed,rounded"; '
                'color="gray50"; fontcolor="gray30"'
            )
            lines += emit(child, indent + "  ")
            lines.append(f"{indent}}}")
        return lines

    header = [
        f'digraph "{_escape_dot(graph.name)}" {{',
        f"  graph [rankdir={rankdir}, ordering=in, ranksep=0.25, nodesep=0.35, "
        'fontname="Helvetica"]',
        '  node [fontname="Helvetica", fontsize=14]',
        "  edge [arrowsize=0.7]",
    ]
    return "\n".join([*header, *emit((), "  "), *("  " + e for e in edges), "}"]) + "\n"


def _pipe(source: str, fmt: str) -> bytes:
    if shutil.which("dot") is None:
        raise GraphvizNotFoundError(
            f"Drawing a graph needs Graphviz's `dot` program. {INSTALL_HINT}"
        )
    try:
        import graphviz
    except ImportError:
        raise GraphvizNotFoundError(
            "Drawing a graph needs the `graphviz` Python package: "
            "pip install graphviz (or pip install 'funcnet[experiments]')."
        ) from None
    try:
        return graphviz.Source(source).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFoundError(f"Graphviz's `dot` did not run. {INSTALL_HINT}") from None


def render(graph: Graph, path: str | os.PathLike, **dot_options) -> Path:
    """Write ``graph`` to ``path`` as SVG, PNG or PDF (chosen by the suffix), atomically
    (:func:`funcnet._atomic.atomic_file`: the previous file stays whole on an error,
    Ctrl-C or SIGTERM)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"Graph.render: path must be a str or a Path, got {type(path).__name__} {path!r}"
        )
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"render: path must end in .svg, .png or .pdf, got {str(path)!r}")
    unknown = sorted(set(dot_options) - set(DOT_OPTIONS))
    if unknown:
        raise TypeError(
            f"Graph.render: unknown option {', '.join(unknown)}; the options are "
            f"{', '.join(DOT_OPTIONS)} (see Graph.to_dot)"
        )
    source = graph.to_dot(**dot_options)
    if fmt == "png":  # 150 dpi: sharp enough to read the numbers
        source = source.replace("graph [", "graph [dpi=150, ", 1)
    data = _pipe(source, fmt)
    with atomic_file(path) as f:  # never half a picture, even on Ctrl-C or SIGTERM
        f.write(data)
    return path


def svg_or_none(graph: Graph) -> str | None:
    """The graph as SVG text, or None when Graphviz is not available."""
    try:
        return _pipe(graph.to_dot(), "svg").decode("utf-8")
    except GraphvizNotFoundError:
        return None
