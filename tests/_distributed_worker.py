"""One process of the distributed tests (tests/test_distributed.py): a tiny fit or
fit_many, its results written to ``OUT.<process>.npz`` by every process.

Run alone it is one process (``--devices 2`` gives it two CPU devices and a mesh over
them); under ``python -m funcnet.launch`` it joins the others first.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

# as a fresh terminal has them (a test runner's worker may pass SIGINT ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)

p = argparse.ArgumentParser()
p.add_argument("tasks", nargs="+", choices=["fit", "fit_1dev", "fit_shard", "fit_many", "fit_ckpt"])
p.add_argument("--out", required=True)
p.add_argument("--devices", type=int, default=1)
p.add_argument("--checkpoint", default=None, help="the checkpoint of the task fit_ckpt")
p.add_argument("--iters", type=int, default=24)
p.add_argument(
    "--differ", choices=["params", "lr"], help="process 1 starts from other params / lr 0.21"
)
p.add_argument("--die-at", type=int, default=None, help="process 1 SIGKILLs itself there")
p.add_argument("--stop-at", type=int, default=None, help="fit_ckpt: every process exits 3 there")
args = p.parse_args()

if args.devices > 1:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from funcnet import distributed, nets, parallel, train  # noqa: E402

if "JAX_NUM_PROCESSES" in os.environ:
    distributed.initialize()
me, count = jax.process_index(), jax.process_count()
try:
    import filelock  # noqa: F401
except ImportError:  # the cache's lock needs it; without it, every run compiles
    filelock = None
if os.environ.get("FUNCNET_TEST_COMPILATION_CACHE") and filelock is not None:
    # the test's runs share the programs they compile (JAX writes them from process 0,
    # every process reads them): one folder per process count; a size limit turns on
    # the cache's file lock, so that no process reads an entry another is writing
    folder = os.path.join(os.environ["FUNCNET_TEST_COMPILATION_CACHE"], str(count))
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", 2**30)
# one process with several devices: a mesh over them, except for the one-device tasks
many_devices = parallel.make_mesh() if count == 1 and args.devices > 1 else None

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 12)).astype(np.float32)
t = (x[:, :4].argmax(axis=1)).astype(np.int32)
x_test, t_test = x[:16] + 0.1, t[:16]
net = nets.two_layer_net("relu")


def rows(a: np.ndarray) -> np.ndarray:
    """This process's rows of ``a`` (process_data="shard")."""
    n = len(a) // count
    return a[me * n : (me + 1) * n]


def run_fit(process_data: str, mesh, checkpoint_path=None, stop_at=None) -> dict:
    init_key = jax.random.key(1 + (args.differ == "params" and me == 1))
    params = nets.init_two_layer_net(init_key, 12, 16, 4, weight_init_std=0.3)
    train_data, test_data = (x, t), (x_test, t_test)
    if process_data == "shard":
        train_data, test_data = (rows(x), rows(t)), (rows(x_test), rows(t_test))

    def callback(progress):
        if args.die_at is not None and me == 1 and progress.iteration >= args.die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if stop_at is not None and progress.iteration >= stop_at:
            sys.exit(3)  # every process stops after the checkpoint of this epoch

    params, history = train.fit(
        params,
        train_data,
        test_data,
        key=jax.random.key(2),
        loss_fn=net.loss,
        predict_fn=net.predict,
        iters=args.iters,
        batch_size=8,
        lr=0.21 if args.differ == "lr" and me == 1 else 0.2,
        eval_every=4,
        mesh=mesh,
        process_data=process_data,
        callback=callback,
        checkpoint_path=checkpoint_path,
    )
    return {
        **{f"params_{k}": np.asarray(v) for k, v in params.items()},
        **{k: getattr(history, k) for k in ("loss", "train_acc", "test_acc")},
    }


def run_fit_many() -> dict:
    runs = 4
    keys = jax.random.split(jax.random.key(3), runs)
    params = jax.vmap(lambda k: nets.init_two_layer_net(k, 12, 16, 4, weight_init_std=0.3))(keys)
    hparams = {"lr": np.asarray([0.05, 0.1, 0.2, 0.4], np.float32)}
    import optax

    params, history = train.fit_many(
        params,
        (x, t),
        (x_test, t_test),
        keys=keys,
        loss_fn=lambda hp: net.loss,
        predict_fn=net.predict,
        optimizer=lambda hp: optax.sgd(hp["lr"]),
        hparams=hparams,
        iters=args.iters,
        batch_size=8,
        eval_every=8,
    )
    return {
        **{f"params_{k}": np.asarray(v) for k, v in params.items()},
        **{k: getattr(history, k) for k in ("loss", "train_acc", "test_acc")},
    }


for task in args.tasks:
    if task == "fit_many":  # on one device in a one-process run
        result = run_fit_many()
    elif task == "fit_ckpt":
        result = run_fit("whole", many_devices, args.checkpoint, args.stop_at)
    else:
        mesh = None if task == "fit_1dev" else many_devices
        result = run_fit("shard" if task == "fit_shard" else "whole", mesh)
    np.savez(f"{args.out}.{task}.{me}.npz", **result)
    last = float(result["loss"][..., -1].mean())
    print(f"process {me} of {count}: {task} done, last loss {last:.6f}")
