"""funcnet: the neural-network core of *Deep Learning from Scratch* (ch. 2-5) as pure JAX
functions with hand-written, verified backward rules.

Modules: ``functions`` (ch3-4), ``perceptron`` (ch2), ``gradient`` (ch4), ``layers``
(ch5, custom_vjp rules), ``check`` (gradient verification).
"""

from funcnet import functions, gradient, layers, perceptron
from funcnet.functions import (
    cross_entropy_error,
    identity_function,
    log_softmax,
    relu,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    step_function,
    sum_squares_error,
)
from funcnet.gradient import gradient_descent, numerical_diff, numerical_gradient

__version__ = "0.1.0"

__all__ = [
    "functions",
    "gradient",
    "layers",
    "perceptron",
    "cross_entropy_error",
    "identity_function",
    "log_softmax",
    "relu",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "step_function",
    "sum_squares_error",
    "gradient_descent",
    "numerical_diff",
    "numerical_gradient",
]
