"""funcnet.train: sampling, the SGD step, the book's loop in fit()."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet import datasets, nets, train
from funcnet.train.loop import step_counts

RELU = nets.two_layer_net("relu")


def _blobs(n, d=10, c=3, seed=0):
    """Linearly separable-ish synthetic classes: labels from a random linear map."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(k1, (n, d))
    t = jnp.argmax(x @ jax.random.normal(k2, (d, c)), axis=1).astype(jnp.int32)
    return np.asarray(x), np.asarray(t)


def _small_fit(**kwargs):
    x, t = _blobs(260)
    params = nets.init_two_layer_net(jax.random.key(1), 10, 8, 3, weight_init_std=0.3)
    options = dict(
        key=jax.random.key(2),
        loss_fn=RELU.loss,
        predict_fn=RELU.predict,
        iters=57,
        batch_size=16,
        lr=0.3,
    )
    options.update(kwargs)
    return train.fit(params, (x[:200], t[:200]), (x[200:], t[200:]), **options)


# --------------------------------------------------------------------------------------
# sample_batch, make_sgd_step


def test_sample_batch_draws_in_range_with_replacement_and_is_reproducible():
    idx = train.sample_batch(jax.random.key(0), 10, 1000)
    assert idx.shape == (1000,) and idx.dtype == jnp.int32
    assert int(idx.min()) == 0 and int(idx.max()) == 9
    counts = np.bincount(np.asarray(idx), minlength=10)
    assert counts.min() > 60  # every index drawn, about 100 times each
    small = train.sample_batch(jax.random.key(1), 5, 8)  # more draws than items: repeats
    assert len(set(np.asarray(small).tolist())) < 8
    assert np.array_equal(idx, train.sample_batch(jax.random.key(0), 10, 1000))
    assert not np.array_equal(idx, train.sample_batch(jax.random.key(2), 10, 1000))
    with pytest.raises(ValueError, match="batch_size >= 1"):
        train.sample_batch(jax.random.key(0), 10, 0)


