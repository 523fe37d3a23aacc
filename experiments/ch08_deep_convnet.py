"""The book's ch8 ``misclassified_mnist.py`` and ``train_deepnet.py``: DeepConvNet's
inference with given weights, and its misclassified test images (Fig. 8-3).

DeepConvNet (:func:`funcnet.nets.convnet.deep_convnet_predict`): six 3×3 convolutions
(16, 16, 32, 32, 64, 64 filters) with ReLU, a 2×2 max pool after every second, affine 50,
ReLU, dropout 0.5, affine 10, dropout 0.5. ``--params`` names the weights (the book's
``ch08/deep_convnet_params.pkl`` or a ``params.npz``); ``--train`` trains them first with
the book's protocol (Adam lr 0.001, batch 100, ``--epochs`` epochs, dropout masks from the
run's key, accuracy on 1,000 sampled images per epoch) and saves ``params.npz``: a long
run on two CPU cores (see the README for the measured time); ``--checkpoint FILE`` saves
the whole training state every epoch and resumes from it after an interruption (Ctrl-C
exits with status 130 after the last epoch's checkpoint), ending with the same weights.

Inference runs over the whole test set in batches of ``--batch`` and prints the
accuracy and the images per second; ``misclassified.png`` shows the first 20
misclassified test images with prediction / truth (the book's Fig. 8-3), and
``metrics.json`` the numbers. Output: ``--out`` (default ``runs/ch08_deep_convnet/DATASET``).

Run: ``python -m experiments.ch08_deep_convnet --params deep_convnet_params.pkl`` or
``python -m experiments.ch08_deep_convnet --train --dataset fashion-mnist``.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common, _distributed
from funcnet import optimizers
from funcnet._compile import compile_program
from funcnet.nets import convnet
from funcnet.train import fit

NAME = "ch08_deep_convnet"
EVAL_SAMPLE = 1000
"""Images of each set that the per-epoch evaluations measure (the book's
``evaluate_sample_num_per_epoch``); the final accuracies take every image."""


def parse_args(argv):
    p = _common.parser(NAME, __doc__)
    p.add_argument(
        "--params", type=_common.weights_file, default=None, help="weights (.pkl or .npz)"
    )
    p.add_argument("--train", action="store_true", help="train the weights first")
    p.add_argument("--epochs", type=_common.positive_int, default=20, help="with --train")
    p.add_argument("--train-size", type=_common.positive_int, default=None, help="with --train")
    p.add_argument("--test-size", type=_common.positive_int, default=None)
    p.add_argument("--batch", type=_common.positive_int, default=200, help="inference batch")
    p.add_argument("--seed", type=_common.seed, default=0)
    p.add_argument(
        "--checkpoint",
        type=_common.checkpoint_file,
        default=None,
        help="with --train: save the training state here every epoch, resume from it if it exists",
    )
    _common.add_dataset_flag(p)
    _common.add_out_flag(p, NAME, per_dataset=True)
    _distributed.add_flag(p)
    args = p.parse_args(argv)
    if args.distributed and not args.train:
        p.error("argument --distributed: only with --train (inference runs in one process)")
    if args.params is None and not args.train:
        p.error("pass --params PATH (the book's deep_convnet_params.pkl) or --train")
    if args.params is not None and args.train:
        p.error("argument --params: not with --train (training starts from He init)")
    if args.checkpoint is not None and not args.train:
        p.error("argument --checkpoint: only with --train")
    return args


def load_params(path: Path, flag: str = "--params") -> dict:
    """The book's DeepConvNet weights from ``path`` (``.pkl`` or ``.npz``), as float32.

    Raises:
        ValueError: not such weights (:func:`experiments._common.load_net_weights`: a
            checkpoint, keys missing, not float arrays), or of other shapes (named).
    """
    params = _common.load_net_weights(path, flag, "DeepConvNet", convnet.DEEP_CONVNET_KEYS)
    expected = jax.eval_shape(convnet.init_deep_convnet, jax.random.key(0))
    wrong = [
        f"{k} {np.shape(params[k])} (expected {expected[k].shape})"
        for k in convnet.DEEP_CONVNET_KEYS
        if np.shape(params[k]) != expected[k].shape
    ]
    if wrong:
        raise ValueError(
            f"{path}: not the book's DeepConvNet for 1x28x28 images: {', '.join(wrong)}"
        )
    return {k: jnp.asarray(params[k], jnp.float32) for k in convnet.DEEP_CONVNET_KEYS}


def _print_history(history, n_train: int, n_test: int) -> None:
    """The per-epoch accuracies, each labelled with the images it was measured on."""
    sizes = _common.sample_label(n_train, n_test)
    for it, a, b in zip(history.eval_iteration, history.train_acc, history.test_acc, strict=True):
        print(f"after iteration {int(it):,}: train acc {a:.4f}, test acc {b:.4f} ({sizes})")


def train(args, x_train, t_train, x_test, t_test, writer: bool = True) -> tuple[dict, dict]:
    """The book's train_deepnet.py protocol through funcnet.train.fit (stateful form:
    the dropout masks come from the iteration's key)."""
    init_key, run_key = jax.random.split(jax.random.key(args.seed))
    params0 = convnet.init_deep_convnet(init_key, input_dim=x_train.shape[1:])

    def loss(params, model_state, x, t, key):
        return convnet.deep_convnet_loss(params, x, t, key), model_state

    def predict(params, model_state, x):
        return convnet.deep_convnet_predict(params, x)

    start = time.perf_counter()
    (params, _), history = fit(
        params0,
        (x_train, t_train),
        (x_test, t_test),
        key=run_key,
        loss_fn=loss,
        predict_fn=predict,
        model_state={},
        optimizer=optimizers.adam(0.001),
        epochs=args.epochs,
        eval_sample=EVAL_SAMPLE,
        eval_batch_size=200,  # 200 ran 30% more images/s than 500 on 2 CPU cores
        checkpoint_path=args.checkpoint,
        # a checkpoint of a run with another seed, data set, ... is refused, naming them
        checkpoint_settings=(
            _common.settings_of(args, ignore=("batch",)) if args.checkpoint else None
        ),
    )
    seconds = time.perf_counter() - start
    if writer:  # the other processes hold the same figures
        _print_history(history, min(EVAL_SAMPLE, len(x_train)), min(EVAL_SAMPLE, len(x_test)))
        print(
            f"final train acc {history.final_train_acc:.4f}, test acc "
            f"{history.final_test_acc:.4f} (all {len(x_train):,} and {len(x_test):,} images)"
        )
        print(f"trained {history.iterations:,} iterations in {seconds:.0f} s")
    return params, {
        "train_seconds": seconds,
        "train_iterations": history.iterations,
        "final_train_acc": history.final_train_acc,
        "final_test_acc": history.final_test_acc,
    }


