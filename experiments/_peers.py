"""The peers of ``experiments.benchmark``: the book's ch5 training protocol five ways.

Every peer runs the same protocol on the same data from the same initial weights:
784-50-10 ReLU net, minibatches of 100 drawn with replacement, SGD with learning rate
0.1, ``iters`` iterations, train and test accuracy over the whole sets after iterations
0, epoch, 2·epoch, ... (epoch = ``funcnet.train.iters_per_epoch``, the book's
``iter_per_epoch``) and after the last iteration (the final params, as ``fit`` reports
them), the minibatch loss recorded every iteration.

- :func:`run_fit`: funcnet's ``fit`` (custom_vjp layers, the steps between two
  evaluations fused into one compiled loop) — the product;
- :func:`run_step`: funcnet's ``fit(fused=False)``, one compiled step per Python iteration;
- :func:`run_plain_jax`: ``jax.grad`` of a plain ``jnp`` forward with ``optax.sgd``, each
  epoch one ``lax.scan``, jitted evaluation: the same loop written without funcnet;
- :func:`run_numpy`: the book's algorithm in NumPy (Affine, Relu, SoftmaxWithLoss with
  hand-written backward passes), float32;
- :func:`run_torch`: PyTorch eager (``torch.nn`` + ``torch.optim.SGD``), float32, with
  denormals flushed like XLA does; a "skipped" result when torch is not importable.

Each returns a :class:`PeerResult`. ``seconds`` is the whole protocol (data placement,
every step, every evaluation, host transfers) *without* compilation, which is timed on
its own in ``compile_seconds`` (ahead-of-time ``jit(...).lower(...).compile()``).
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcnet import nets, train

TORCH_VERSION = "2.13.0"
TORCH_HINT = f"pip install torch=={TORCH_VERSION}"

Split = tuple[np.ndarray, np.ndarray]
Params = dict[str, Any]


class Protocol(NamedTuple):
    """The book's ch5 training protocol (``train_neuralnet.py``)."""

    iters: int = 10000
    batch_size: int = 100
    lr: float = 0.1
    hidden: int = 50
    weight_init_std: float = 0.01
    seed: int = 0


class PeerResult(NamedTuple):
    """One run of one peer.

    ``status`` is ``"ok"`` or ``"skipped"`` (then ``reason`` says why and every number is
    None). ``seconds`` excludes compilation, ``compile_seconds`` is compilation alone (0
    for the eager peers). ``losses`` is the minibatch loss of every iteration.
    """

    name: str
    status: str
    reason: str | None = None
    seconds: float | None = None
    compile_seconds: float | None = None
    train_acc: float | None = None
    test_acc: float | None = None
    losses: np.ndarray | None = None
    params: Params | None = None


def skipped(name: str, reason: str) -> PeerResult:
    """A result for a peer that could not run."""
    return PeerResult(name=name, status="skipped", reason=reason)


def evaluation_points(iters: int, every: int) -> list[int]:
    """Iterations after whose update the accuracies are measured, as ``fit`` measures them:
    0, every, 2·every, ... < iters, and the last iteration ``iters - 1`` (the final params)."""
    return [start + num - 1 for start, num, _ in train.segments(iters, every)]


def epoch_length(n: int, protocol: Protocol) -> int:
    """Iterations between two evaluations for ``n`` training images (fit's)."""
    return train.iters_per_epoch(n, protocol.batch_size)


def init_params(protocol: Protocol, input_size: int, classes: int) -> Params:
    """The shared initial weights (NumPy float32): funcnet's ``init_two_layer_net`` with the
    protocol's seed, Gaussian std ``weight_init_std``, zero biases."""
    key = jax.random.fold_in(jax.random.key(protocol.seed), 0)
    params = nets.init_two_layer_net(
        key, input_size, protocol.hidden, classes, protocol.weight_init_std
    )
    return {k: np.asarray(v) for k, v in params.items()}


def fit_key(protocol: Protocol) -> jax.Array:
    """The minibatch key of the JAX peers (all three draw the same minibatches)."""
    return jax.random.fold_in(jax.random.key(protocol.seed), 1)


# --------------------------------------------------------------------------------------
# funcnet