def test_make_sgd_step_is_the_books_update():
    x, t = _blobs(20)
    params = nets.init_two_layer_net(jax.random.key(1), 10, 8, 3, weight_init_std=0.3)
    optimizer = optax.sgd(0.5)
    step = train.make_sgd_step(RELU.loss, optimizer)
    new, _, loss = step(params, optimizer.init(params), x, t)
    grads = RELU.gradient(params, x, t)
    np.testing.assert_allclose(loss, RELU.loss(params, x, t), rtol=1e-6)
    for k in params:
        np.testing.assert_allclose(new[k], params[k] - 0.5 * grads[k], rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------
# The book's schedule


@pytest.mark.parametrize(
    ("n", "batch_size", "expected"),
    [(60000, 100, 600), (4000, 100, 40), (50, 100, 1), (100, 100, 1), (4000, 128, 125)],
)
def test_iters_per_epoch_is_where_the_books_condition_fires(n, batch_size, expected):
    assert train.iters_per_epoch(n, batch_size) == expected
    # the book: i % max(n / batch_size, 1) == 0
    every = max(n / batch_size, 1)
    fired = [i for i in range(2000) if i % every == 0]
    assert fired == list(range(0, 2000, expected))


def test_segments_follow_the_books_evaluations():
    plan = train.segments(10000, 600)
    assert plan[0] == (0, 1, True) and plan[1] == (1, 600, True)
    assert plan[-1] == (9601, 399, False)
    assert sum(num for _, num, _ in plan) == 10000
    evaluated = [start + num - 1 for start, num, ev in plan if ev]
    assert evaluated == list(range(0, 10000, 600))  # 17 evaluations, as in the book
    assert train.segments(41, 40)[-1] == (1, 40, True)  # no empty tail
    assert train.segments(1, 40) == [(0, 1, True)]


def test_step_counts_are_int32_device_scalars_one_per_segment_length():
    counts = step_counts(train.segments(10000, 600))
    assert sorted(counts) == [1, 399, 600]
    for num, count in counts.items():
        assert isinstance(count, jax.Array) and count.dtype == jnp.int32 and count.shape == ()
        assert int(count) == num


# --------------------------------------------------------------------------------------
# fit


def test_fit_learns_real_digits_loss_falls_and_accuracy_far_above_chance():
    data = datasets.load("mnist-5k")
    params = nets.init_two_layer_net(jax.random.key(0), 784, 30, 10)
    params, history = train.fit(
        params,
        data.train,
        data.test,
        key=jax.random.key(1),
        loss_fn=RELU.loss,
        predict_fn=RELU.predict,
        iters=300,
        batch_size=50,
        lr=0.1,
    )
    assert history.loss.shape == (300,) and np.all(np.isfinite(history.loss))
    assert history.loss[:20].mean() > 2.0  # log(10) at the start
    assert history.loss[-50:].mean() < 0.6 * history.loss[:20].mean()
    # 4,000 / 50 = 80 iterations per epoch: evaluated after 0, 80, 160, 240
    assert history.eval_iteration.tolist() == [0, 80, 160, 240]
    assert history.train_acc[-1] > 0.8 and history.test_acc[-1] > 0.75  # chance: 0.1
    assert history.test_acc[0] < 0.5
    assert history.wall_time >= history.compile_time > 0
    assert history.iterations == 300


def test_fused_and_unfused_runs_from_the_same_key_give_the_same_params():
    fused_params, fused = _small_fit(fused=True)
    loop_params, loop = _small_fit(fused=False)
    for k in fused_params:
        np.testing.assert_allclose(fused_params[k], loop_params[k], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fused.loss, loop.loss, rtol=1e-6)
    np.testing.assert_array_equal(fused.train_acc, loop.train_acc)
    np.testing.assert_array_equal(fused.eval_iteration, loop.eval_iteration)
    # 200 / 16: every 25 iterations (evaluations after 0, 25, 50) and a 6-step tail
    assert fused.eval_iteration.tolist() == [0, 25, 50]
    other, _ = _small_fit(key=jax.random.key(3))
    assert not np.allclose(other["W1"], fused_params["W1"])


def test_fit_does_not_depend_on_where_evaluations_cut_the_loop():
    a, ha = _small_fit()
    b, hb = _small_fit(eval_every=7)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-6)
    assert hb.eval_iteration.tolist() == list(range(0, 57, 7))


def test_fit_compiles_once_however_many_epochs():
    """The loss is traced a fixed number of times: no retracing between epochs."""
    traces = []

    def counting_loss(params, x, t):
        traces.append(x.shape)
        return RELU.loss(params, x, t)

    _small_fit(loss_fn=counting_loss, iters=20)
    short = len(traces)
    traces.clear()
    _, history = _small_fit(loss_fn=counting_loss, iters=400)
    assert history.eval_iteration.size == 16
    assert len(traces) == short <= 3


def test_fit_reports_progress_after_every_segment():
    seen = []
    _, history = _small_fit(callback=seen.append)
    assert [p.iteration for p in seen] == [1, 26, 51, 57]
    assert [p.epoch for p in seen] == [0, 1, 2, None]
    assert [p.train_acc for p in seen[:3]] == pytest.approx(history.train_acc.tolist())
    assert [p.final for p in seen] == [False, False, False, True] and seen[-1].iters == 57
    assert seen[-1].loss == pytest.approx(float(history.loss[-1]))
    # the last call reports the returned params' accuracy, after iteration 57
    assert seen[-1].train_acc == pytest.approx(history.final_train_acc)
    assert seen[-1].test_acc == pytest.approx(history.final_test_acc)


def test_the_final_accuracies_are_those_of_the_returned_params():
    """The book's last evaluation is after iteration 50 here; the params have seen 57."""
    params, history = _small_fit()
    x, t = _blobs(260)
    assert history.final_iteration == history.iterations == 57
    assert history.eval_iteration[-1] == 50
    assert history.final_train_acc == pytest.approx(
        float(nets.accuracy(RELU.predict, params, x[:200], t[:200]))
    )
    assert history.final_test_acc == pytest.approx(
        float(nets.accuracy(RELU.predict, params, x[200:], t[200:]))
    )
    assert history.final_train_acc != history.train_acc[-1]  # it really moved after 50