def infer(params: dict, x: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    """Scores of x (N, 10) and the images per second: one program per batch size (``batch``
    and a shorter last one), compiled as fit compiles its evaluations, before the timing."""
    if len(x) == 0:
        raise ValueError("infer: x holds no images (N = 0)")
    batches = [x[i : i + batch] for i in range(0, len(x), batch)]
    programs = {}
    for xb in batches:  # at most two sizes: batch and a shorter last one
        if len(xb) not in programs:
            programs[len(xb)] = compile_program(convnet.deep_convnet_predict, params, xb)
            jax.block_until_ready(programs[len(xb)](params, xb))  # warm, outside the timing
    start = time.perf_counter()
    scores = [np.asarray(programs[len(xb)](params, xb)) for xb in batches]
    return np.concatenate(scores), len(x) / (time.perf_counter() - start)


def plot_misclassified(images, predicted, true, class_names, path: Path, title: str) -> Path:
    """Up to 20 images in rows of 5, each titled "prediction / truth" (the book's Fig. 8-3)."""
    rows = max(1, -(-len(images) // 5))
    fig = _common.figure(width=8.5, height=1.9 * rows + 0.5)
    fig.suptitle(title)
    axes = np.atleast_2d(fig.subplots(rows, 5))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(np.asarray(images[i]).reshape(28, 28), cmap="gray_r")
            ax.set_title(
                f"{class_names[int(predicted[i])]} / {class_names[int(true[i])]}",
                fontsize=9,
                color="red",
            )
    return _common.save(fig, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    writer = _distributed.start(args)  # False in the processes other than process 0
    data = _common.load_dataset(args.dataset, data_dir=args.data_dir, flatten=False)
    out = _common.run_dir(args.out, NAME, data.name, args) if writer else None
    data = _common.first_examples(data, args.train_size, args.test_size)
    (x_train, t_train), (x_test, t_test) = data.train, data.test
    metrics: dict = {"dataset": data.name}
    if args.train:
        params, metrics["training"] = train(args, x_train, t_train, x_test, t_test, writer)
        if not writer:  # the same params as process 0, which tests and writes them
            return metrics
        _common.save_params(out / "params.npz", params)
    else:
        params = load_params(args.params)
    scores, rate = infer(params, np.asarray(x_test, np.float32), args.batch)
    t_test = np.asarray(t_test)
    accuracy = _common.accuracy_of_scores(scores, t_test)  # NaN if any score is not finite
    if not np.isfinite(accuracy):
        bad = int(np.sum(~np.all(np.isfinite(scores), axis=1)))
        raise ValueError(
            f"the scores of {bad:,} of {t_test.size:,} test images are not finite (NaN or "
            f"inf): the weights {args.params or 'trained here'} are not usable; no accuracy"
        )
    predicted = scores.argmax(axis=1)
    wrong = np.flatnonzero(predicted != t_test)
    accuracy = 1.0 - wrong.size / t_test.size  # exactly; equal to the checked one when finite
    print(
        f"test accuracy {accuracy:.4f} ({t_test.size - wrong.size:,}/{t_test.size:,}), "
        f"{rate:,.0f} images/s"
    )
    if wrong.size:
        title = (
            f"DeepConvNet on {data.name}: {wrong.size} of {t_test.size:,} misclassified "
            "(prediction / truth)"
        )
        shown = wrong[:20]
        plot_misclassified(
            x_test[shown],
            predicted[shown],
            t_test[shown],
            data.class_names,
            out / "misclassified.png",
            title,
        )
    metrics.update(
        {
            "test_accuracy": accuracy,
            "misclassified": int(wrong.size),
            "test_size": int(t_test.size),
            "images_per_second": rate,
            "misclassified_indices": wrong[:100].tolist(),
        }
    )
    _common.write_json(out / "metrics.json", metrics)
    written = ["params.npz"] * args.train + ["misclassified.png"] * bool(wrong.size)
    written.append("metrics.json")
    print(f"wrote {', '.join(written)} to {out}")
    return metrics


if __name__ == "__main__":
    _common.run(main)
