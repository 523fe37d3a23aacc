"""Data-parallel fit over a device mesh: the same params as one device.

The 8-device run happens in a subprocess, because XLA's host device count is fixed when
JAX starts (XLA_FLAGS=--xla_force_host_platform_device_count=8).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from funcnet import nets, parallel, train

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from funcnet import nets, parallel, train

    assert len(jax.devices()) == 8, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.random((400, 20), dtype=np.float32)
    t = (x[:, :5].sum(axis=1) * 2).astype(np.int32) % 4
    net = nets.two_layer_net("relu")
    params = nets.init_two_layer_net(jax.random.key(1), 20, 16, 4, weight_init_std=0.1)

    def run(mesh, batch_size=40):
        return train.fit(
            params, (x[:300], t[:300]), (x[300:], t[300:]),
            key=jax.random.key(2), loss_fn=net.loss, predict_fn=net.predict,
            iters=60, batch_size=batch_size, lr=0.5, mesh=mesh,
        )

    single, h1 = run(None)
    sharded, h8 = run(parallel.make_mesh())
    out = {
        "max_diff": max(float(jnp.max(jnp.abs(single[k] - sharded[k]))) for k in single),
        "loss_diff": float(np.max(np.abs(h1.loss - h8.loss))),
        "first_loss": float(h8.loss[0]), "last_loss": float(h8.loss[-10:].mean()),
        "param_devices": len(sharded["W1"].sharding.device_set),
    }
    # The minibatch is really split: XLA averages the gradients with an all-reduce.
    grad = jax.jit(jax.grad(parallel.shard_batch(net.loss, parallel.make_mesh())))
    hlo = grad.lower(params, x[:40], t[:40]).compile().as_text()
    out["all_reduce"] = "all-reduce" in hlo
    try:
        run(parallel.make_mesh(), batch_size=36)
        out["error"] = None
    except ValueError as e:
        out["error"] = str(e)
    print("RESULT" + json.dumps(out))
    """
)


def test_eight_device_training_gives_the_same_params_as_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    assert out["max_diff"] < 1e-5, out
    assert out["loss_diff"] < 1e-5, out
    assert out["last_loss"] < out["first_loss"], out
    assert out["param_devices"] == 8
    assert out["all_reduce"]
    assert "batch_size 36 does not divide evenly over 8 devices" in out["error"]


def test_a_one_device_mesh_changes_nothing():
    rng = np.random.default_rng(0)
    x = rng.random((120, 6), dtype=np.float32)
    t = (x.sum(axis=1) > 3).astype(np.int32)
    net = nets.two_layer_net("relu")
    params = nets.init_two_layer_net(jax.random.key(1), 6, 8, 2, weight_init_std=0.1)
    common = dict(
        key=jax.random.key(2),
        loss_fn=net.loss,
        predict_fn=net.predict,
        iters=20,
        batch_size=10,
        lr=0.3,
    )
    plain, _ = train.fit(params, (x[:100], t[:100]), (x[100:], t[100:]), **common)
    meshed, _ = train.fit(
        params,
        (x[:100], t[:100]),
        (x[100:], t[100:]),
        mesh=parallel.make_mesh(jax.devices()[:1]),
        **common,
    )
    for k in plain:
        np.testing.assert_allclose(plain[k], meshed[k], rtol=1e-6, atol=1e-7)


def test_batch_size_must_divide_over_the_devices():
    mesh = parallel.make_mesh(jax.devices()[:1])
    parallel.check_batch_size(mesh, 7)  # one device: anything goes
    with pytest.raises(ValueError, match="no devices"):
        parallel.make_mesh([])
