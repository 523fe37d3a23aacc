"""Chapter 5's shopping examples through the mul/add layers, derivatives by jax.vjp.

Forward through ``mul``/``add`` layers, backward with ``jax.vjp`` (upstream gradient 1)
through their hand-written rules.

Prints, in float64, the book's numbers (``buy_apple.py`` and ``buy_apple_orange.py``):
apples only -> price 220, dApple 2.2, dApple_num 110, dTax 200; apples and oranges ->
price 715, dApple 2.2, dApple_num 110, dOrange 3.3, dOrange_num 165, dTax 650.

Every number is printed like ``ch05_computational_graph`` prints its tables: with
:func:`funcnet.graph.format_number` at 10 significant digits, so float64's rounding noise
(``220.00000000000003``, ``3.3000000000000003``) reads as 220 and 3.3. The book prints
prices and count derivatives with ``int()``, which truncates (it would print 219 for
219.99999999999997), and the rest with ``print``, hence its ``3.3000000000000003``. The
values returned by :func:`main` are the exact float64 results.

Run: ``python -m experiments.ch05_buy_apple_orange``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from experiments import _common
from funcnet.graph import format_number
from funcnet.layers import add, mul

DIGITS = 10  # significant digits printed


def buy_apple(apple: jax.Array, apple_num: jax.Array, tax: jax.Array) -> jax.Array:
    """Price of apples with tax (ch5.4.1): scalars in, a scalar out."""
    return mul(mul(apple, apple_num), tax)


def buy_apple_orange(
    apple: jax.Array,
    apple_num: jax.Array,
    orange: jax.Array,
    orange_num: jax.Array,
    tax: jax.Array,
) -> jax.Array:
    """Price of apples and oranges with tax (ch5.4.2): scalars in, a scalar out."""
    return mul(add(mul(apple, apple_num), mul(orange, orange_num)), tax)


def price_and_gradients(f, *inputs: float) -> tuple[float, tuple[float, ...]]:
    """f(*inputs) in float64 and its gradient by ``jax.vjp`` with upstream gradient 1."""
    with jax.enable_x64(True):
        args = tuple(jnp.float64(v) for v in inputs)
        price, vjp = jax.vjp(f, *args)
        grads = vjp(jnp.ones_like(price))
        return float(price), tuple(float(g) for g in grads)


def _number(value: float) -> str:
    """The printed form: 10 significant digits (as ``ch05_computational_graph`` prints)."""
    return format_number(value, DIGITS)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print both examples like the book; return their numbers (for tests)."""
    _common.parser("ch05_buy_apple_orange", __doc__.split("\n")[0]).parse_args(argv)

    price, (d_apple, d_apple_num, d_tax) = price_and_gradients(buy_apple, 100, 2, 1.1)
    apples = {"price": price, "dApple": d_apple, "dApple_num": d_apple_num, "dTax": d_tax}
    print("# buy_apple (ch5.4.1)")
    print("price:", _number(price))
    print("dApple:", _number(d_apple))
    print("dApple_num:", _number(d_apple_num))
    print("dTax:", _number(d_tax))

    price, grads = price_and_gradients(buy_apple_orange, 100, 2, 150, 3, 1.1)
    d_apple, d_apple_num, d_orange, d_orange_num, d_tax = grads
    both = {
        "price": price,
        "dApple": d_apple,
        "dApple_num": d_apple_num,
        "dOrange": d_orange,
        "dOrange_num": d_orange_num,
        "dTax": d_tax,
    }
    print("\n# buy_apple_orange (ch5.4.2)")
    print("price:", _number(price))
    print("dApple:", _number(d_apple))
    print("dApple_num:", _number(d_apple_num))
    print("dOrange:", _number(d_orange))
    print("dOrange_num:", _number(d_orange_num))
    print("dTax:", _number(d_tax))
    return {"apples": apples, "apples_oranges": both}


if __name__ == "__main__":
    _common.run(main)
