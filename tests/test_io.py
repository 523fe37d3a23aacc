"""funcnet.io: params pytrees to and from .npz, and the book's pickled weights, safely."""

import os
import pickle
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet.io import load_params, load_pickled_params, load_weights, save_params


def book_weights(dtype=np.float64):
    """Arrays with the shapes of the book's ch03/sample_weight.pkl."""
    rng = np.random.default_rng(0)
    shapes = {"W1": (784, 50), "b1": (50,), "W2": (50, 100), "b2": (100,)}
    shapes |= {"W3": (100, 10), "b3": (10,)}
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


def assert_same_tree(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert type(x) is type(y) or isinstance(y, np.ndarray)
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --------------------------------------------------------------------------------------
# save_params / load_params


def test_params_round_trip_keeps_structure_dtypes_and_values(tmp_path):
    params = {
        "W1": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b1": jnp.zeros(3, jnp.bfloat16),
        "layers": [{"W": np.ones((2, 2), np.float64), "mask": np.array([True, False])}],
        "pair": (np.int32(7), None, np.arange(3, dtype=np.uint8)),
        "lr": 0.1,
        "steps": 3,
        "by_index": {5: np.array([1 + 2j]), 2: np.ones(1)},
    }
    save_params(tmp_path / "p.npz", params)
    loaded = load_params(tmp_path / "p.npz")
    assert list(loaded) == list(params)  # key order kept
    assert list(loaded["by_index"]) == [5, 2]  # int keys stay ints
    assert isinstance(loaded["layers"], list) and isinstance(loaded["pair"], tuple)
    assert loaded["pair"][1] is None
    assert loaded["lr"] == 0.1 and type(loaded["lr"]) is float
    assert loaded["steps"] == 3 and type(loaded["steps"]) is int
    assert loaded["b1"].dtype == jnp.bfloat16
    assert loaded["pair"][0].dtype == np.int32
    assert_same_tree(
        jax.tree_util.tree_map(np.asarray, params), jax.tree_util.tree_map(np.asarray, loaded)
    )


def test_saved_params_are_a_plain_npz_named_by_path(tmp_path):
    save_params(tmp_path / "weights.npz", {"W1": np.ones((2, 3)), "net": {"b": np.zeros(2)}})
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as npz:
        assert {"params/W1", "params/net/b"} <= set(npz.files)
        assert npz["params/W1"].shape == (2, 3)


def test_save_params_writes_exactly_the_given_path(tmp_path):
    save_params(tmp_path / "weights.bin", {"W": np.ones(2)})
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_jax_arrays_come_back_equal(tmp_path, x64):
    key = jax.random.key(0)
    params = {"W": jax.random.normal(key, (3, 4), jnp.float64), "b": jnp.arange(4.0)}
    save_params(tmp_path / "p.npz", params)
    loaded = load_params(tmp_path / "p.npz")
    assert loaded["W"].dtype == np.float64
    np.testing.assert_array_equal(loaded["W"], np.asarray(params["W"]))


class Layer(NamedTuple):
    W: np.ndarray
    b: np.ndarray


def test_custom_pytree_nodes_need_a_template(tmp_path):
    params = [Layer(np.ones((2, 3)), np.zeros(3)), Layer(np.ones((3, 1)), np.zeros(1))]
    save_params(tmp_path / "p.npz", params)
    with pytest.raises(ValueError, match=r"load_params\(path, like=\.\.\.\)"):
        load_params(tmp_path / "p.npz")
    loaded = load_params(tmp_path / "p.npz", like=params)
    assert isinstance(loaded[1], Layer)
    assert_same_tree(params, loaded)


def test_an_optax_state_round_trips_with_a_template(tmp_path):
    opt = optax.adam(1e-3)
    state = opt.init({"W1": jnp.ones((2, 3)), "b1": jnp.zeros(3)})
    _, state = opt.update({"W1": jnp.ones((2, 3)), "b1": jnp.ones(3)}, state)
    save_params(tmp_path / "opt.npz", state)
    loaded = load_params(tmp_path / "opt.npz", like=state)
    assert_same_tree(jax.tree_util.tree_map(np.asarray, state), loaded)


def test_a_template_with_other_shapes_or_names_is_rejected(tmp_path):
    save_params(tmp_path / "p.npz", {"W": np.ones((2, 3))})
    with pytest.raises(ValueError, match=r"leaf 'W' .* shape \(2, 3\).* \(3, 2\)"):
        load_params(tmp_path / "p.npz", like={"W": np.ones((3, 2))})
    with pytest.raises(ValueError, match="has no leaf 'V'"):
        load_params(tmp_path / "p.npz", like={"V": np.ones((2, 3))})
    with pytest.raises(ValueError, match="has 1 leaves, the template 0"):
        load_params(tmp_path / "p.npz", like={})


def test_a_failed_save_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "p.npz"
    save_params(path, {"W": np.ones(2)})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="leaf 'W' is a str"):
        save_params(path, {"W": "not an array"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]  # no temporary file left


def test_colliding_leaf_names_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="two leaves of params get the name 'a/b'"):
        save_params(tmp_path / "p.npz", {"a/b": np.ones(1), "a": {"b": np.ones(1)}})


