"""What one all-reduce costs across processes: the collective that data-parallel ``fit``
adds to every step (XLA sums the processes' gradients).

Times a jitted sum over the processes of one float32 array the size of a net's gradient
(default: the ch5 784-50-10 net's 39,760 numbers) and prints the median per all-reduce.
Run it on several processes::

    python -m funcnet.launch -n 2 -- python -m experiments.distributed_allreduce --distributed

On one process it times the same program without a collective (the baseline).
"""

from __future__ import annotations

import argparse
import time

from experiments import _common, _distributed

NAME = "distributed_allreduce"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _common.parser(NAME, "Time one all-reduce of a gradient across the processes.")
    p.add_argument(
        "--size",
        type=_common.positive_int,
        default=784 * 50 + 50 + 50 * 10 + 10,
        help="float32 numbers summed (default: the ch5 net's 39,760 params)",
    )
    p.add_argument(
        "--reps", type=_common.positive_int, default=200, help="all-reduces per round (200)"
    )
    p.add_argument("--rounds", type=_common.positive_int, default=5, help="rounds (default 5)")
    _distributed.add_flag(p, writes=False)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    writer = _distributed.start(args)
    import jax
    import numpy as np

    from funcnet import distributed, parallel

    mesh = distributed.global_mesh()
    devices = mesh.devices.size
    local = np.ones((devices, args.size), np.float32)
    x = distributed.put(local, parallel.batch_sharded(mesh))
    total = jax.jit(lambda a: a.sum(axis=0), out_shardings=parallel.replicated(mesh))
    jax.block_until_ready(total(x))  # compiled, connections made
    medians = []
    for _ in range(args.rounds):
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            jax.block_until_ready(total(x))
            times.append(time.perf_counter() - t0)
        medians.append(float(np.median(times)))
    result = {
        "processes": jax.process_count(),
        "devices": devices,
        "floats": args.size,
        "ms_per_allreduce_median_of_rounds": 1e3 * float(np.median(medians)),
        "ms_per_allreduce_best_round": 1e3 * min(medians),
    }
    if writer:
        print(
            f"{jax.process_count()} process(es), {devices} device(s): sum of {args.size:,} "
            f"float32 over the devices: {result['ms_per_allreduce_best_round']:.3f} ms "
            f"(best round's median; median of rounds "
            f"{result['ms_per_allreduce_median_of_rounds']:.3f} ms)"
        )
    return result


if __name__ == "__main__":
    _common.run(main)