def test_fit_accepts_one_hot_labels_numpy_params_and_another_optimizer():
    x, t = _blobs(260)
    onehot = np.eye(3, dtype=np.float32)[t]
    params = nets.init_two_layer_net(jax.random.key(1), 10, 8, 3, weight_init_std=0.3)
    common = dict(key=jax.random.key(2), loss_fn=RELU.loss, predict_fn=RELU.predict, iters=30)
    p1, h1 = train.fit(params, (x[:200], t[:200]), (x[200:], t[200:]), **common, lr=0.2)
    numpy_params = {k: np.asarray(v) for k, v in params.items()}  # e.g. from a .npz file
    p2, h2 = train.fit(
        numpy_params,
        (x[:200], onehot[:200]),
        (x[200:], onehot[200:]),
        **common,
        optimizer=optax.sgd(0.2),
    )
    for k in p1:
        np.testing.assert_allclose(p1[k], p2[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(h1.test_acc, h2.test_acc)
    p3, _ = train.fit(
        params, (x[:200], t[:200]), (x[200:], t[200:]), **common, optimizer=optax.adam(0.01)
    )
    assert not np.allclose(p3["W1"], p1["W1"])


def test_a_diverging_run_stops_at_the_end_of_the_epoch_and_keeps_everything():
    with pytest.raises(train.TrainingDiverged, match=r"not finite at iteration \d+") as info:
        _small_fit(lr=1000.0, iters=200)
    e = info.value
    history = e.history
    assert np.isfinite(history.loss[: e.iteration]).all()
    assert not np.isfinite(history.loss[e.iteration])
    # stopped at the end of the epoch holding the first non-finite loss (epochs of 25)
    assert history.iterations == 1 + 25 * math.ceil(e.iteration / 25)
    assert history.iterations < 200
    assert history.eval_iteration[-1] == history.iterations - 1
    # the last finite params are those of the previous evaluation point, exactly
    assert e.iteration > 0 and e.params_iteration == history.iterations - 25
    assert all(np.isfinite(v).all() for v in e.params.values())
    rerun, rerun_history = _small_fit(lr=1000.0, iters=e.params_iteration)
    for k in rerun:
        np.testing.assert_array_equal(rerun[k], e.params[k])
    np.testing.assert_array_equal(rerun_history.loss, history.loss[: e.params_iteration])
    # what the history calls final describes the params on the exception
    assert history.final_iteration == e.params_iteration
    x, t = _blobs(260)
    assert history.final_train_acc == pytest.approx(
        float(nets.accuracy(RELU.predict, e.params, x[:200], t[:200]))
    )


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_run_diverging_at_once_reports_the_initial_params_accuracy():
    def loss_fn(params, x, t):  # finite whatever the weights: the weights blow up first
        return jnp.tanh(jnp.mean(x @ params["W"]))

    def predict_fn(params, x):
        return x @ params["W"]

    x = np.ones((20, 3), np.float32)
    t = np.ones(20, np.int32)
    params = {"W": jnp.asarray([[1.0, 2.0]] * 3, jnp.float32)}  # predicts class 1: acc 1.0
    with pytest.raises(train.TrainingDiverged, match="iteration 0") as info:
        train.fit(
            params,
            (x, t),
            (x, t),
            key=jax.random.key(0),
            loss_fn=loss_fn,
            predict_fn=predict_fn,
            iters=30,
            batch_size=5,
            lr=1e39,
        )
    e = info.value
    assert e.params_iteration == 0 and e.history.final_iteration == 0
    np.testing.assert_array_equal(e.params["W"], params["W"])
    assert e.history.final_train_acc == e.history.final_test_acc == 1.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(iters=0), "fit: iters must be an integer >= 1"),
        (dict(batch_size=0), "fit: batch_size must be an integer >= 1"),
        (dict(eval_every=0), "fit: eval_every must be an integer >= 1"),
        (dict(train=(np.zeros((5, 10), np.float32), np.zeros(4, np.int32))), "same number"),
        (dict(test=(np.zeros((5, 11), np.float32), np.zeros(5, np.int32))), "differ in shape"),
        (dict(train=(np.zeros((5, 10), np.float32), np.full(5, 3, np.int32))), "label 3"),
        (dict(test=(np.zeros((5, 10), np.float32), np.zeros((5, 4)))), "one-hot"),
        (dict(train=np.zeros((5, 10))), "must be a pair"),
    ],
)
def test_fit_rejects_bad_settings_and_data_clearly(change, message):
    x, t = _blobs(20)
    args = dict(train=(x, t), test=(x, t))
    args.update({k: v for k, v in change.items() if k in args})
    options = {k: v for k, v in change.items() if k not in args}
    params = nets.init_two_layer_net(jax.random.key(1), 10, 8, 3)
    with pytest.raises(ValueError, match=message):
        train.fit(
            params,
            args["train"],
            args["test"],
            key=jax.random.key(0),
            loss_fn=RELU.loss,
            predict_fn=RELU.predict,
            **options,
        )


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_divergence_of_the_weights_alone_is_named_as_such():
    def loss_fn(params, x, t):  # finite loss whatever the weights: only W can overflow
        return jnp.tanh(jnp.mean(x @ params["W"]))

    def predict_fn(params, x):
        return x @ params["W"]

    x = np.ones((20, 3), np.float32)
    t = np.zeros(20, np.int32)
    params = {"W": jnp.ones((3, 2), jnp.float32)}
    with pytest.raises(train.TrainingDiverged, match="a weight was .every loss finite. not finite"):
        train.fit(
            params,
            (x, t),
            (x, t),
            key=jax.random.key(0),
            loss_fn=loss_fn,
            predict_fn=predict_fn,
            iters=3,
            batch_size=5,
            lr=1e40,
        )