def test_object_arrays_are_not_params(tmp_path):
    with pytest.raises(ValueError, match="not a numeric array"):
        save_params(tmp_path / "p.npz", {"W": np.array([object()])})


def test_an_npz_without_structure_is_not_a_params_file(tmp_path):
    np.savez(tmp_path / "plain.npz", W=np.ones(2))
    with pytest.raises(ValueError, match="not a funcnet params file"):
        load_params(tmp_path / "plain.npz")


# --------------------------------------------------------------------------------------
# load_pickled_params


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_book_format_pickles_load_with_every_protocol(tmp_path, protocol):
    weights = book_weights(np.float32)
    weights["scale"] = np.float64(0.5)  # a NumPy scalar
    (tmp_path / "w.pkl").write_bytes(pickle.dumps(weights, protocol=protocol))
    loaded = load_pickled_params(tmp_path / "w.pkl")
    assert list(loaded) == list(weights)
    for k, v in weights.items():
        assert loaded[k].dtype == np.asarray(v).dtype and loaded[k].shape == np.shape(v)
        np.testing.assert_array_equal(loaded[k], v)


def test_a_python2_numpy_pickle_loads(tmp_path):
    # hand-written protocol-2 pickle as Python 2 / NumPy 1.x wrote it: {'W1': [1., 2.]},
    # byte strings as str (SHORT_BINSTRING), numpy.core.multiarray._reconstruct
    raw = np.array([1.0, 2.0], "<f8").tobytes()
    data = (
        b"\x80\x02}q\x00U\x02W1q\x01cnumpy.core.multiarray\n_reconstruct\nq\x02"
        b"cnumpy\nndarray\nq\x03K\x00\x85q\x04U\x01bq\x05\x87q\x06Rq\x07(K\x01K\x02\x85q\x08"
        b"cnumpy\ndtype\nq\x09U\x02f8q\x0aK\x00K\x01\x87q\x0bRq\x0c(K\x03U\x01<q\x0dNNN"
        b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0eb\x89U\x10" + raw + b"q\x0ftq\x10bs."
    )
    (tmp_path / "py2.pkl").write_bytes(data)
    loaded = load_pickled_params(tmp_path / "py2.pkl")
    np.testing.assert_array_equal(loaded["W1"], [1.0, 2.0])


class RunsCommand:
    """Unpickling an instance calls os.system(command): the classic malicious pickle."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_malicious_pickle_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = {"W1": np.ones(2), "b1": RunsCommand(f"touch {marker}")}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    # the payload is live: the standard unpickler would run the command
    assert b"system" in path.read_bytes()
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (posix|os|nt)\.system"):
        load_pickled_params(path)
    assert not marker.exists()


def test_the_crafted_pickle_really_would_execute(tmp_path):
    # proves the payload above is dangerous, so the refusal test can fail
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(RunsCommand(f"touch {marker}")))
    assert marker.exists()


@pytest.mark.parametrize(
    "module,name",
    [("builtins", "eval"), ("subprocess", "Popen"), ("numpy", "load"), ("builtins", "getattr")],
)
def test_any_other_global_is_refused(tmp_path, module, name):
    data = f"c{module}\n{name}\n(S'1'\ntR.".encode()  # protocol 0: module.name('1')
    (tmp_path / "g.pkl").write_bytes(data)
    with pytest.raises(pickle.UnpicklingError, match=f"refusing to load {module}.{name}"):
        load_pickled_params(tmp_path / "g.pkl")


def test_a_malicious_object_inside_an_object_array_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    array = np.empty(1, dtype=object)
    array[0] = RunsCommand(f"touch {marker}")
    (tmp_path / "obj.pkl").write_bytes(pickle.dumps({"W1": array}))
    with pytest.raises(pickle.UnpicklingError, match="system"):
        load_pickled_params(tmp_path / "obj.pkl")
    assert not marker.exists()


def test_object_arrays_and_non_dicts_are_not_weights(tmp_path):
    (tmp_path / "o.pkl").write_bytes(pickle.dumps({"W1": np.array([1, 2], dtype=object)}))
    with pytest.raises(ValueError, match="dtype object, not numeric"):
        load_pickled_params(tmp_path / "o.pkl")
    (tmp_path / "l.pkl").write_bytes(pickle.dumps([np.ones(2)]))
    with pytest.raises(ValueError, match="holds a list, expected a dict"):
        load_pickled_params(tmp_path / "l.pkl")


def test_a_truncated_pickle_is_an_unpickling_error(tmp_path):
    data = pickle.dumps(book_weights())
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(pickle.UnpicklingError, match="cut.pkl"):
        load_pickled_params(tmp_path / "cut.pkl")


def test_load_weights_picks_the_format_by_suffix(tmp_path):
    weights = book_weights()
    (tmp_path / "w.pkl").write_bytes(pickle.dumps(weights))
    save_params(tmp_path / "w.npz", weights)
    for name in ("w.pkl", "w.npz"):
        loaded = load_weights(tmp_path / name)
        np.testing.assert_array_equal(loaded["W2"], weights["W2"])
