"""The book's ch8 ``half_float_network.py``: the same inference in half precision.

The trained weights (``--params``: DeepConvNet's, e.g. the book's
``ch08/deep_convnet_params.pkl``, or ``--net simple`` with SimpleConvNet's, e.g.
``params.npz`` of ``ch07_train_convnet``) and the test images are cast to float32,
float16 and bfloat16, and the whole test set is classified in each (every layer then
computes in that precision: :mod:`funcnet.conv` and :mod:`funcnet.layers` keep their
inputs' dtype). Prints the accuracy in each precision, how many predictions differ from
float32's and the largest score difference; the book finds the accuracy unchanged in
float16. Writes ``metrics.json`` to ``--out`` (default
``runs/ch08_half_float_network/DATASET``).

Run: ``python -m experiments.ch08_half_float_network --params deep_convnet_params.pkl``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common
from funcnet.nets import convnet

NAME = "ch08_half_float_network"
DTYPES = ("float32", "float16", "bfloat16")
MAKERS = {  # the experiment whose params.npz each net uses by default, and its command
    "deep": ("ch08_deep_convnet", "python -m experiments.ch08_deep_convnet --train"),
    "simple": ("ch07_train_convnet", "python -m experiments.ch07_train_convnet"),
}
NETS = {
    "deep": (convnet.DEEP_CONVNET_KEYS, convnet.deep_convnet_predict),
    "simple": (convnet.SIMPLE_CONVNET_KEYS, convnet.simple_convnet_predict),
}


def parse_args(argv):
    p = _common.parser(NAME, __doc__)
    p.add_argument(
        "--params",
        type=_common.weights_file,
        default=None,
        help="weights (.pkl or .npz; default: the latest params.npz of ch08_deep_convnet "
        "--train, or with --net simple of ch07_train_convnet)",
    )
    p.add_argument("--net", choices=sorted(NETS), default="deep", help="default: deep")
    p.add_argument("--test-size", type=_common.positive_int, default=None)
    p.add_argument("--batch", type=_common.positive_int, default=500)
    _common.add_dataset_flag(p)
    _common.add_out_flag(p, NAME, per_dataset=True)
    return p.parse_args(argv)


def scores_in(dtype, params: dict, x: np.ndarray, predict, batch: int) -> np.ndarray:
    """Scores of x with params and x cast to ``dtype`` (computed in it), as float32."""
    p = {k: jnp.asarray(v, dtype) for k, v in params.items()}
    f = jax.jit(lambda p, xb: predict(p, xb).astype(jnp.float32))
    parts = [
        np.asarray(f(p, jnp.asarray(x[i : i + batch], dtype))) for i in range(0, len(x), batch)
    ]
    return np.concatenate(parts)


def main(argv=None) -> dict:
    args = parse_args(argv)
    keys, predict = NETS[args.net]
    args.params = _common.params_or_latest(args.params, *MAKERS[args.net])
    raw = _common.load_net_weights(args.params, "--params", f"{args.net} convnet", keys)
    params = {k: np.asarray(raw[k], np.float32) for k in keys}
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir, flatten=False)
    x, t = data.test
    if args.test_size:
        x, t = x[: args.test_size], t[: args.test_size]
    x, t = np.asarray(x, np.float32), np.asarray(t)
    # one folder per net: the deep and simple runs never share a metrics.json
    out = _common.claim(
        args.out or Path("runs") / NAME / data.name / args.net, NAME, args, data.name
    )
    results = {}
    reference = None
    for name in DTYPES:
        scores = scores_in(jnp.dtype(name), params, x, predict, args.batch)
        labels = scores.argmax(axis=1)
        if reference is None:
            reference = (scores, labels)
        finite = bool(np.all(np.isfinite(scores)))
        results[name] = {  # NaN when a score is not finite (never NaN's argmax counted)
            "accuracy": _common.accuracy_of_scores(scores, t),
            "predictions_changed": int(np.sum(labels != reference[1])),
            "max_abs_score_diff": float(np.max(np.abs(scores - reference[0]))),
            "finite": finite,
        }
        r = results[name]
        print(
            f"{name:<9} test acc {r['accuracy']:.4f}, {r['predictions_changed']} predictions "
            f"differ from float32, max |Δscore| {r['max_abs_score_diff']:.3g}"
            + ("" if finite else " (non-finite scores!)")
        )
    metrics = {"dataset": data.name, "net": args.net, "test_size": int(t.size), "results": results}
    _common.write_json(out / "metrics.json", metrics)
    return metrics


if __name__ == "__main__":
    _common.run(main)