def test_integer_one_hot_labels_get_a_clear_error():
    x = np.ones((20, 3), np.float32)
    t = np.eye(2, dtype=np.int64)[np.zeros(20, int)]
    net = nets.two_layer_net("relu")
    params = nets.init_two_layer_net(jax.random.key(1), 3, 4, 2)
    with pytest.raises(ValueError, match=r"one-hot train labels must be floating point, got int"):
        train.fit(
            params,
            (x, t),
            (x, t),
            key=jax.random.key(0),
            loss_fn=net.loss,
            predict_fn=net.predict,
            iters=3,
            batch_size=5,
        )


def _bad_fit(**change):
    x, t = _blobs(20)
    args = dict(
        params=nets.init_two_layer_net(jax.random.key(1), 10, 8, 3),
        train=(x, t),
        test=(x, t),
        key=jax.random.key(0),
        loss_fn=RELU.loss,
        predict_fn=RELU.predict,
        iters=3,
        batch_size=5,
    )
    args.update(change)
    return train.fit(args.pop("params"), args.pop("train"), args.pop("test"), **args)


_X, _T = _blobs(20)
_NAN_X = _X.copy()
_NAN_X[3, 4] = np.nan
_GOOD = nets.init_two_layer_net(jax.random.key(1), 10, 8, 3)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (dict(test=(_NAN_X, _T)), ValueError, r"fit: test x holds 1 non-finite value.*\(3, 4\)"),
        (dict(train=(_NAN_X, _T)), ValueError, r"fit: train x holds 1 non-finite"),
        (dict(lr="0.1"), TypeError, r"fit: lr must be a real number"),
        (dict(lr=float("nan")), ValueError, r"fit: lr must be a finite number"),
        (dict(lr=-0.1), ValueError, r"fit: lr must be > 0"),
        (dict(optimizer="sgd"), TypeError, r"fit: optimizer must be an optax"),
        (dict(params=None), TypeError, r"fit: params must be a pytree"),
        (dict(params=[1.0, 2.0]), TypeError, r"fit: params\[0\] must be an array"),
        (dict(params={k: v.astype(jnp.int32) for k, v in _GOOD.items()}), TypeError, "floating"),
        (
            dict(params={**_GOOD, "b1": _GOOD["b1"].at[2].set(jnp.nan)}),
            ValueError,
            r"fit: params\['b1'\] holds 1 non-finite value.*initial params must be finite",
        ),
        (dict(key=0), TypeError, r"fit: key must be a jax.random key"),
        (dict(iters=2.5), TypeError, r"fit: iters must be an integer"),
        (dict(batch_size="100"), TypeError, r"fit: batch_size must be an integer"),
        (dict(eval_batch_size=0), ValueError, r"fit: eval_batch_size must be an integer >= 1"),
        (dict(loss_fn=None), TypeError, r"fit: loss_fn must be a function"),
        (
            dict(predict_fn=lambda p, x: RELU.predict(p, x)[:, 0]),
            ValueError,
            r"predict_fn\(params, x\) must return scores \(N, C\); for x_train \(20, 10\) it "
            r"returns \(20,\)",
        ),
        (
            dict(params=nets.init_two_layer_net(jax.random.key(1), 11, 8, 3)),
            ValueError,
            r"\(20, 10\)",  # the caller's x, not a probe shape
        ),
        (dict(train=(_X.astype(np.int32), _T)), ValueError, r"fit: train x must be floating"),
        (dict(loss_fn=lambda p, x, t: RELU.loss(p, x, t) * jnp.ones(2)), ValueError, "scalar"),
    ],
)
def test_fit_names_the_argument_of_every_bad_input(change, error, message):
    with pytest.raises(error, match=message):
        _bad_fit(**change)