def run_fit(
    train_data: Split, test_data: Split, params: Params, protocol: Protocol, *, fused: bool = True
) -> PeerResult:
    """funcnet ``fit`` with the two-layer ReLU net's custom-rule loss; ``fused=False`` is
    one compiled step per Python iteration."""
    net = nets.two_layer_net("relu")
    key = fit_key(protocol)  # made before the clock starts, as by every JAX peer
    t0 = time.perf_counter()
    final, history = train.fit(
        params,
        train_data,
        test_data,
        key=key,
        loss_fn=net.loss,
        predict_fn=net.predict,
        iters=protocol.iters,
        batch_size=protocol.batch_size,
        lr=protocol.lr,
        fused=fused,
    )
    jax.block_until_ready(final)
    total = time.perf_counter() - t0
    return PeerResult(
        name="funcnet fit" if fused else "funcnet step",
        status="ok",
        seconds=total - history.compile_time,
        compile_seconds=history.compile_time,
        train_acc=history.final_train_acc,
        test_acc=history.final_test_acc,
        losses=history.loss,
        params=final,
    )


def run_step(train_data: Split, test_data: Split, params: Params, protocol: Protocol) -> PeerResult:
    """funcnet with one jitted step per Python iteration (``fit(fused=False)``)."""
    return run_fit(train_data, test_data, params, protocol, fused=False)


# --------------------------------------------------------------------------------------
# plain JAX: jax.grad of a jnp forward, optax.sgd, one lax.scan per epoch


def plain_predict(params: Params, x: jax.Array) -> jax.Array:
    """Scores ``relu(x·W1 + b1)·W2 + b2``: x ``(N, D)`` -> ``(N, C)``, jnp only."""
    h = jax.nn.relu(x @ params["W1"] + params["b1"])
    return h @ params["W2"] + params["b2"]


def plain_loss(params: Params, x: jax.Array, t: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of :func:`plain_predict` for integer labels ``t (N,)``."""
    logp = jax.nn.log_softmax(plain_predict(params, x))
    return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))


def plain_accuracies(params: Params, x_train, t_train, x_test, t_test) -> jax.Array:
    """``[train_acc, test_acc]``: argmax of the scores against the labels, whole sets."""

    def acc(x, t):
        return jnp.mean(jnp.argmax(plain_predict(params, x), axis=1) == t)

    return jnp.stack([acc(x_train, t_train), acc(x_test, t_test)])


def plain_epoch(
    optimizer: optax.GradientTransformation, batch_size: int, num_steps: int
) -> Callable:
    """``epoch(params, opt_state, x, t, key, start) -> (params, opt_state, losses)``:
    iterations ``start .. start + num_steps - 1`` as one ``lax.scan``, iteration ``i``
    drawing its minibatch with ``fold_in(key, i)`` (the same draws as funcnet's fit)."""

    def epoch(params, opt_state, x, t, key, start):
        n = x.shape[0]

        def body(carry, i):
            params, opt_state = carry
            batch = jax.random.randint(
                jax.random.fold_in(key, i), (batch_size,), 0, n, dtype=jnp.int32
            )
            loss, grads = jax.value_and_grad(plain_loss)(params, x[batch], t[batch])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        steps = start + jnp.arange(num_steps, dtype=jnp.int32)
        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), steps)
        return params, opt_state, losses

    return epoch


