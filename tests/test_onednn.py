"""funcnet._onednn: float32 CPU convolutions on oneDNN's kernels through XLA's own
``__onednn$convolution`` call, equal to a NumPy reference and to the book's rule, with
XLA's convolution wherever the call is not used (other dtypes, zero sizes, GPU and TPU
lowerings, an unverified jaxlib, the persistent compilation cache on)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jaxlib import version as jaxlib_version

from funcnet import _dnnl, _onednn, conv
from funcnet._compile import compile_program

# the suite's persistent compilation cache cannot store the programs that hold the call
pytestmark = pytest.mark.filterwarnings("ignore:Error writing persistent compilation cache")

VERIFIED_HERE = (
    jaxlib_version.__version__ in _onednn.VERIFIED_JAXLIB
    and platform.machine() in _onednn._X86_64
    and os.environ.get(_onednn.DISABLE_ENV, "1") != "0"
    and len(jax.devices()) == 1
)
needs_onednn = pytest.mark.skipif(
    not VERIFIED_HERE, reason="oneDNN's convolution was not verified on this jaxlib/machine"
)


@pytest.mark.skipif(not VERIFIED_HERE, reason="oneDNN's convolution not verified here")
def test_onednn_is_available_where_it_was_verified():
    """On a verified jaxlib and machine the probe must pass: a broken config would
    otherwise only show as skipped tests."""
    assert _onednn.available()


@pytest.fixture
def onednn_on(monkeypatch):
    """oneDNN's kernels for this test although the suite's persistent compilation cache is
    on (conftest.py); JAX's trace caches are cleared before and after, so that no program
    traced one way is reused the other."""
    monkeypatch.setattr(_onednn, "_persistent_cache_on", lambda: False)
    jax.clear_caches()
    yield
    jax.clear_caches()


def _lowered_text(fn, *args, platforms=("cpu",)) -> str:
    return jax.jit(fn).trace(*args).lower(lowering_platforms=platforms).as_text()


def _random(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# (x NHWC, filter HWIO, (pad rows, pad columns))
GRID = [
    ((2, 7, 7, 3), (3, 3, 3, 4), (0, 0)),
    ((2, 7, 7, 3), (3, 3, 3, 4), (1, 1)),
    ((2, 7, 7, 3), (3, 3, 3, 4), (2, 2)),  # no padding left for dx (DeepConvNet's conv4)
    ((2, 6, 8, 5), (2, 3, 5, 3), (1, 2)),  # non-square filter, unequal paddings
    ((3, 5, 5, 1), (3, 3, 1, 6), (1, 1)),  # one channel
    ((2, 4, 4, 6), (1, 1, 6, 2), (0, 0)),  # a 1×1 filter
    ((1, 3, 3, 2), (3, 3, 2, 2), (4, 3)),  # padding wider than the filter
    ((4, 28, 28, 16), (3, 3, 16, 16), (1, 1)),  # DeepConvNet's conv2
]


@needs_onednn
@pytest.mark.parametrize("x_shape, w_shape, pad", GRID)
def test_onednn_convolution_equals_a_float64_numpy_reference(onednn_on, x_shape, w_shape, pad):
    x, w = _random(x_shape, 0), _random(w_shape, 1)
    assert _onednn.TARGET in _lowered_text(lambda x, w: _onednn.conv_nhwc(x, w, pad), x, w)
    got = jax.jit(lambda x, w: _onednn.conv_nhwc(x, w, pad))(x, w)
    want = _onednn._numpy_conv(x, w, pad)
    assert got.shape == want.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.max(np.abs(want)))


def test_the_numpy_reference_equals_xla_s_convolution():
    x, w = _random((2, 6, 8, 5), 2, np.float64), _random((2, 3, 5, 3), 3, np.float64)
    with jax.enable_x64(True):
        want = _onednn.xla_conv_nhwc(jnp.asarray(x), jnp.asarray(w), (1, 2))
    np.testing.assert_allclose(_onednn._numpy_conv(x, w, (1, 2)), want, rtol=1e-12, atol=1e-12)


def _outputs_and_gradients(layer, x, W, b, pad):
    out, vjp = jax.vjp(lambda *a: layer(*a, 1, pad), x, W, b)
    return (out, *vjp(jnp.cos(out)))


@needs_onednn
@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize("w_shape", [(5, 8, 3, 3), (6, 1, 3, 3), (4, 1, 5, 5)])
@pytest.mark.parametrize("layer", [conv.convolution, conv.convolution_nhwc])
def test_default_rule_on_onednn_equals_the_books_rule_in_float32(onednn_on, layer, w_shape, pad):
    """Forward and dx (the transposed convolution) on oneDNN, dW on XLA's kernel, for later
    layers and for first layers (one channel, which on XLA's kernels take the col rule):
    out, dx, dW and db within float32 rounding of the book's rule."""
    c = w_shape[1]
    x, W = _random((3, c, 9, 7), 4), 0.3 * _random(w_shape, 5)
    b = _random(w_shape[:1], 6)
    nhwc = layer is conv.convolution_nhwc
    xin = x.transpose(0, 2, 3, 1) if nhwc else x
    got = jax.jit(lambda *a: _outputs_and_gradients(layer, *a, pad))(xin, W, b)
    assert (
        _lowered_text(lambda *a: _outputs_and_gradients(layer, *a, pad), xin, W, b).count(
            _onednn.TARGET
        )
        == 2
    )
    with jax.enable_x64(True):
        args64 = [jnp.asarray(a, jnp.float64) for a in (x, W, b)]
        out64 = conv.convolution_book(*args64, 1, pad)
        g = jnp.cos(jnp.asarray(got[0].transpose(0, 3, 1, 2) if nhwc else got[0], jnp.float64))
        _, vjp = jax.vjp(lambda *a: conv.convolution_book(*a, 1, pad), *args64)
        want = (out64, *vjp(g))
    for name, a, e in zip(("out", "dx", "dW", "db"), got, want, strict=True):
        a = np.asarray(a)
        if nhwc and name in ("out", "dx"):
            a = a.transpose(0, 3, 1, 2)
        assert a.dtype == np.float32, name
        np.testing.assert_allclose(
            a, e, rtol=0, atol=1e-5 * np.max(np.abs(np.asarray(e))), err_msg=name
        )


def _grad_of_grad(x, W, b):
    def inner(W):
        return jnp.sum(jnp.tanh(conv.convolution(x, W, b, 1, 1)))

    return jax.jit(jax.grad(lambda W: jnp.sum(jax.grad(inner)(W) ** 2)))(W)


@needs_onednn
def test_gradients_of_gradients_through_onednn_equal_xla_s(monkeypatch):
    """The call has no derivative of its own: its JVP is XLA's convolution, so a gradient
    of the rule's backward (which runs dx on oneDNN) still works, and equals the one
    computed on XLA's kernels."""
    x, W, b = _random((2, 4, 6, 6), 7), 0.3 * _random((3, 4, 3, 3), 8), _random((3,), 9)
    monkeypatch.setattr(_onednn, "_persistent_cache_on", lambda: False)
    jax.clear_caches()
    on_onednn = _grad_of_grad(x, W, b)
    assert _onednn.TARGET in _lowered_text(jax.grad(lambda W: _grad_of_grad(x, W, b).sum()), W)
    monkeypatch.setattr(_onednn, "_persistent_cache_on", lambda: True)
    jax.clear_caches()
    on_xla = _grad_of_grad(x, W, b)
    jax.clear_caches()
    np.testing.assert_allclose(on_onednn, on_xla, rtol=1e-4, atol=1e-5 * np.max(np.abs(on_xla)))


@needs_onednn
def test_vmap_of_the_onednn_convolution_equals_each_example_alone(onednn_on):
    xs, w = _random((3, 2, 6, 6, 4), 10), _random((3, 3, 4, 5), 11)
    assert _onednn.TARGET in _lowered_text(jax.vmap(lambda x: _onednn.conv_nhwc(x, w, (1, 1))), xs)
    batched = jax.jit(jax.vmap(lambda x: _onednn.conv_nhwc(x, w, (1, 1))))(xs)
    for x, got in zip(xs, batched, strict=True):
        np.testing.assert_allclose(got, _onednn._numpy_conv(x, w, (1, 1)), rtol=0, atol=1e-4)


@needs_onednn
def test_deep_convnet_training_step_runs_its_convolutions_on_onednn(onednn_on):
    """fit's program for DeepConvNet: 6 forward and 5 dx convolutions on oneDNN (the first
    layer's dx, over data, is dropped); the 6 filter gradients on oneDNN's backward-weights
    kernel (funcnet._dnnl, tests/test_dnnl.py) or, without it, on XLA's Eigen kernel with
    the channels-last layout it needs."""
    from funcnet.nets import convnet

    params = convnet.init_deep_convnet(jax.random.key(0))
    x = jnp.zeros((4, 1, 28, 28), jnp.float32)
    t = jnp.zeros((4,), jnp.int32)
    grads = jax.grad(convnet.deep_convnet_loss)
    hlo = compile_program(grads, params, x, t, jax.random.key(1)).as_text()
    assert hlo.count(f'custom_call_target="{_onednn.TARGET}"') == 11
    labels = [
        ln.split("dim_labels=")[1].split(",")[0] for ln in hlo.splitlines() if " convolution(" in ln
    ]
    filter_grads = hlo.count('custom_call_target="funcnet_dnnl_filter_grad_')
    if _dnnl.kernel() == "onednn":
        assert (filter_grads, labels) == (6, []), labels
    else:
        assert (filter_grads, labels) == (0, ["b01f_01io->b01f"] * 6), labels


def test_no_onednn_call_for_other_dtypes_zero_sizes_or_other_platforms(onednn_on):
    w = _random((3, 3, 4, 2), 12)
    x = _random((2, 5, 5, 4), 13)

    def f(x, w):
        return _onednn.conv_nhwc(x, w, (1, 1))

    with jax.enable_x64(True):
        assert _onednn.TARGET not in _lowered_text(f, x.astype(np.float64), w.astype(np.float64))
    assert _onednn.TARGET not in _lowered_text(f, x.astype(np.float16), w.astype(np.float16))
    assert _onednn.TARGET not in _lowered_text(f, x[:0], w)  # no images
    assert _onednn.TARGET not in _lowered_text(f, x[..., :0], w[:, :, :0])  # no channels
    for target in ("cuda", "tpu"):
        text = _lowered_text(f, x, w, platforms=(target,))
        assert _onednn.TARGET not in text and "stablehlo.convolution" in text
    empty = jax.jit(f)(x[..., :0], w[:, :, :0])
    np.testing.assert_array_equal(empty, np.zeros((2, 5, 5, 2), np.float32))


def test_persistent_cache_or_unverified_jaxlib_keeps_xla_s_kernels(monkeypatch):
    """The suite runs with JAX's persistent compilation cache on (conftest.py), which
    cannot store a program holding the call: XLA's kernels then, as with a jaxlib the
    call was not verified on."""
    assert _onednn._persistent_cache_on() and _onednn.kernel() == "xla"
    monkeypatch.setattr(_onednn, "_persistent_cache_on", lambda: False)
    monkeypatch.setattr(_onednn, "VERIFIED_JAXLIB", ())
    _onednn.available.cache_clear()
    try:
        assert not _onednn.available() and _onednn.kernel() == "xla"
    finally:
        _onednn.available.cache_clear()


@needs_onednn
def test_shard_map_over_one_device_runs_the_call_with_xla_s_result_type(onednn_on):
    x, W, b = _random((4, 8, 8, 8), 14), 0.3 * _random((4, 8, 3, 3), 15), _random((4,), 16)
    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    f = jax.shard_map(
        lambda x, W, b: conv.convolution_nhwc(x, W, b, 1, 1),
        mesh=mesh,
        in_specs=(P("batch"), P(), P()),
        out_specs=P("batch"),
    )
    assert _onednn.TARGET in _lowered_text(f, x, W, b)
    with jax.enable_x64(True):
        want = conv.convolution_book(
            *(np.float64(a) for a in (x.transpose(0, 3, 1, 2), W, b)), 1, 1
        )
    got = np.asarray(jax.jit(f)(x, W, b)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.max(np.abs(want)))


@needs_onednn
def test_export_with_a_symbolic_batch_keeps_xla_s_convolution(onednn_on):
    """jax.export traces symbolic sizes: the call needs known ones, so XLA's convolution."""
    w = _random((3, 3, 4, 2), 17)
    (n,) = jax.export.symbolic_shape("n")
    spec = jax.ShapeDtypeStruct((n, 6, 6, 4), jnp.float32)
    exported = jax.export.export(jax.jit(lambda x: _onednn.conv_nhwc(x, w, (1, 1))))(spec)
    assert _onednn.TARGET not in exported.mlir_module()
    x = _random((2, 6, 6, 4), 18)
    np.testing.assert_allclose(exported.call(x), _onednn._numpy_conv(x, w, (1, 1)), atol=1e-4)


@needs_onednn
def test_the_check_runs_whatever_the_callers_context(monkeypatch):
    """The probe compiles and transfers its own inputs: a caller's transfer guard or
    disabled jit must not switch oneDNN off for the rest of the process."""
    _onednn.available.cache_clear()
    try:
        with jax.transfer_guard("disallow"), jax.disable_jit():
            assert _onednn.available()
    finally:
        _onednn.available.cache_clear()


def _kernel_in_a_fresh_process(env: dict, module: str = "_onednn") -> str:
    """``kernel()`` of ``funcnet.<module>`` in a new process with ``env`` added (and no
    persistent compilation cache)."""
    code = f"from funcnet import {module}; print({module}.kernel())"
    env = {**os.environ, **env}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@needs_onednn
def test_opt_out_and_several_devices_keep_xla_s_kernels():
    """FUNCNET_ONEDNN=0 (for jax.export, say), and several devices (a program may be
    sharded, and XLA cannot partition the call: it would gather each batch onto every
    device)."""
    assert _kernel_in_a_fresh_process({}) == "onednn"
    assert _kernel_in_a_fresh_process({"FUNCNET_ONEDNN": "0"}) == "xla"
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    assert _kernel_in_a_fresh_process({"XLA_FLAGS": flags}) == "xla"
