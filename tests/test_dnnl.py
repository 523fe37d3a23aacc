"""funcnet._dnnl: float32 CPU filter gradients on oneDNN's backward-weights kernel (the
``onednn-cpu-gomp`` library through a typed XLA FFI handler written with ctypes), equal to
a float64 NumPy reference, to XLA's convolution and to the book's rule, with XLA's
convolution wherever the handler is not used (other dtypes, zero or symbolic sizes, GPU and
TPU lowerings, the library missing, several devices, ``FUNCNET_ONEDNN=0``)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from test_onednn import _kernel_in_a_fresh_process

from funcnet import _dnnl, _ffi_abi, conv

INSTALLED_HERE = (
    platform.machine() in _dnnl._X86_64
    and bool(_dnnl._library_candidates())
    and os.environ.get(_dnnl.DISABLE_ENV, "1") != "0"
    and len(jax.devices()) == 1
)
needs_dnnl = pytest.mark.skipif(
    not (INSTALLED_HERE and _dnnl._library()[0] is not None),
    reason=f"onednn-cpu-gomp is not installed or does not load here: {_dnnl._library()[1]}",
)
TARGET = "funcnet_dnnl_filter_grad_"


def _random(shape, seed, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _lowered_text(fn, *args, platforms=("cpu",)) -> str:
    return jax.jit(fn).trace(*args).lower(lowering_platforms=platforms).as_text()


def _dout_shape(x_shape, fn, filt, pad):
    n, h, w, _ = x_shape
    return n, h + 2 * pad[0] - filt[0] + 1, w + 2 * pad[1] - filt[1] + 1, fn


@pytest.mark.skipif(platform.machine() not in _dnnl._X86_64, reason="x86-64 only")
def test_the_library_is_installed_and_passes_its_check_on_linux_x86_64():
    """It is a dependency on Linux x86-64: a broken install or binding would otherwise only
    show as skipped tests."""
    if sys.platform != "linux" or not INSTALLED_HERE:
        pytest.skip("not Linux, or several devices / FUNCNET_ONEDNN=0 in this run")
    _, why = _dnnl._library()
    if "libgomp" in why:  # a system package, like the other tests' (README)
        pytest.skip(f"GNU OpenMP is missing (apt-get install libgomp1): {why}")
    assert _dnnl.available() and _dnnl.kernel() == "onednn", why


# (x NHWC, dout's channels, filter (FH, FW), pad (rows, columns))
GRID = [
    ((2, 7, 7, 3), 4, (3, 3), (0, 0)),
    ((2, 7, 7, 3), 4, (3, 3), (1, 1)),
    ((2, 7, 7, 3), 4, (3, 3), (2, 2)),
    ((2, 6, 8, 5), 3, (2, 3), (1, 2)),  # non-square filter, unequal paddings
    ((3, 5, 5, 1), 6, (3, 3), (1, 1)),  # one channel (a first layer over data)
    ((2, 4, 4, 6), 2, (1, 1), (0, 0)),  # a 1×1 filter
    ((1, 3, 3, 2), 1, (3, 3), (2, 1)),  # one image, one filter
    ((4, 28, 28, 1), 30, (5, 5), (0, 0)),  # SimpleConvNet's convolution
    ((4, 28, 28, 16), 16, (3, 3), (1, 1)),  # DeepConvNet's conv2
]


@needs_dnnl
@pytest.mark.parametrize("x_shape, fn, filt, pad", GRID)
def test_filter_grad_equals_a_float64_reference_and_xla_s(x_shape, fn, filt, pad):
    x = _random(x_shape, 1)
    d = _random(_dout_shape(x_shape, fn, filt, pad), 2)
    f = jax.jit(lambda x, d: _dnnl.filter_grad(x, d, filt, pad))
    assert TARGET in _lowered_text(f, x, d)
    got = np.asarray(f(x, d))
    want = _dnnl._numpy_filter_grad(x, d, filt, pad)
    assert got.shape == want.shape == (fn, x_shape[-1], *filt)
    scale = np.max(np.abs(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * scale * np.sqrt(x_shape[0]))
    xla = np.asarray(jax.jit(lambda x, d: _dnnl.xla_filter_grad(x, d, filt, pad))(x, d))
    np.testing.assert_allclose(got, xla, rtol=0, atol=2e-6 * scale * np.sqrt(x_shape[0]))


def test_the_reference_equals_a_loop_over_taps_and_positions():
    """The reference itself, against the definition written out in loops."""
    x, d = _random((2, 4, 3, 2), 3, np.float64), _random((2, 4, 2, 3), 4, np.float64)
    filt, pad = (3, 2), (1, 0)
    xp = np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)))
    want = np.zeros((3, 2, 3, 2))
    for f in range(3):
        for c in range(2):
            for i in range(3):
                for j in range(2):
                    want[f, c, i, j] = np.sum(xp[:, i : i + 4, j : j + 2, c] * d[..., f])
    np.testing.assert_allclose(_dnnl._numpy_filter_grad(x, d, filt, pad), want, rtol=1e-12)


@needs_dnnl
def test_default_rule_s_gradients_equal_the_books_rule_in_float32():
    """DeepConvNet's conv4 (pad 2: one pixel padded before the kernel) through the default
    rule: dW, dx and db against the book's rule in float64."""
    x, W, b = _random((4, 32, 14, 14), 5), 0.2 * _random((32, 32, 3, 3), 6), _random((32,), 7)
    dout = _random((4, 32, 16, 16), 8)

    def vjp(rule, x, W, b):
        return jax.vjp(lambda x, W, b: rule(x, W, b, 1, 2), x, W, b)[1](dout.astype(x.dtype))

    assert TARGET in _lowered_text(lambda x, W, b: vjp(conv.convolution, x, W, b), x, W, b)
    got = jax.jit(lambda x, W, b: vjp(conv.convolution, x, W, b))(x, W, b)
    with jax.enable_x64(True):
        want = vjp(conv.convolution_book, *(np.float64(a) for a in (x, W, b)))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-5 * np.max(np.abs(w)))


