"""The peers of ``experiments.ch07_benchmark_convnet``: one SimpleConvNet (or, with
``model="deep-convnet"``, DeepConvNet) training iteration (batch 100, Adam lr 0.001) five
(four) ways, from the same initial weights.

- :func:`funcnet_runner`: funcnet's train step (``funcnet.train.make_train_step`` over
  :func:`funcnet.nets.convnet.simple_convnet_loss`, the custom rules), ``steps`` iterations
  fused in one ``lax.scan`` — the product; ``book=True`` runs the book's rules instead;
- :func:`plain_jax_runner`: ``lax.conv_general_dilated`` + ``lax.reduce_window``,
  ``jax.grad``, ``optax.adam``, the same fused loop;
- :func:`torch_runner`: PyTorch eager (``nn.Conv2d``, ``nn.MaxPool2d``, ``optim.Adam``),
  2 threads, denormals flushed; ``None`` with a reason when torch is not importable;
  ``channels_last=True`` keeps the weights and activations in PyTorch's channels-last
  memory format (NHWC, the layout funcnet's default rules keep), which its CPU
  convolutions run faster (DeepConvNet: 31.7 against 44.1 ms per iteration, interleaved);
- :func:`numpy_runner`: the book's NumPy layers (``im2col`` with its loops, Convolution,
  Pooling, Relu, Affine, SoftmaxWithLoss, the book's Adam), float32.

Each runner is ``run(steps) -> None`` after its warm-up (compilation included there); the
caller times it. All draw minibatches of 100 with replacement from the same images.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from funcnet import train
from funcnet._compile import compile_program
from funcnet.nets import convnet

BATCH = 100
LR = 0.001
Runner = Callable[[int], None]


def _with_key(loss_fn: Callable) -> train.Model:
    """A :class:`funcnet.train.Model` whose loss is ``loss_fn(params, x, t, key)`` (the
    iteration's key: dropout masks); no model state."""

    def loss(params, model_state, x, t, key):
        return loss_fn(params, x, t, key), model_state

    return train.Model(loss, lambda params, model_state, x: x)


def _fused(loss_fn: Callable, params: dict, x: np.ndarray, t: np.ndarray, key) -> Runner:
    """``steps`` iterations of funcnet's train step in one compiled ``lax.scan``;
    ``loss_fn(params, x, t)``, or a :class:`funcnet.train.Model` (a loss with a key)."""
    optimizer = optax.adam(LR)
    model = loss_fn if isinstance(loss_fn, train.Model) else train.stateful(loss_fn, lambda p, x: x)
    step = train.make_train_step(model, optimizer, BATCH)
    state0 = train.init_state(params, optimizer, key)
    xd, td = jax.device_put(jnp.asarray(x)), jax.device_put(jnp.asarray(t))

    def run_steps(state, x, t, steps_marker):
        def body(state, _):
            state, loss = step(state, x, t)
            return state, loss

        return lax.scan(body, state, None, length=steps_marker.shape[0])

    cache: dict[int, Any] = {}

    def run(steps: int) -> None:
        # compiled as fit compiles its loop (funcnet._compile: XLA's Eigen convolutions)
        if steps not in cache:
            marker = jnp.zeros((steps,), jnp.int8)
            cache[steps] = (compile_program(run_steps, state0, xd, td, marker), marker)
        compiled, marker = cache[steps]
        state, losses = compiled(state0, xd, td, marker)
        jax.block_until_ready(losses)

    return run


def funcnet_runner(params, x, t, key, *, book: bool = False, model: str = "simple-convnet"):
    """funcnet's step over the custom rules (the book's with ``book=True``) of ``model``
    (``"simple-convnet"`` or ``"deep-convnet"``, dropout masks from the iteration's key)."""
    if model == "deep-convnet":

        def deep_loss(p, xb, tb, k):
            return convnet.deep_convnet_loss(p, xb, tb, k, book=book)

        return _fused(_with_key(deep_loss), params, x, t, key)

    def loss(p, xb, tb):
        return convnet.simple_convnet_loss(p, xb, tb, book=book)

    return _fused(loss, params, x, t, key)


def _plain_loss(p, x, t):
    h = lax.conv_general_dilated(
        x, p["W1"], (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    h = jax.nn.relu(h + p["b1"][None, :, None, None])
    h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = jax.nn.relu(h.reshape(h.shape[0], -1) @ p["W2"] + p["b2"])
    scores = h @ p["W3"] + p["b3"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(scores), t[:, None], axis=1))


def _plain_deep_loss(p, x, t, key):
    """DeepConvNet with XLA's convolution and reduce_window, the book's dropout (a mask of
    units kept with probability 0.5, no rescaling in training)."""
    h = x
    for i, (_, pad) in enumerate(convnet.DEEP_CONVNET_CONVS, start=1):
        h = lax.conv_general_dilated(
            h, p[f"W{i}"], (1, 1), [(pad, pad)] * 2, dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        h = jax.nn.relu(h + p[f"b{i}"][None, :, None, None])
        if i % 2 == 0:
            h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    k1, k2 = jax.random.split(key)
    h = jax.nn.relu(h.reshape(h.shape[0], -1) @ p["W7"] + p["b7"])
    h = h * jax.random.bernoulli(k1, 0.5, h.shape)
    scores = (h @ p["W8"] + p["b8"]) * jax.random.bernoulli(k2, 0.5, (h.shape[0], 10))
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(scores), t[:, None], axis=1))


def plain_jax_runner(params, x, t, key, *, model: str = "simple-convnet") -> Runner:
    """XLA's own convolution and reduce_window, ``jax.grad``, the same fused loop."""
    if model == "deep-convnet":
        return _fused(_with_key(_plain_deep_loss), params, x, t, key)
    return _fused(_plain_loss, params, x, t, key)


def torch_device(torch: Any) -> Any:
    """Where the PyTorch peers run: the CUDA device when JAX's own default backend is a
    GPU and PyTorch sees one (the peers then share the device), else the CPU."""
    use_cuda = jax.default_backend() == "gpu" and torch.cuda.is_available()
    return torch.device("cuda" if use_cuda else "cpu")


def _torch_deep_convnet(torch: Any, params: dict) -> Any:
    """The book's DeepConvNet as ``nn.Sequential`` with funcnet's weights (NCHW flatten
    order as funcnet's affine; dropout 0.5, which PyTorch rescales in training: the same
    work)."""
    nn = torch.nn
    modules: list[Any] = []
    channels = 1
    for i, (filters, pad) in enumerate(convnet.DEEP_CONVNET_CONVS, start=1):
        modules += [nn.Conv2d(channels, filters, 3, padding=pad), nn.ReLU()]
        if i % 2 == 0:
            modules.append(nn.MaxPool2d(2, 2))
        channels = filters
    modules += [nn.Flatten(), nn.Linear(1024, 50), nn.ReLU(), nn.Dropout(0.5)]
    modules += [nn.Linear(50, 10), nn.Dropout(0.5)]
    net = nn.Sequential(*modules)
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    linears = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for i, m in enumerate(convs, start=1):
            m.weight.copy_(torch.tensor(np.asarray(params[f"W{i}"])))
            m.bias.copy_(torch.tensor(np.asarray(params[f"b{i}"])))
        for i, m in enumerate(linears, start=7):
            m.weight.copy_(torch.tensor(np.asarray(params[f"W{i}"]).T))
            m.bias.copy_(torch.tensor(np.asarray(params[f"b{i}"])))
    return net


def torch_net(
    torch: Any, params: dict, model: str = "simple-convnet", *, channels_last: bool = False
) -> Any:
    """``model``'s ``nn.Sequential`` with funcnet's weights, in training mode (CPU); with
    ``channels_last`` its weights in ``torch.channels_last`` memory format."""
    if channels_last:
        net = torch_net(torch, params, model)
        return net.to(memory_format=torch.channels_last)
    if model == "deep-convnet":
        return _torch_deep_convnet(torch, params).train()
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(1, 30, 5),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(4320, 100),
        nn.ReLU(),
        nn.Linear(100, 10),
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(np.asarray(params["W1"])))
        net[0].bias.copy_(torch.tensor(np.asarray(params["b1"])))
        net[4].weight.copy_(torch.tensor(np.asarray(params["W2"]).T))
        net[4].bias.copy_(torch.tensor(np.asarray(params["b2"])))
        net[6].weight.copy_(torch.tensor(np.asarray(params["W3"]).T))
        net[6].bias.copy_(torch.tensor(np.asarray(params["b3"])))
    return net.train()


