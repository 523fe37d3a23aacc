import jax.numpy as jnp
import numpy as np
import pytest

from funcnet import perceptron as P

X1 = jnp.array([0, 1, 0, 1])
X2 = jnp.array([0, 0, 1, 1])


@pytest.mark.parametrize(
    "gate, table",
    [
        (P.and_gate, [0, 0, 0, 1]),
        (P.nand_gate, [1, 1, 1, 0]),
        (P.or_gate, [0, 1, 1, 1]),
        (P.xor_gate, [0, 1, 1, 0]),
    ],
)
def test_gate_truth_table(gate, table):
    # ch2.3-2.5: inputs (0,0), (1,0), (0,1), (1,1)
    out = gate(X1, X2)
    np.testing.assert_array_equal(out, table)
    assert out.dtype == jnp.int32
    for a, b, want in zip(X1.tolist(), X2.tolist(), table, strict=True):
        assert int(gate(a, b)) == want


def test_gates_broadcast_over_arrays():
    out = P.and_gate(jnp.array([[0], [1]]), jnp.array([0, 1]))
    np.testing.assert_array_equal(out, [[0, 0], [0, 1]])