def run_plain_jax(
    train_data: Split, test_data: Split, params: Params, protocol: Protocol
) -> PeerResult:
    """Plain JAX: ``jax.grad`` of :func:`plain_loss` + ``optax.sgd``, an epoch per scan."""
    key = fit_key(protocol)
    t0 = time.perf_counter()
    x_train, t_train, x_test, t_test = jax.device_put((*train_data, *test_data))
    params = jax.device_put(params)
    every = epoch_length(x_train.shape[0], protocol)
    # The loop cut at the evaluations, exactly as fit cuts it (no gradient code involved);
    # like fit, each segment ends in an evaluation, the last one of the final params.
    segments = train.segments(protocol.iters, every)
    optimizer = optax.sgd(protocol.lr)
    opt_state = optimizer.init(params)

    t_compile = time.perf_counter()
    evaluate = jax.jit(plain_accuracies).lower(params, x_train, t_train, x_test, t_test).compile()
    epochs = {
        num: jax.jit(plain_epoch(optimizer, protocol.batch_size, num))
        .lower(params, opt_state, x_train, t_train, key, 0)
        .compile()
        for num in sorted({num for _, num, _ in segments})
    }
    compile_seconds = time.perf_counter() - t_compile

    losses, accs = [], None
    for start, num, _ in segments:
        params, opt_state, seg_losses = epochs[num](params, opt_state, x_train, t_train, key, start)
        accs = evaluate(params, x_train, t_train, x_test, t_test)
        accs, seg_losses = jax.device_get((accs, seg_losses))
        losses.append(seg_losses)
    losses = np.concatenate([np.asarray(loss) for loss in jax.device_get(losses)])
    params = jax.block_until_ready(params)
    total = time.perf_counter() - t0
    return PeerResult(
        name="plain JAX",
        status="ok",
        seconds=total - compile_seconds,
        compile_seconds=compile_seconds,
        train_acc=float(accs[0]),
        test_acc=float(accs[1]),
        losses=losses,
        params=params,
    )


def plain_program(optimizer: optax.GradientTransformation, batch_size: int, iters: int) -> Callable:
    """``program(params, x, t, x_test, t_test, key, starts, nums) -> (params, losses
    (iters,), accuracies (E, 2))``: the whole protocol as one function to jit, a
    ``lax.scan`` over the E evaluation points (segment ``e`` runs iterations
    ``starts[e] .. starts[e] + nums[e] - 1`` as a ``fori_loop``, then measures train and
    test accuracy), iteration ``i`` drawing its minibatch with ``fold_in(key, i)`` (the
    same draws as funcnet's fit). ``jax.grad`` of :func:`plain_loss`, no check of any kind."""

    def program(params, x, t, x_test, t_test, key, starts, nums):
        n = x.shape[0]

        def step(i, carry):
            params, opt_state, losses = carry
            batch = jax.random.randint(
                jax.random.fold_in(key, i), (batch_size,), 0, n, dtype=jnp.int32
            )
            loss, grads = jax.value_and_grad(plain_loss)(params, x[batch], t[batch])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, losses.at[i].set(loss)

        def segment(carry, start_num):
            start, num = start_num
            carry = jax.lax.fori_loop(start, start + num, step, carry)
            return carry, plain_accuracies(carry[0], x, t, x_test, t_test)

        carry = (params, optimizer.init(params), jnp.zeros((iters,), jnp.float32))
        (params, _, losses), accs = jax.lax.scan(segment, carry, (starts, nums))
        return params, losses, accs

    return program


def run_plain_jax_program(
    train_data: Split, test_data: Split, params: Params, protocol: Protocol
) -> PeerResult:
    """Plain JAX as one program: :func:`plain_program` jitted once for the whole protocol
    (all ``iters`` steps and every evaluation), called once; the single-program loop that
    ``fit``'s whole call, compilation included, is measured against."""
    key = fit_key(protocol)
    t0 = time.perf_counter()
    x_train, t_train, x_test, t_test = jax.device_put((*train_data, *test_data))
    params = jax.device_put(params)
    plan = train.segments(protocol.iters, epoch_length(x_train.shape[0], protocol))
    starts = jnp.asarray([start for start, _, _ in plan], jnp.int32)
    nums = jnp.asarray([num for _, num, _ in plan], jnp.int32)
    program = plain_program(optax.sgd(protocol.lr), protocol.batch_size, protocol.iters)
    args = (params, x_train, t_train, x_test, t_test, key, starts, nums)

    t_compile = time.perf_counter()
    compiled = jax.jit(program).lower(*args).compile()
    compile_seconds = time.perf_counter() - t_compile

    params, losses, accs = compiled(*args)
    losses, accs = jax.device_get((losses, accs))
    params = jax.block_until_ready(params)
    total = time.perf_counter() - t0
    return PeerResult(
        name="JAX 1 program",
        status="ok",
        seconds=total - compile_seconds,
        compile_seconds=compile_seconds,
        train_acc=float(accs[-1, 0]),
        test_acc=float(accs[-1, 1]),
        losses=np.asarray(losses),
        params=params,
    )