def test_fit_refuses_a_two_dimensional_mesh():
    from jax.sharding import Mesh

    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("a", "b"))
    with pytest.raises(ValueError, match="mesh must be 1-D"):
        _bad_fit(mesh=mesh)
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        _bad_fit(mesh="cpu")


def test_epochs_and_evaluation_on_a_sample_like_the_books_trainer():
    x, t = _blobs(260)
    seen = []
    params, history = train.fit(
        nets.init_two_layer_net(jax.random.key(1), 10, 8, 3, weight_init_std=0.3),
        (x[:200], t[:200]),
        (x[200:], t[200:]),
        key=jax.random.key(2),
        loss_fn=RELU.loss,
        predict_fn=RELU.predict,
        epochs=3,
        batch_size=20,
        eval_sample=30,
        callback=seen.append,
    )
    assert history.iterations == 30  # 3 epochs of 200 / 20
    assert history.eval_iteration.tolist() == [0, 10, 20]
    # per-epoch figures on the first 30 examples: multiples of 1/30
    assert np.allclose(np.round(history.train_acc * 30), history.train_acc * 30, atol=1e-4)
    full_train = float(nets.accuracy(RELU.predict, params, x[:200], t[:200]))
    full_test = float(nets.accuracy(RELU.predict, params, x[200:], t[200:]))
    assert history.final_train_acc == pytest.approx(full_train)  # final: the whole sets
    assert history.final_test_acc == pytest.approx(full_test)
    assert seen[-1].final and seen[-1].test_acc == pytest.approx(full_test)


# --------------------------------------------------------------------------------------
# The divergence checks on the host (fit's compiled program leaves them out)


