"""Chapter 2's perceptron gates: prints the truth tables of AND, NAND, OR and XOR.

Run: ``python -m experiments.ch02_perceptron``.
"""

from __future__ import annotations

import jax.numpy as jnp

from experiments import _common
from funcnet.perceptron import and_gate, nand_gate, or_gate, xor_gate

GATES = {"AND": and_gate, "NAND": nand_gate, "OR": or_gate, "XOR": xor_gate}


def truth_tables() -> dict[str, list[int]]:
    """Each gate's outputs for (x1, x2) = (0,0), (1,0), (0,1), (1,1), computed at once."""
    x1 = jnp.array([0, 1, 0, 1])
    x2 = jnp.array([0, 0, 1, 1])
    return {name: [int(v) for v in gate(x1, x2)] for name, gate in GATES.items()}


def main(argv: list[str] | None = None) -> dict[str, list[int]]:
    """Print the four truth tables like the book; return them (for tests)."""
    _common.parser("ch02_perceptron", __doc__.split("\n")[0]).parse_args(argv)
    tables = truth_tables()
    inputs = [(0, 0), (1, 0), (0, 1), (1, 1)]
    for name, outputs in tables.items():
        print(f"{name}")
        print(" x1 x2 | y")
        for (a, b), y in zip(inputs, outputs, strict=True):
            print(f"  {a}  {b} | {y}")
        print()
    return tables


if __name__ == "__main__":
    _common.run(main)
