"""funcnet: the neural-network core of *Deep Learning from Scratch* as pure JAX functions
with hand-written, verified backward rules.

Modules: ``perceptron`` (ch2), ``functions`` (ch3-4), ``gradient`` (ch4), ``layers``
(ch5, custom_vjp rules), ``batch_norm`` and ``dropout`` (ch6 layers), ``nets`` (ch3-6
networks), ``optimizers`` (ch6 update rules as
optax transformations), ``train`` (jitted SGD, ``fit``),
``datasets`` (MNIST, Fashion-MNIST), ``io`` (parameter files), ``graph`` (computational
graphs), ``check`` (gradient verification, ``python -m funcnet.check``).
"""

from funcnet import (
    batch_norm,
    datasets,
    dropout,
    functions,
    gradient,
    graph,
    io,
    layers,
    nets,
    optimizers,
    perceptron,
    train,
)
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
    "batch_norm",
    "dropout",
    "datasets",
    "functions",
    "gradient",
    "graph",
    "io",
    "layers",
    "nets",
    "optimizers",
    "perceptron",
    "train",
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