_LOSS_CASES = {
    "finite": [0.5, 0.4, 0.3, 0.2],
    "nan first": [np.nan, 0.4, 0.3, 0.2],
    "inf middle": [0.5, np.inf, np.nan, 0.2],
    "-inf last": [0.5, 0.4, 0.3, -np.inf],
    "one step": [0.7],
}


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16, np.float32])
def test_the_host_checks_agree_with_the_device_checks(dtype):
    device = jax.jit(
        lambda losses, num, tree: (train.first_nonfinite(losses, num), train.all_finite(tree))
    )
    for name, values in _LOSS_CASES.items():
        losses = np.asarray(values, dtype)
        padded = np.concatenate([losses, np.full(6 - losses.size, np.nan, dtype)])  # past num
        first, _ = device(padded, np.int32(losses.size), {"W": np.ones(1, dtype)})
        assert train.loop.host_first_nonfinite(losses) == int(first), name
    for bad in (None, np.nan, np.inf, -np.inf):
        for leaf in ("W", "b"):  # a non-finite value in any leaf, anywhere in it
            tree = {"W": np.ones((3, 2), dtype), "b": np.zeros(2, dtype)}
            if bad is not None:
                tree[leaf].reshape(-1)[-1] = bad
            _, finite = device(np.zeros(6, dtype), np.int32(1), tree)
            assert train.loop.host_all_finite(tree) is bool(finite) is (bad is None), (bad, leaf)


# mid-epoch, and the very last step (the first segment: the test above)
@pytest.mark.parametrize(("fused", "blow_up"), [(True, 6), (True, 11), (False, 11)])
def test_a_weight_that_overflows_is_caught_where_no_loss_shows_it(fused, blow_up):
    # The loss stays finite (tanh) and the step size is 0 except at iteration `blow_up`,
    # which sends W to -inf: only the check of the weights after that segment sees it,
    # also after the last segment, where no later loss could.
    def loss_fn(params, x, t):
        return jnp.tanh(jnp.mean(x @ params["W"]))

    x = np.full((20, 3), 10.0, np.float32)
    t = np.zeros(20, np.int32)
    params = {"W": jnp.zeros((3, 2), jnp.float32)}
    optimizer = optax.sgd(lambda count: jnp.where(count == blow_up, 3e38, 0.0))
    with pytest.raises(train.TrainingDiverged, match=r"a weight was .every loss finite") as info:
        train.fit(
            params,
            (x, t),
            (x, t),
            key=jax.random.key(0),
            loss_fn=loss_fn,
            predict_fn=lambda p, x: x @ p["W"],
            iters=12,
            batch_size=5,  # epochs of 4: segments [0], [1-4], [5-8], [9-11]
            optimizer=optimizer,
            fused=fused,
        )
    e = info.value
    end = {6: 8, 11: 11}[blow_up]  # the last iteration of the segment
    assert e.iteration == end and e.history.iterations == end + 1
    assert np.isfinite(e.history.loss).all()
    assert e.params_iteration == {6: 5, 11: 9}[blow_up]
    np.testing.assert_array_equal(e.params["W"], params["W"])  # lr 0 before the blow-up


# --------------------------------------------------------------------------------------
# chunks: several segments in one call of fit's program

FIT_MODULE = importlib.import_module("funcnet.train.fit")


@pytest.fixture
def chunks_seen(monkeypatch):
    """The segment counts of fit's calls, with the chunk sizer's target far above any run
    here (after its first timed calls, each call runs as many segments as allowed)."""
    monkeypatch.setattr(FIT_MODULE._ChunkSizer, "TARGET_S", 1e9)
    seen = []
    finish = FIT_MODULE._Loop.finish

    def spy(self, chunk, state, outputs):
        seen.append(len(chunk))
        return finish(self, chunk, state, outputs)

    monkeypatch.setattr(FIT_MODULE._Loop, "finish", spy)
    return seen


def _one_segment_per_call(monkeypatch):
    monkeypatch.setattr(FIT_MODULE, "chunk_limit", lambda *args: 1)


def test_chunks_of_segments_give_exactly_what_one_segment_per_call_gives(chunks_seen, monkeypatch):
    progress = []
    params, history = _small_fit(eval_every=2, callback=progress.append)
    assert max(chunks_seen) > 1 and sum(chunks_seen) == 29  # [0] and 28 of 2 steps
    chunked = list(chunks_seen)
    chunks_seen.clear()
    _one_segment_per_call(monkeypatch)
    one_progress = []
    one_params, one_history = _small_fit(eval_every=2, callback=one_progress.append)
    assert chunks_seen == [1] * 29 != chunked
    for k in params:
        np.testing.assert_array_equal(params[k], one_params[k])
    for field in ("loss", "eval_iteration", "train_acc", "test_acc"):
        np.testing.assert_array_equal(getattr(history, field), getattr(one_history, field))
    assert history.final_train_acc == one_history.final_train_acc
    assert progress == one_progress and len(progress) == 29  # a callback per segment