def torch_runner(
    params, x, t, seed: int = 0, *, model: str = "simple-convnet", channels_last: bool = False
) -> tuple[Runner | None, str]:
    """PyTorch eager, on the GPU where JAX runs on one (:func:`torch_device`); ``(None,
    reason)`` when torch cannot be imported. ``channels_last``: the net's weights, and so
    its activations, in ``torch.channels_last`` memory format, each batch too."""
    try:
        torch = importlib.import_module("torch")
    except ImportError as e:
        return None, f"torch not importable ({e}); pip install torch to measure it"
    device = torch_device(torch)
    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    nn = torch.nn
    net = torch_net(torch, params, model, channels_last=channels_last).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    loss_fn = nn.CrossEntropyLoss()
    xt = torch.tensor(x, device=device)
    tt = torch.tensor(np.asarray(t, np.int64), device=device)

    def run(steps: int) -> None:
        for _ in range(steps):
            idx = torch.randint(0, xt.shape[0], (BATCH,), device=device)
            opt.zero_grad()
            loss_fn(net(xt[idx].contiguous(memory_format=layout)), tt[idx]).backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # the timing covers the queued kernels

    where = "channels_last" if channels_last else "NCHW"
    if device.type == "cuda":
        return run, f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}, {where}"
    return run, f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}"