def test_no_handler_for_other_dtypes_zero_sizes_or_other_platforms():
    x, d = _random((2, 5, 5, 4), 9), _random((2, 5, 5, 2), 10)

    def f(x, d):
        return _dnnl.filter_grad(x, d, (3, 3), (1, 1))

    with jax.enable_x64(True):
        assert TARGET not in _lowered_text(f, x.astype(np.float64), d.astype(np.float64))
    assert TARGET not in _lowered_text(f, x.astype(np.float16), d.astype(np.float16))
    assert TARGET not in _lowered_text(f, x[:0], d[:0])  # no images
    assert TARGET not in _lowered_text(f, x[..., :0], d)  # no channels
    for target in ("cuda", "tpu"):
        text = _lowered_text(f, x, d, platforms=(target,))
        assert TARGET not in text and "stablehlo.convolution" in text
    np.testing.assert_array_equal(jax.jit(f)(x[..., :0], d), np.zeros((2, 0, 3, 3)))


@needs_dnnl
def test_export_with_a_symbolic_batch_keeps_xla_s_convolution():
    (n,) = jax.export.symbolic_shape("n")
    specs = [jax.ShapeDtypeStruct((n, 6, 6, 4), jnp.float32)]
    specs.append(jax.ShapeDtypeStruct((n, 6, 6, 2), jnp.float32))
    fn = jax.jit(lambda x, d: _dnnl.filter_grad(x, d, (3, 3), (1, 1)))
    exported = jax.export.export(fn)(*specs)
    assert TARGET not in exported.mlir_module()
    x, d = _random((2, 6, 6, 4), 11), _random((2, 6, 6, 2), 12)
    want = _dnnl._numpy_filter_grad(x, d, (3, 3), (1, 1))
    np.testing.assert_allclose(exported.call(x, d), want, atol=1e-4)


@needs_dnnl
def test_vmap_jvp_and_gradients_of_gradients_equal_xla_s():
    """vmap runs the handler once per example; its JVP (for a gradient of the rule's
    backward) is XLA's convolution, bilinear in x and dout."""
    xs, ds = _random((3, 2, 6, 6, 4), 13), _random((3, 2, 6, 6, 5), 14)
    filt, pad = (3, 3), (1, 1)
    batched = jax.jit(jax.vmap(lambda x, d: _dnnl.filter_grad(x, d, filt, pad)))(xs, ds)
    for x, d, got in zip(xs, ds, batched, strict=True):
        np.testing.assert_allclose(got, _dnnl._numpy_filter_grad(x, d, filt, pad), atol=1e-4)
    x, d, tx, td = xs[0], ds[0], xs[1], ds[1]
    _, tangent = jax.jvp(lambda x, d: _dnnl.filter_grad(x, d, filt, pad), (x, d), (tx, td))
    want = _dnnl._numpy_filter_grad(tx, d, filt, pad) + _dnnl._numpy_filter_grad(x, td, filt, pad)
    np.testing.assert_allclose(tangent, want, atol=1e-4)

    def loss(x):
        return jnp.sum(_dnnl.filter_grad(x, d, filt, pad) ** 2)

    hessian_vector = jax.jit(lambda x: jax.jvp(jax.grad(loss), (x,), (tx,))[1])(x)
    with jax.enable_x64(True):
        x64, d64, t64 = (np.float64(a) for a in (x, d, tx))

        def loss64(x):
            return jnp.sum(_dnnl.xla_filter_grad(x, d64, filt, pad) ** 2)

        want = jax.jvp(jax.grad(loss64), (x64,), (t64,))[1]
    np.testing.assert_allclose(hessian_vector, want, rtol=0, atol=1e-4 * np.max(np.abs(want)))


