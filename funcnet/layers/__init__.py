"""Computational-graph layers of chapter 5, each a ``jax.custom_vjp`` with the book's
hand-written backward rule.

The book's layers are objects: ``forward(x)`` remembers its inputs and ``backward(dout)``
uses them. Here each layer is a pure function. What the book's object remembers becomes
the *residuals* returned by ``fwd``; its ``backward`` method becomes ``bwd(residuals, g)``,
where ``g`` is the upstream gradient (the book's ``dout``). JAX chains the rules.

For each layer, in this order: the plain forward (an ordinary jnp function, the autodiff
reference), ``fwd``, ``bwd``, and the public layer made by :func:`make_layer`.
Every public layer ``L`` carries:

- ``L.fun``: the plain forward, so ``jax.grad`` of ``L.fun`` checks ``L``'s rule;
- ``L.rule``: the ``jax.custom_vjp`` object itself, without input validation.

Calling ``L`` validates shapes (and, outside ``jit``, label and target values) in Python,
on the values the caller passed (before any dtype conversion), so bad input raises a
``ValueError`` (``TypeError`` for non-numeric input) naming the argument and both shapes
before XLA sees it. NaN propagates through every layer, forward and backward (see
:mod:`funcnet.functions` for the conventions on labels and targets).

:data:`REGISTRY` lists every layer with a function that makes valid random inputs; the
tests and ``python -m funcnet.check`` verify every registered rule from it: the chapter-5
layers of this package and the later chapters' layers, which live in their own modules
(:mod:`funcnet.batch_norm`, :mod:`funcnet.dropout`, :mod:`funcnet.conv`) and are added to
the registry when it is first read.

Modules: ``_rule`` (:func:`make_layer` and the registry's types), ``basic`` (mul, add),
``activations`` (relu, sigmoid), ``affine``, ``losses`` (softmax_with_loss).
"""

from __future__ import annotations

import importlib

from funcnet.layers._rule import (
    LayerCase,
    RegisteredLayer,
    make_layer,
    unbroadcast,
)
from funcnet.layers.activations import relu, sigmoid
from funcnet.layers.affine import affine
from funcnet.layers.basic import add, mul
from funcnet.layers.losses import softmax_with_loss

# Modules whose REGISTRY_ENTRIES join the registry: this package's, then the later
# chapters' layers (which import make_layer from here, so they are read lazily).
_REGISTRY_MODULES = (
    "funcnet.layers.basic",
    "funcnet.layers.activations",
    "funcnet.layers.affine",
    "funcnet.layers.losses",
    "funcnet.batch_norm",
    "funcnet.dropout",
    "funcnet.conv",
)
_registry: dict[str, RegisteredLayer] | None = None


def registry() -> dict[str, RegisteredLayer]:
    """Every custom-rule layer with its verification cases, keyed by name (built once)."""
    global _registry
    if _registry is None:
        entries = {}
        for name in _REGISTRY_MODULES:
            for entry in importlib.import_module(name).REGISTRY_ENTRIES:
                if entry.name in entries:
                    raise RuntimeError(f"layers: two registry entries are named {entry.name}")
                entries[entry.name] = entry
        _registry = entries
    return _registry


def __getattr__(name: str):
    # REGISTRY is computed on first use (PEP 562), after every layer module can import.
    if name == "REGISTRY":
        return registry()
    raise AttributeError(f"module 'funcnet.layers' has no attribute {name!r}")


__all__ = [
    "REGISTRY",
    "LayerCase",
    "RegisteredLayer",
    "add",
    "affine",
    "make_layer",
    "mul",
    "registry",
    "relu",
    "sigmoid",
    "softmax_with_loss",
    "unbroadcast",
]