# --------------------------------------------------------------------------------------
# The book's NumPy layers (common/util.py, common/layers.py, common/optimizer.py)


def book_im2col(x, fh, fw, stride=1, pad=0):
    n, c, h, w = x.shape
    out_h, out_w = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((n, c, fh, fw, out_h, out_w), x.dtype)
    for y in range(fh):
        for xx in range(fw):
            col[:, :, y, xx] = img[
                :, :, y : y + stride * out_h : stride, xx : xx + stride * out_w : stride
            ]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * out_h * out_w, -1)


def book_col2im(col, shape, fh, fw, stride=1, pad=0):
    n, c, h, w = shape
    out_h, out_w = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    col = col.reshape(n, out_h, out_w, c, fh, fw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), col.dtype)
    for y in range(fh):
        for xx in range(fw):
            img[:, :, y : y + stride * out_h : stride, xx : xx + stride * out_w : stride] += col[
                :, :, y, xx
            ]
    return img[:, :, pad : h + pad, pad : w + pad]


class BookSimpleConvNet:
    """The book's SimpleConvNet forward/backward with its layers' rules, in NumPy."""

    def __init__(self, params):
        self.p = {k: np.array(v, np.float32) for k, v in params.items()}

    def gradient(self, x, t):
        p = self.p
        fn, c, fh, fw = p["W1"].shape
        n = x.shape[0]
        col = book_im2col(x, fh, fw)
        col_w = p["W1"].reshape(fn, -1).T
        a = (col @ col_w + p["b1"]).reshape(n, 24, 24, -1).transpose(0, 3, 1, 2)
        mask1 = a <= 0
        a[mask1] = 0
        pcol = book_im2col(a, 2, 2, 2).reshape(-1, 4)
        arg = np.argmax(pcol, axis=1)
        pooled = np.max(pcol, axis=1).reshape(n, 12, 12, fn).transpose(0, 3, 1, 2)
        xf = pooled.reshape(n, -1)
        h = xf @ p["W2"] + p["b2"]
        mask2 = h <= 0
        h[mask2] = 0
        s = h @ p["W3"] + p["b3"]
        y = np.exp(s - s.max(axis=1, keepdims=True))
        y /= y.sum(axis=1, keepdims=True)
        d = y.copy()
        d[np.arange(n), t] -= 1
        d /= n
        g = {"W3": h.T @ d, "b3": d.sum(0)}
        d = d @ p["W3"].T
        d[mask2] = 0
        g["W2"], g["b2"] = xf.T @ d, d.sum(0)
        d = (d @ p["W2"].T).reshape(pooled.shape).transpose(0, 2, 3, 1)
        dmax = np.zeros((d.size, 4), np.float32)
        dmax[np.arange(arg.size), arg.flatten()] = d.flatten()
        d = book_col2im(dmax.reshape(d.shape[0] * 144, -1), a.shape, 2, 2, 2)
        d[mask1] = 0
        d = d.transpose(0, 2, 3, 1).reshape(-1, fn)
        g["b1"] = d.sum(0)
        g["W1"] = (col.T @ d).transpose(1, 0).reshape(fn, c, fh, fw)
        return g


class BookAdam:
    """The book's Adam (common/optimizer.py)."""

    def __init__(self, lr=LR, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2, self.iter, self.m, self.v = lr, beta1, beta2, 0, {}, {}

    def update(self, params, grads):
        if not self.m:
            self.m = {k: np.zeros_like(v) for k, v in params.items()}
            self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for k in params:
            self.m[k] += (1 - self.beta1) * (grads[k] - self.m[k])
            self.v[k] += (1 - self.beta2) * (grads[k] ** 2 - self.v[k])
            params[k] -= (lr_t * self.m[k] / (np.sqrt(self.v[k]) + 1e-7)).astype(np.float32)


def numpy_runner(params, x, t, seed: int = 0) -> Runner:
    """The book's NumPy layers and Adam, float32."""
    net, opt = BookSimpleConvNet(params), BookAdam()
    rng = np.random.default_rng(seed)
    x32, t64 = np.asarray(x, np.float32), np.asarray(t, np.int64)

    def run(steps: int) -> None:
        for _ in range(steps):
            idx = rng.choice(x32.shape[0], BATCH)
            opt.update(net.p, net.gradient(x32[idx], t64[idx]))

    return run