# --------------------------------------------------------------------------------------
# NumPy: the book's layers with hand-written backward passes


def np_affine(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine forward ``x·W + b`` (book ``Affine.forward``): ``(N, D) -> (N, H)``."""
    return x @ W + b


def np_affine_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray) -> tuple:
    """Affine backward (book ``Affine.backward``): ``dx = dout·Wᵀ, dW = xᵀ·dout,
    db = Σₙ dout``."""
    return dout @ W.T, x.T @ dout, dout.sum(axis=0)


def np_relu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ReLU forward (book ``Relu.forward``): returns ``(out, mask)`` with mask ``x <= 0``."""
    mask = x <= 0
    out = x.copy()
    out[mask] = 0
    return out, mask


def np_relu_backward(dout: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """ReLU backward (book ``Relu.backward``): the upstream gradient where ``x > 0``."""
    dx = dout.copy()
    dx[mask] = 0
    return dx


def np_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax (book ``softmax``, max subtracted): ``(N, C) -> (N, C)``."""
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def np_softmax_with_loss(x: np.ndarray, t: np.ndarray) -> tuple[np.float32, np.ndarray]:
    """SoftmaxWithLoss forward (book): ``(loss, y)`` with the book's
    ``cross_entropy_error`` (1e-7 inside the log), labels ``t (N,)``."""
    y = np_softmax(x)
    n = x.shape[0]
    loss = -np.sum(np.log(y[np.arange(n), t] + 1e-7)) / n
    return loss, y


def np_softmax_with_loss_backward(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """SoftmaxWithLoss backward (book): ``(y - one_hot(t)) / N``."""
    n = y.shape[0]
    dx = y.copy()
    dx[np.arange(n), t] -= 1
    return dx / n


def _np_pass(params: Params, x: np.ndarray, t: np.ndarray) -> dict[str, Any]:
    """One forward and backward pass through the book's layers, every value kept."""
    a1 = np_affine(x, params["W1"], params["b1"])
    z1, mask = np_relu(a1)
    a2 = np_affine(z1, params["W2"], params["b2"])
    loss, y = np_softmax_with_loss(a2, t)
    dout = np_softmax_with_loss_backward(y, t)
    dz1, dW2, db2 = np_affine_backward(dout, z1, params["W2"])
    da1 = np_relu_backward(dz1, mask)
    _, dW1, db1 = np_affine_backward(da1, x, params["W1"])
    grads = {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}
    return {
        "loss": loss,
        "activations": [a1, z1, a2, y],
        "deltas": [dout, dz1, da1],
        "grads": grads,
    }


def np_gradient(params: Params, x: np.ndarray, t: np.ndarray) -> tuple[Any, Params]:
    """The book's ``TwoLayerNet.gradient`` (ch5): forward through the layers, then
    backward in reverse order. Returns ``(loss, grads)``."""
    values = _np_pass(params, x, t)
    return values["loss"], values["grads"]


def np_accuracy(params: Params, x: np.ndarray, t: np.ndarray) -> float:
    """The book's ``accuracy``: argmax of the scores against labels ``t (N,)``."""
    z1, _ = np_relu(np_affine(x, params["W1"], params["b1"]))
    scores = np_affine(z1, params["W2"], params["b2"])
    return float(np.mean(np.argmax(scores, axis=1) == t))


def run_numpy(
    train_data: Split, test_data: Split, params: Params, protocol: Protocol
) -> PeerResult:
    """The book's ch5 loop in NumPy, float32 weights and data (the book's ``randn`` weights
    would be float64); minibatches from ``numpy.random.default_rng(seed)``."""
    t0 = time.perf_counter()
    (x_train, t_train), (x_test, t_test) = train_data, test_data
    params = {k: np.array(v, np.float32) for k, v in params.items()}
    n = x_train.shape[0]
    evals = set(evaluation_points(protocol.iters, epoch_length(n, protocol)))
    rng = np.random.default_rng(protocol.seed)
    lr = np.float32(protocol.lr)
    losses = np.empty(protocol.iters, np.float32)
    accs = None
    for i in range(protocol.iters):
        batch = rng.integers(0, n, protocol.batch_size)
        loss, grads = np_gradient(params, x_train[batch], t_train[batch])
        for k in params:
            params[k] -= lr * grads[k]
        losses[i] = loss
        if i in evals:
            accs = (np_accuracy(params, x_train, t_train), np_accuracy(params, x_test, t_test))
    return PeerResult(
        name="NumPy (book)",
        status="ok",
        seconds=time.perf_counter() - t0,
        compile_seconds=0.0,
        train_acc=accs[0],
        test_acc=accs[1],
        losses=losses,
        params=params,
    )


def count_subnormal(arrays: Any) -> tuple[int, int]:
    """``(subnormal, total)`` element counts over NumPy float arrays (a dict or list):
    values with ``0 < |v| < tiny``, which CPUs handle on slow paths unless flushed."""
    arrays = arrays.values() if isinstance(arrays, dict) else arrays
    sub = tot = 0
    for a in arrays:
        a = np.asarray(a)
        tiny = np.finfo(a.dtype).tiny
        sub += int(np.count_nonzero((a != 0) & (np.abs(a) < tiny)))
        tot += a.size
    return sub, tot


def denormal_census(params: Params, x: np.ndarray, t: np.ndarray) -> dict[str, tuple[int, int]]:
    """Subnormal counts ``(subnormal, total)`` in the weights, and in the activations and
    gradients of one forward and backward pass over ``x (N, D)``, labels ``t (N,)``, at
    those weights (the NumPy peer's float32 arithmetic)."""
    params = {k: np.asarray(v, np.float32) for k, v in params.items()}
    values = _np_pass(params, x, t)
    return {
        "weights": count_subnormal(params),
        "activations": count_subnormal(values["activations"]),
        "gradients": count_subnormal(values["deltas"] + list(values["grads"].values())),
    }


# --------------------------------------------------------------------------------------
# PyTorch eager


def import_torch() -> tuple[Any, str | None]:
    """``(torch, None)``, or ``(None, reason)`` when torch cannot be imported."""
    try:
        return importlib.import_module("torch"), None
    except ImportError as e:
        return None, f"torch not installed: {TORCH_HINT} ({e})"


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_torch(
    train_data: Split,
    test_data: Split,
    params: Params,
    protocol: Protocol,
    *,
    flush_denormal: bool = True,
) -> PeerResult:
    """PyTorch eager: ``nn.Sequential(Linear, ReLU, Linear)``, ``CrossEntropyLoss``,
    ``optim.SGD``, on the GPU where JAX runs on one; float32, ``set_num_threads(cores)``,
    and ``set_flush_denormal(True)`` during the run like XLA on CPU
    (``flush_denormal=False`` keeps denormals). The flag is
    process-wide state: it is switched off again afterwards, so it cannot change the
    NumPy peer."""
    torch, reason = import_torch()
    if torch is None:
        return skipped("PyTorch eager", f"skipped ({reason.split(' (')[0]})")
    torch.set_num_threads(cpu_count())
    flushing = torch.set_flush_denormal(flush_denormal) and flush_denormal
    try:
        return _run_torch(torch, train_data, test_data, params, protocol, flushing)
    finally:
        torch.set_flush_denormal(False)


def _writable(a: np.ndarray, dtype: Any) -> np.ndarray:
    """``a`` as a C-contiguous, writable array of ``dtype`` (torch refuses read-only
    memory), copied only when needed."""
    a = np.ascontiguousarray(a, dtype)
    return a if a.flags.writeable else a.copy()


def _run_torch(torch, train_data, test_data, params, protocol, flushing: bool) -> PeerResult:
    # on the GPU where JAX runs on one, as the JAX peers do
    from experiments._conv_peers import torch_device

    nn = torch.nn
    device = torch_device(torch)
    t0 = time.perf_counter()
    x_train, x_test = (_writable(x[0], np.float32) for x in (train_data, test_data))
    x_train, x_test = torch.from_numpy(x_train).to(device), torch.from_numpy(x_test).to(device)
    t_train = torch.from_numpy(_writable(train_data[1], np.int64)).to(device)
    t_test = torch.from_numpy(_writable(test_data[1], np.int64)).to(device)
    d, h = params["W1"].shape
    c = params["W2"].shape[1]
    model = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, c)).to(device)
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(np.array(params["W1"]).T))
        model[0].bias.copy_(torch.from_numpy(np.array(params["b1"])))
        model[2].weight.copy_(torch.from_numpy(np.array(params["W2"]).T))
        model[2].bias.copy_(torch.from_numpy(np.array(params["b2"])))
    optimizer = torch.optim.SGD(model.parameters(), lr=protocol.lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator(device=device).manual_seed(protocol.seed)
    n = x_train.shape[0]
    evals = set(evaluation_points(protocol.iters, epoch_length(n, protocol)))

    def accuracy(x, t):
        with torch.no_grad():
            return (model(x).argmax(dim=1) == t).float().mean().item()

    losses = torch.empty(protocol.iters, device=device)
    accs = None
    for i in range(protocol.iters):
        batch = torch.randint(n, (protocol.batch_size,), generator=generator, device=device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x_train[batch]), t_train[batch])
        loss.backward()
        optimizer.step()
        losses[i] = loss.detach()
        if i in evals:
            accs = (accuracy(x_train, t_train), accuracy(x_test, t_test))
    losses = losses.cpu()  # waits for the queued work (on a GPU)
    seconds = time.perf_counter() - t0
    final = {
        "W1": model[0].weight.detach().cpu().numpy().T.copy(),
        "b1": model[0].bias.detach().cpu().numpy().copy(),
        "W2": model[2].weight.detach().cpu().numpy().T.copy(),
        "b2": model[2].bias.detach().cpu().numpy().copy(),
    }
    return PeerResult(
        name="PyTorch eager",
        status="ok",
        reason=None if flushing else "denormals not flushed",
        seconds=seconds,
        compile_seconds=0.0,
        train_acc=accs[0],
        test_acc=accs[1],
        losses=losses.numpy(),
        params=final,
    )


