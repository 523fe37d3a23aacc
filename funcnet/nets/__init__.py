"""Networks of chapters 3-5 as pure functions over a params pytree.

The book's networks are objects holding their weights (``network.params``) with methods
``predict``, ``loss``, ``accuracy``, ``numerical_gradient`` and ``gradient``. Here the
weights are a plain dict of arrays passed explicitly, and every method is a function of
``(params, x, t)``:

- :func:`simple_net_predict`, :func:`simple_net_loss`: the 2×3 ``simpleNet`` of ch4.
- :func:`three_layer_net_predict`: the ch3 inference network (``predict(network, x)``).
- :func:`two_layer_net_predict`, :func:`two_layer_net_loss` and the gradients of the
  ch4/ch5 ``TwoLayerNet``, with ``activation="sigmoid"`` (ch4) or ``"relu"`` (ch5).
  :func:`two_layer_net` bundles them for one activation, like the book's class.
- :func:`init_multi_layer_net`, :func:`multi_layer_net_predict`,
  :func:`multi_layer_net_loss` and the gradients of the ch6 ``MultiLayerNet`` (any depth,
  He/Xavier initialisation, weight decay :func:`weight_decay`); :func:`multi_layer_net`
  bundles them.

The two-layer net has three gradients with the params' pytree structure, which must agree:

- :func:`two_layer_net_gradient`: backpropagation through the hand-written rules of
  :mod:`funcnet.layers` (``jax.grad`` chains the custom_vjp rules, book ch5);
- :func:`two_layer_net_autodiff_gradient`: ``jax.grad`` of the same forward built from
  the layers' plain functions (``layer.fun``), with no hand-written rule involved;
- :func:`two_layer_net_numerical_gradient`: central differences (book ch4).

and, for the sigmoid net, the book's hand-derived ch4 gradient
:func:`two_layer_net_ch4_gradient` as a fourth, independent check.

Shapes: ``x`` is ``(N, D)`` (or ``(D,)`` for one example), scores are ``(N, C)``, ``t`` is
integer labels ``(N,)`` or one-hot rows ``(N, C)``.

The package holds one module per idea: :mod:`~funcnet.nets.accuracy` (shared by every
net), :mod:`~funcnet.nets.simple` (ch3-4), :mod:`~funcnet.nets.two_layer` (ch4-5),
:mod:`~funcnet.nets.multi_layer` (ch6), :mod:`~funcnet.nets.multi_layer_extend` (ch6: batch
norm and dropout, model state and keys), :mod:`~funcnet.nets.convnet` (ch7-8: SimpleConvNet,
DeepConvNet).
Everything is re-exported here: ``funcnet.nets.two_layer_net`` etc.
"""

from funcnet.nets.accuracy import (
    GradFn,
    LossFn,
    Params,
    PredictFn,
    accuracy,
    count_correct,
)
from funcnet.nets.convnet import (
    DEEP_CONVNET_CONVS,
    DEEP_CONVNET_KEYS,
    SIMPLE_CONVNET_KEYS,
    deep_convnet_fan_ins,
    deep_convnet_loss,
    deep_convnet_predict,
    init_deep_convnet,
    init_simple_convnet,
    load_convnet_params,
    simple_convnet_autodiff_gradient,
    simple_convnet_gradient,
    simple_convnet_loss,
    simple_convnet_numerical_gradient,
    simple_convnet_predict,
)
from funcnet.nets.multi_layer import (
    WEIGHT_INIT_STDS,
    MultiLayerNet,
    init_multi_layer_net,
    multi_layer_net,
    multi_layer_net_autodiff_gradient,
    multi_layer_net_gradient,
    multi_layer_net_loss,
    multi_layer_net_numerical_gradient,
    multi_layer_net_predict,
    num_layers,
    weight_decay,
)
from funcnet.nets.multi_layer_extend import (
    MultiLayerNetExtend,
    init_multi_layer_net_extend,
    multi_layer_net_extend,
    multi_layer_net_extend_loss,
    multi_layer_net_extend_predict,
)
from funcnet.nets.simple import (
    SIMPLE_NET_BOOK_W,
    init_simple_net,
    init_three_layer_net,
    simple_net_loss,
    simple_net_predict,
    three_layer_net_predict,
)
from funcnet.nets.two_layer import (
    ACTIVATIONS,
    TwoLayerNet,
    _plain_loss,
    init_two_layer_net,
    two_layer_net,
    two_layer_net_autodiff_gradient,
    two_layer_net_ch4_gradient,
    two_layer_net_gradient,
    two_layer_net_loss,
    two_layer_net_numerical_gradient,
    two_layer_net_predict,
)

__all__ = [
    "DEEP_CONVNET_CONVS",
    "DEEP_CONVNET_KEYS",
    "SIMPLE_CONVNET_KEYS",
    "deep_convnet_fan_ins",
    "deep_convnet_loss",
    "deep_convnet_predict",
    "init_deep_convnet",
    "init_simple_convnet",
    "load_convnet_params",
    "simple_convnet_autodiff_gradient",
    "simple_convnet_gradient",
    "simple_convnet_loss",
    "simple_convnet_numerical_gradient",
    "simple_convnet_predict",
    "MultiLayerNetExtend",
    "init_multi_layer_net_extend",
    "multi_layer_net_extend",
    "multi_layer_net_extend_loss",
    "multi_layer_net_extend_predict",
    "ACTIVATIONS",
    "SIMPLE_NET_BOOK_W",
    "WEIGHT_INIT_STDS",
    "GradFn",
    "LossFn",
    "MultiLayerNet",
    "Params",
    "PredictFn",
    "TwoLayerNet",
    "accuracy",
    "count_correct",
    "init_multi_layer_net",
    "init_simple_net",
    "init_three_layer_net",
    "init_two_layer_net",
    "multi_layer_net",
    "multi_layer_net_autodiff_gradient",
    "multi_layer_net_gradient",
    "multi_layer_net_loss",
    "multi_layer_net_numerical_gradient",
    "multi_layer_net_predict",
    "num_layers",
    "simple_net_loss",
    "simple_net_predict",
    "three_layer_net_predict",
    "two_layer_net",
    "two_layer_net_autodiff_gradient",
    "two_layer_net_ch4_gradient",
    "two_layer_net_gradient",
    "two_layer_net_loss",
    "two_layer_net_numerical_gradient",
    "two_layer_net_predict",
    "weight_decay",
    "_plain_loss",
]
