"""Data parallelism with ``jax.sharding``: the same SGD step over every device.

A 1-D :class:`jax.sharding.Mesh` over the devices (axis ``"batch"``); the training data
and the params are replicated on every device, each minibatch is split along the mesh,
and XLA partitions the step: every device computes the gradient of its slice and the
gradients are averaged by an all-reduce that XLA inserts. Nothing here is home-made
distribution: it is one ``with_sharding_constraint`` on the minibatch.

Use it through :func:`funcnet.train.fit`'s ``mesh`` argument::

    fit(params, train, test, ..., mesh=funcnet.parallel.make_mesh())

On one CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (set before JAX is
imported) gives 8 devices to try it with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``"batch"`` over ``devices`` (default: all of ``jax.devices()``)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: no devices given")
    return Mesh(np.array(devices), (BATCH_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that puts a full copy of an array on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding that splits an array's leading (batch) axis across ``mesh``."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def check_batch_size(mesh: Mesh, batch_size: int, what: str = "batch_size") -> None:
    """Raise ``ValueError`` unless ``batch_size`` splits evenly over the mesh's devices."""
    devices = mesh.devices.size
    if batch_size % devices:
        raise ValueError(
            f"{what} {batch_size} does not divide evenly over {devices} devices; "
            f"use a multiple of {devices} (e.g. {devices * max(1, round(batch_size / devices))})"
        )


def shard_batch(loss_fn: Callable[..., Any], mesh: Mesh) -> Callable[..., Any]:
    """``loss_fn(params, x, t)`` with ``x`` and ``t`` split along the mesh's batch axis.

    Under ``jit``, XLA then computes each slice's part of the loss and of its gradient on
    its own device and sums them across devices; the params stay replicated.
    """
    sharding = batch_sharded(mesh)

    def sharded_loss(params, x, t):
        x = jax.lax.with_sharding_constraint(x, sharding)
        t = jax.lax.with_sharding_constraint(t, sharding)
        return loss_fn(params, x, t)

    return sharded_loss


def check_mesh(mesh: Any, batch_size: int, what: str = "batch_size") -> None:
    """Raise a clear error unless ``mesh`` is a 1-D :class:`Mesh` over which
    ``batch_size`` splits evenly (what ``fit(mesh=...)`` needs)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh (funcnet.parallel.make_mesh()), got "
            f"{type(mesh).__name__}"
        )
    if mesh.devices.ndim != 1:
        raise ValueError(
            f"mesh must be 1-D (one batch axis, funcnet.parallel.make_mesh()), got a "
            f"{mesh.devices.ndim}-D mesh of shape {dict(mesh.shape)}"
        )
    check_batch_size(mesh, batch_size, what)