def _diverged(run) -> train.TrainingDiverged:
    with pytest.raises(train.TrainingDiverged) as info:
        run()
    return info.value


def _same_divergence(a: train.TrainingDiverged, b: train.TrainingDiverged) -> None:
    assert str(a) == str(b)
    assert (a.iteration, a.params_iteration) == (b.iteration, b.params_iteration)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    for field in ("loss", "eval_iteration", "train_acc", "test_acc"):
        np.testing.assert_array_equal(getattr(a.history, field), getattr(b.history, field))
    assert a.history.final_train_acc == b.history.final_train_acc


def test_a_loss_diverging_inside_a_chunk_is_reported_as_one_segment_per_call_reports_it(
    chunks_seen, monkeypatch
):
    chunked = _diverged(lambda: _small_fit(lr=1000.0, iters=200, eval_every=3))
    assert max(chunks_seen) > 1  # the divergence was found in a chunk, then replayed
    _one_segment_per_call(monkeypatch)
    one = _diverged(lambda: _small_fit(lr=1000.0, iters=200, eval_every=3))
    _same_divergence(chunked, one)
    assert chunked.iteration > 0 and not np.isfinite(chunked.history.loss[chunked.iteration])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_weight_overflowing_inside_a_chunk_is_reported_as_one_segment_per_call_reports_it(
    chunks_seen, monkeypatch
):
    # the loss stays finite (tanh); the step size is 0 except at iteration 20, which sends
    # W to -inf: only the chunk's last params show it, and the replay finds the segment
    def run():
        x = np.full((20, 3), 10.0, np.float32)
        t = np.zeros(20, np.int32)
        return train.fit(
            {"W": jnp.zeros((3, 2), jnp.float32)},
            (x, t),
            (x, t),
            key=jax.random.key(0),
            loss_fn=lambda p, x, t: jnp.tanh(jnp.mean(x @ p["W"])),
            predict_fn=lambda p, x: x @ p["W"],
            iters=30,
            batch_size=5,
            eval_every=1,
            optimizer=optax.sgd(lambda count: jnp.where(count == 20, 3e38, 0.0)),
        )

    chunked = _diverged(run)
    assert max(chunks_seen) > 1
    _one_segment_per_call(monkeypatch)
    one = _diverged(run)
    _same_divergence(chunked, one)
    assert chunked.iteration == 20 and chunked.params_iteration == 20
    assert "a weight was (every loss finite)" in str(chunked)


def test_runs_that_save_checkpoints_call_one_segment_at_a_time(chunks_seen, tmp_path):
    _small_fit(eval_every=2, checkpoint_path=tmp_path / "run.ckpt")
    assert chunks_seen == [1] * 29  # every epoch saved, as documented


def test_the_chunk_limit_bounds_the_segments_and_the_losses_held():
    assert train.loop.chunk_limit(40, 249) == 64  # the ch5 loop
    assert train.loop.chunk_limit(40, 3) == 3
    assert train.loop.chunk_limit(10_000, 50) == 6  # at most 65,536 losses
    assert train.loop.chunk_limit(10**6, 5) == 1


def test_the_chunk_sizer_aims_at_its_target_from_the_measured_time():
    sizer = FIT_MODULE._ChunkSizer(64)
    assert sizer.size(40) == 1  # nothing measured yet
    sizer.step_s = 0.1 / 400  # 10 segments of 40 steps in the target
    assert sizer.size(40) == 10 and sizer.size(4000) == 1 and sizer.size(1) == 64
    assert FIT_MODULE._ChunkSizer(1).size(1) == 1