PEERS: dict[str, Callable[..., PeerResult]] = {
    "fit": run_fit,
    "step": run_step,
    "jax": run_plain_jax,
    "jax1": run_plain_jax_program,
    "numpy": run_numpy,
    "torch": run_torch,
}
"""Peer id (``--peers`` value) -> runner ``(train, test, params, protocol) -> PeerResult``."""

PEER_NAMES = {
    "fit": "funcnet fit",
    "step": "funcnet step",
    "jax": "plain JAX",
    "jax1": "JAX 1 program",
    "numpy": "NumPy (book)",
    "torch": "PyTorch eager",
}

# --------------------------------------------------------------------------------------
# Where the time goes: the steps and the evaluations, each as a complete run of its own


def time_once(fn: Callable[[], Any]) -> float:
    """Seconds of one call of ``fn``, waiting for its JAX results."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def _numpy_steps(
    params: Params, x: np.ndarray, t: np.ndarray, protocol: Protocol, steps: int
) -> Params:
    """``steps`` iterations of the NumPy peer's loop (no evaluation), on a copy of params."""
    params = {k: v.copy() for k, v in params.items()}
    rng = np.random.default_rng(protocol.seed)
    lr = np.float32(protocol.lr)
    for _ in range(steps):
        batch = rng.integers(0, x.shape[0], protocol.batch_size)
        _, grads = np_gradient(params, x[batch], t[batch])
        for k in params:
            params[k] -= lr * grads[k]
    return params


