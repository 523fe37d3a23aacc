"""``--distributed`` for the training experiments: join the other processes first.

Every process runs the same command; ``fit``/``fit_many`` then split the work over every
process's devices, and only process 0 writes (figures, metrics, params, checkpoints).
Start the processes with ``python -m funcnet.launch -n N -- python -m experiments.X
--distributed`` on one machine, or with the cluster's launcher (``srun``, ``mpirun``):
``jax.distributed.initialize`` finds its settings there or in ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``.
"""

from __future__ import annotations

import argparse


def add_flag(parser: argparse.ArgumentParser, writes: bool = True) -> None:
    """``--distributed``; ``writes``: the command writes outputs (process 0 does)."""
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="join the other processes of a distributed run first (jax.distributed: "
        "SLURM, Open MPI, Kubernetes or JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/"
        "JAX_PROCESS_ID; python -m funcnet.launch -n N -- ... starts N local ones); "
        "the work is split over every process's devices"
        + (" and process 0 writes the outputs" if writes else ""),
    )


def start(args: argparse.Namespace) -> bool:
    """Join the other processes if ``--distributed`` was given (before anything runs on a
    device). Returns True in the process that writes the outputs (process 0, or the only
    process)."""
    if not getattr(args, "distributed", False):
        return True
    import jax

    from funcnet import distributed

    distributed.initialize()
    me, count = jax.process_index(), jax.process_count()
    if me == 0:
        print(
            f"distributed: {count} processes, {len(jax.devices())} devices in all "
            f"({len(jax.local_devices())} here); process 0 writes the outputs",
            flush=True,
        )
    return me == 0