@needs_dnnl
def test_calls_from_several_threads_at_once_give_each_its_own_result():
    """One plan per geometry, shared: calls from four threads run one at a time on it."""
    f = jax.jit(lambda x, d: _dnnl.filter_grad(x, d, (3, 3), (1, 1)))
    cases = [(_random((8, 10, 10, 4), 20 + k), _random((8, 10, 10, 6), 40 + k)) for k in range(4)]
    got = [None] * 4

    def work(k):
        for _ in range(5):
            got[k] = np.asarray(f(*cases[k]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for (x, d), g in zip(cases, got, strict=True):
        np.testing.assert_allclose(g, _dnnl._numpy_filter_grad(x, d, (3, 3), (1, 1)), atol=1e-4)


@needs_dnnl
def test_a_call_whose_buffers_do_not_match_the_plan_is_an_error_not_a_wrong_result():
    """The handler checks each call's buffers against its plan: a mismatch (here a call
    made by hand under another geometry's target) is an error JAX raises in the caller,
    with the target's name and both shapes."""
    x, d = _random((2, 6, 6, 4), 15), _random((2, 6, 6, 5), 16)
    name = _dnnl._target(x.shape, 5, (3, 3), (1, 1))
    wrong = jax.ffi.ffi_call(name, jax.ShapeDtypeStruct((5, 4, 3, 3), jnp.float32))
    with pytest.raises(Exception, match=f"{name}.*do not match"):
        jax.block_until_ready(jax.jit(wrong)(x[:1], d[:1]))


def test_the_ffi_structures_have_the_c_layout_of_the_headers_jax_ships():
    """Offsets of the fields the handler reads, as xla/ffi/api/c_api.h lays them out on
    x86-64 and aarch64 (LP64): checked once against the header with a C compiler."""
    frame = _ffi_abi._CallFrame
    assert (frame.stage.offset, frame.args.offset, frame.rets.offset) == (32, 40, 80)
    assert (frame.attrs.offset, frame.future.offset) == (120, 168)
    assert (_ffi_abi._Buffer.data.offset, _ffi_abi._Buffer.dims.offset) == (24, 40)
    assert _ffi_abi._Api.error_create.offset == 48
    assert _ffi_abi._Metadata.traits.offset == 32
    assert _ffi_abi._MetadataExtension.metadata.offset == 24


@needs_dnnl
def test_shard_map_over_one_device_runs_the_handler():
    x, d = _random((4, 6, 6, 3), 17), _random((4, 6, 6, 2), 18)
    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    f = jax.shard_map(
        lambda x, d: _dnnl.filter_grad(x, d, (3, 3), (1, 1)),
        mesh=mesh,
        in_specs=(P("batch"), P("batch")),
        out_specs=P(),
        check_vma=False,
    )
    assert TARGET in _lowered_text(f, x, d)
    want = _dnnl._numpy_filter_grad(x, d, (3, 3), (1, 1))
    np.testing.assert_allclose(jax.jit(f)(x, d), want, atol=1e-4)


@needs_dnnl
def test_opt_out_and_several_devices_keep_xla_s_kernel():
    assert _kernel_in_a_fresh_process({}, "_dnnl") == "onednn"
    assert _kernel_in_a_fresh_process({"FUNCNET_ONEDNN": "0"}, "_dnnl") == "xla"
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    assert _kernel_in_a_fresh_process({"XLA_FLAGS": flags}, "_dnnl") == "xla"


def test_a_library_that_does_not_load_warns_and_keeps_xla_s_kernel(monkeypatch, tmp_path):
    """A broken install is not a silent slowdown: a file that is not a library warns once,
    names it and why, and XLA's kernel runs."""
    fake = tmp_path / "libdnnl.so.3"
    fake.write_text("not a shared object")
    monkeypatch.setattr(_dnnl, "_library_candidates", lambda: [str(fake)])
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    _dnnl._library.cache_clear()
    _dnnl.available.cache_clear()
    try:
        with pytest.warns(UserWarning, match=r"filter gradient is not used: .*libdnnl\.so\.3"):
            assert not _dnnl.available()
        assert _dnnl.kernel() == "xla"
    finally:
        _dnnl._library.cache_clear()
        _dnnl.available.cache_clear()


@needs_dnnl
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_dout_at_the_border_gives_the_books_nonfinite_taps(bad):
    """oneDNN skips the padding; the book multiplies its zeros by dout (0·NaN = 0·inf =
    NaN): the taps that read padding where dout is not finite must be NaN, as in the
    reference, not finite numbers."""
    x = _random((2, 6, 7, 3), 30)
    d = _random((2, 6, 7, 4), 31)
    d[0, 0, 0, 1] = bad  # a corner: four of its nine taps read padding
    d[1, 5, 3, 2] = bad  # the bottom edge
    got = np.asarray(jax.jit(lambda x, d: _dnnl.filter_grad(x, d, (3, 3), (1, 1)))(x, d))
    want = _dnnl._numpy_filter_grad(x, d, (3, 3), (1, 1))
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], atol=1e-4)
    assert np.isnan(got[1, :, 0, 0]).all() and np.isfinite(got[0]).all()