PROFILED = {"fit": "funcnet fit", "jax": "plain JAX", "numpy": "NumPy (book)"}
"""The peers (id -> name) whose parts :func:`profile_parts` times."""


def _fit_parts(data, params, protocol, plan, evals) -> dict[str, Callable[[], Any]]:
    """fit's own programs: its chunk program with the evaluation left out, run over the
    whole plan in chunks of as many equal segments as fit allows, fetching each chunk's
    losses as fit does; its evaluation."""
    net = nets.two_layer_net("relu")
    optimizer = optax.sgd(protocol.lr)
    model = train.stateful(net.loss, net.predict)
    train_step = train.make_train_step(model, optimizer, protocol.batch_size)
    no_eval = lambda state, data: jnp.zeros((2,), jnp.float32)  # noqa: E731
    state0 = train.init_state(params, optimizer, fit_key(protocol))
    max_steps = max(num for _, num, _ in plan)
    limit = train.loop.chunk_limit(max_steps, sum(num == max_steps for _, num, _ in plan))
    chunk = train.loop.make_chunk(train_step, no_eval, max_steps, limit, jnp.float32)
    program = jax.jit(chunk).lower(state0, data, jnp.int32(1), jnp.int32(1)).compile()
    evaluate = jax.jit(train.make_evaluate(net.predict)).lower(params, *data).compile()
    num_steps = train.loop.step_counts(plan)
    num_segments = train.loop.device_counts(range(1, limit + 1))
    calls, i = [], 0  # (steps per segment, segments) of fit's calls, its sizing aside
    while i < len(plan):
        count = train.loop.equal_run(plan, i, limit)
        calls.append((plan[i][1], count))
        i += count

    def steps():
        state = state0
        for num, count in calls:
            state, losses, _ = program(state, data, num_steps[num], num_segments[count])
            jax.device_get(losses)
        return state

    def evaluations():
        return [jax.device_get(evaluate(params, *data)) for _ in range(evals)]

    return {"steps": steps, "evals": evaluations}


