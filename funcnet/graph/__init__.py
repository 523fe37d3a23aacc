"""Computational graphs of JAX functions, drawn like the book's chapter-5 figures.

:func:`trace` builds the graph of any JAX function at given arguments from its jaxpr:
nodes are operations (a funcnet layer is one node named after it), edges are values, and
every edge carries its forward value and its backward value (the derivative of the output
with respect to it), computed node by node through each node's own backward rule::

    from funcnet.graph import trace
    from funcnet.layers import mul

    def buy_apple(apple, apple_num, tax):
        return mul(mul(apple, apple_num), tax)

    g = trace(buy_apple, 100.0, 2.0, 1.1)
    print(g)                     # text table: inputs, forward, backward per node
    g.render("apples.png")       # the book's Fig. 5-16 (needs Graphviz's `dot`)

Modules: ``_jaxpr`` (the only one reading JAX internals), ``_trace`` (forward and
backward), ``_graph`` (the immutable Graph, Node and Value), ``_text`` (numbers and the
table), ``_dot`` (Graphviz drawing).
"""

from funcnet.graph._dot import INSTALL_HINT, GraphvizNotFoundError
from funcnet.graph._graph import Graph, Node, Value
from funcnet.graph._text import format_number, value_lines
from funcnet.graph._trace import LAYER_NAMES, trace

__all__ = [
    "INSTALL_HINT",
    "LAYER_NAMES",
    "Graph",
    "GraphvizNotFoundError",
    "Node",
    "Value",
    "format_number",
    "trace",
    "value_lines",
]