def test_a_filter_gradient_of_the_wrong_geometry_is_a_clear_error():
    x, d = _random((2, 6, 6, 3), 32), _random((2, 6, 6, 4), 33)
    with pytest.raises(ValueError, match=r"dout has shape \(2, 6, 6, 4\), expected .* \(2, 4, 4\)"):
        _dnnl.filter_grad(x, d, (5, 5), (1, 1))


def _run_script(code: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )


@needs_dnnl
def test_a_script_that_ends_or_fails_while_a_step_runs_exits():
    """Once the interpreter finalizes, a handler can no longer take the GIL: the process
    used to hang joining XLA's threads. It waits for the running programs at exit."""
    setup = (
        "import jax, jax.numpy as jnp, numpy as np\n"
        "from jax import lax\n"
        "from funcnet import _dnnl\n"
        "x = jnp.ones((32, 16, 16, 8)); d = jnp.ones((32, 16, 16, 8))\n"
        "body = lambda i, c: c + _dnnl.filter_grad(x + c[0, 0, 0, 0], d, (3, 3), (1, 1))\n"
        "f = jax.jit(lambda: lax.fori_loop(0, 200, body, jnp.zeros((8, 8, 3, 3))))\n"
        "f().block_until_ready()\n"
        "r = f()\n"
    )
    ended = _run_script(setup + "print('dispatched')\n")
    assert ended.returncode == 0 and "dispatched" in ended.stdout, ended.stderr
    failed = _run_script(setup + "raise RuntimeError('a bug after dispatch')\n")
    assert failed.returncode == 1 and "a bug after dispatch" in failed.stderr


@needs_dnnl
def test_ctrl_c_during_small_steps_reaches_the_caller_as_keyboard_interrupt():
    """XLA runs a small program on the calling thread, so the handler runs on the main
    thread, where Python runs signal handlers: a Ctrl-C there used to become an XLA
    error, or an unset C return value and a crash (double free). It is deferred until the
    call returns, and every result before it is right."""
    code = (
        "import os, signal, threading, time, numpy as np, jax\n"
        "from funcnet import _dnnl\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)\n"
        "d = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)\n"
        "g = jax.jit(lambda x, d, s: _dnnl.filter_grad(x * s, d, (3, 3), (1, 1)))\n"
        "base = np.asarray(g(x, d, np.float32(1)))\n"
        "for k in range(3):\n"
        "    kill = lambda: os.kill(os.getpid(), signal.SIGINT)\n"
        "    threading.Timer(0.2 + 0.1 * k, kill).start()\n"
        "    n, start = 0, time.time()\n"
        "    try:\n"
        "        while time.time() - start < 10:\n"
        "            s = np.float32(1 + n % 7)\n"
        "            r = np.asarray(g(x, d, s)); n += 1\n"
        "            assert np.allclose(r, base * s, rtol=1e-4, atol=1e-4), n\n"
        "        print('no interrupt')\n"
        "    except KeyboardInterrupt:\n"
        "        print('interrupted after', n)\n"
    )
    done = _run_script(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("interrupted after") == 3, done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr and "INTERNAL" not in done.stderr