def _plain_parts(data, params, protocol, plan, evals) -> dict[str, Callable[[], Any]]:
    """The plain-JAX peer's programs: its epochs with no evaluation; its evaluation."""
    x_train, t_train = data[0], data[1]
    optimizer = optax.sgd(protocol.lr)
    opt_state = optimizer.init(params)
    key = fit_key(protocol)
    epochs = {
        num: jax.jit(plain_epoch(optimizer, protocol.batch_size, num))
        .lower(params, opt_state, x_train, t_train, key, 0)
        .compile()
        for num in sorted({num for _, num, _ in plan})
    }
    evaluate = jax.jit(plain_accuracies).lower(params, *data).compile()

    def steps():
        p, o = params, opt_state
        for start, num, _ in plan:
            p, o, losses = epochs[num](p, o, x_train, t_train, key, start)
            jax.device_get(losses)
        return p

    def evaluations():
        return [jax.device_get(evaluate(params, *data)) for _ in range(evals)]

    return {"steps": steps, "evals": evaluations}


def _numpy_parts(train_data, test_data, params, protocol, evals) -> dict[str, Callable]:
    """The NumPy peer's loop with no evaluation; its evaluation."""
    np_params = {k: np.array(v, np.float32) for k, v in params.items()}

    def evaluations():
        return [
            (np_accuracy(np_params, *train_data), np_accuracy(np_params, *test_data))
            for _ in range(evals)
        ]

    return {
        "steps": lambda: _numpy_steps(np_params, *train_data, protocol, protocol.iters),
        "evals": evaluations,
    }


def profile_parts(
    train_data: Split, test_data: Split, params: Params, protocol: Protocol, peer_ids=PROFILED
) -> dict[str, dict[str, Callable[[], Any]]]:
    """The two parts of each profiled peer's whole run, each a complete run of its own
    that is timed like the whole (one call, compilation done here, ahead of time):

    - ``steps``: all ``protocol.iters`` steps, cut into the same segments, with no
      evaluation (for funcnet, ``fit``'s own chunk program with the evaluation left out);
    - ``evals``: the protocol's evaluations (:func:`evaluation_points`), back to back:
      train and test accuracy over the whole sets.

    Returns ``{peer id: {"steps": fn, "evals": fn}}`` for the ids of :data:`PROFILED`
    among ``peer_ids``.
    """
    x_train, t_train, x_test, t_test = jax.device_put((*train_data, *test_data))
    data = (x_train, t_train, x_test, t_test)
    every = epoch_length(x_train.shape[0], protocol)
    plan = train.segments(protocol.iters, every)
    evals = len(plan)
    parts: dict[str, dict[str, Callable[[], Any]]] = {}
    if "fit" in peer_ids:
        parts["fit"] = _fit_parts(data, jax.device_put(params), protocol, plan, evals)
    if "jax" in peer_ids:
        parts["jax"] = _plain_parts(data, jax.device_put(params), protocol, plan, evals)
    if "numpy" in peer_ids:
        parts["numpy"] = _numpy_parts(train_data, test_data, params, protocol, evals)
    return parts
