"""funcnet.io: params pytrees to and from .npz, and the book's pickled weights, safely;
every kind of bad file gives one error type naming the file."""

import errno
import gzip
import json
import os
import pickle
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from funcnet.io import (
    ParamsFileError,
    WeightPickleError,
    load_params,
    load_pickled_params,
    load_weights,
    save_params,
)


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


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, np.int32])
def test_a_template_leaf_of_another_kind_of_dtype_is_rejected(tmp_path, dtype):
    # Complex weights went through a float template (the imaginary part later dropped).
    save_params(tmp_path / "p.npz", {"W": np.ones((2, 3), dtype)})
    with pytest.raises(ValueError, match=r"leaf 'W' .* has dtype \w+, but the template's is "):
        load_params(tmp_path / "p.npz", like={"W": np.ones((2, 3), np.float32)})


def test_a_template_accepts_another_float_precision(tmp_path):
    save_params(tmp_path / "p.npz", {"W": np.ones((2, 3), np.float64)})
    loaded = load_params(tmp_path / "p.npz", like={"W": jnp.ones((2, 3), jnp.bfloat16)})
    assert loaded["W"].dtype == np.float64


@pytest.mark.parametrize("dtype", [np.complex128, np.bool_])
def test_pickled_weights_must_be_real_numbers(tmp_path, dtype):
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"W1": np.ones((2, 2), dtype)}))
    with pytest.raises(ValueError, match=r"'W1' has dtype \w+, not real numbers"):
        load_pickled_params(path)


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


# --------------------------------------------------------------------------------------
# bad files: one error type, naming the file and what is wrong


def assert_clean_error(info, path, *fragments):
    """The error names the file and each fragment, is raised on its own (no chained
    zip/JSON/pickle error) and never points at unsafe loading."""
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    assert "allow_pickle" not in message
    error = info.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def write_npz(path, header, arrays=None):
    """An .npz with a hand-written structure record over the given arrays."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    arrays = {"params/W": np.ones((3, 2), np.float32)} if arrays is None else arrays
    np.savez(path, __funcnet_tree__=np.frombuffer(raw, np.uint8), **arrays)
    return path


def leaf(name="W", dtype="float32", **extra):
    return {"type": "leaf", "name": name, "dtype": dtype, **extra}


def header(tree):
    return {"format": "funcnet-params-v1", "tree": tree}


def one_key(node, key="W"):
    return {"type": "dict", "keys": [["str", key]], "children": [node]}


NOT_AN_ARCHIVE = {
    "empty": (lambda p: p.write_bytes(b""), "it is empty"),
    "text": (lambda p: p.write_text("W1 = 0.5\n"), "it is a text file"),
    "npy": (
        lambda p: np.save(p.with_suffix(".npy"), np.ones(3)) or p.with_suffix(".npy").rename(p),
        ".npy array",
    ),
    "pickle": (
        lambda p: p.write_bytes(pickle.dumps({"W": np.ones(2)}, protocol=4)),
        "load_pickled_params",
    ),
    "gzip": (lambda p: p.write_bytes(gzip.compress(b"data")), "gzip-compressed"),
    "binary": (lambda p: p.write_bytes(bytes(range(200, 256))), "starts with the bytes"),
}


@pytest.mark.parametrize("kind", sorted(NOT_AN_ARCHIVE))
def test_a_file_that_is_no_archive_is_named_for_what_it_is(tmp_path, kind):
    make, what = NOT_AN_ARCHIVE[kind]
    path = tmp_path / "weights.npz"
    make(path)
    with pytest.raises(ParamsFileError) as info:
        load_params(path)
    assert_clean_error(info, path, "is not a funcnet params file", what)
    with pytest.raises(ParamsFileError):
        load_weights(path)


def test_every_truncation_of_a_params_file_is_a_params_file_error(tmp_path):
    save_params(tmp_path / "good.npz", {"W1": np.arange(12.0).reshape(3, 4), "b1": np.ones(4)})
    data = (tmp_path / "good.npz").read_bytes()
    path = tmp_path / "cut.npz"
    for size in range(0, len(data), 37):
        path.write_bytes(data[:size])
        with pytest.raises(ParamsFileError) as info:
            load_params(path)
        assert_clean_error(info, path)
        if size > 4:  # it starts like an archive
            assert "truncated or damaged .npz archive" in str(info.value)


def test_a_changed_byte_is_an_error_or_changes_nothing(tmp_path):
    # the archive's CRCs cover data and structure: a flipped byte either breaks the file
    # (ParamsFileError) or hits metadata (a timestamp) and the values come back unchanged
    params = {"W1": np.arange(12.0).reshape(3, 4), "b1": np.ones(4, np.float32), "n": 3}
    save_params(tmp_path / "good.npz", params)
    data = (tmp_path / "good.npz").read_bytes()
    path, errors = tmp_path / "flip.npz", 0
    for pos in range(0, len(data), 7):
        flipped = bytearray(data)
        flipped[pos] ^= 0x5A
        path.write_bytes(bytes(flipped))
        try:
            loaded = load_params(path)
        except ParamsFileError as e:
            assert str(path) in str(e)
            errors += 1
            continue
        assert_same_tree(params, loaded)
    assert errors > len(data) // 7 // 2  # most positions are covered by a check


MALFORMED = {
    "invalid JSON": (b"{not json", None, "not valid JSON"),
    "JSON list": (b"[1, 2]", None, "a JSON list, not an object"),
    "unknown format": ({"format": "other-v9", "tree": leaf()}, None, "unknown format 'other-v9'"),
    "no tree": ({"format": "funcnet-params-v1"}, None, "has no tree"),
    "nested too deeply": (
        b'{"format": "funcnet-params-v1", "tree": '
        + b'{"type": "list", "children": [' * 3000
        + b"]}" * 3000
        + b"}",
        None,
        "nested too deeply",
    ),
    "unknown node": (header({"type": "set"}), None, "unknown node"),
    "leaf without dtype": (header({"type": "leaf", "name": "W"}), None, "without a name or dtype"),
    "dtype not numeric": (header(leaf(dtype="object")), None, "'object' is not a numeric dtype"),
    "dtype unknown": (header(leaf(dtype="nonsense")), None, "'nonsense' is not a numeric dtype"),
    "dtype other than the data's": (
        header(one_key(leaf(dtype="int8"))),
        None,
        "leaf 'W': the structure says dtype int8, but its data is float32 with shape (3, 2)",
    ),
    "shape other than the data's": (
        header(one_key(leaf(shape=[2, 3]))),
        None,
        "leaf 'W': the structure says shape (2, 3), but its data has shape (3, 2)",
    ),
    "python number over an array": (
        header(leaf(python="int")),
        None,
        "leaf 'W': the structure says a Python int, but its data is float32",
    ),
    "python type unknown": (header(leaf(python="str")), None, "unknown Python type 'str'"),
    "leaf without data": (header(one_key(leaf("V"), "V")), None, "no data for it"),
    "data without leaf": (
        header(leaf()),
        {"params/W": np.ones((3, 2), np.float32), "params/X": np.ones(1)},
        "arrays that its structure does not list: ['params/X']",
    ),
    "repeated leaf name": (
        header({"type": "list", "children": [leaf(), leaf()]}),
        None,
        "two leaves are named 'W'",
    ),
    "repeated dict key": (
        header(
            {"type": "dict", "keys": [["str", "a"], ["str", "a"]], "children": [leaf(), leaf("V")]}
        ),
        {"params/W": np.ones(1), "params/V": np.ones(1)},
        "repeated key",
    ),
    "keys and children differ": (
        header({"type": "dict", "keys": [], "children": [leaf()]}),
        None,
        "keys do not match its children",
    ),
    "an object array": (
        header(leaf()),
        {"params/W": np.array([None, 1], dtype=object)},
        "dtype object",
    ),
    "structure record not bytes": (None, {"__funcnet_tree__": np.ones(3)}, "not bytes"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_params_file_is_a_params_file_error_naming_what_is_wrong(tmp_path, case):
    head, arrays, fragment = MALFORMED[case]
    path = tmp_path / "p.npz"
    if head is None:
        np.savez(path, **arrays)
    else:
        write_npz(path, head, arrays)
    with pytest.raises(ParamsFileError) as info:
        load_params(path)
    assert_clean_error(info, path, fragment)


def test_a_file_without_recorded_shapes_still_loads(tmp_path):
    # files written before leaf shapes were recorded: dtype and data are still checked
    path = write_npz(tmp_path / "old.npz", header(one_key(leaf())))
    np.testing.assert_array_equal(load_params(path)["W"], np.ones((3, 2), np.float32))


def test_saved_records_hold_each_leafs_dtype_and_shape(tmp_path):
    save_params(tmp_path / "p.npz", {"W": jnp.zeros((2, 5), jnp.bfloat16)})
    with np.load(tmp_path / "p.npz") as npz:
        tree = json.loads(npz["__funcnet_tree__"].tobytes())["tree"]
    assert tree["children"][0] == leaf(dtype="bfloat16", shape=[2, 5])


def test_a_missing_or_unreadable_file_is_an_oserror_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"load_params: cannot read .*nope\.npz"):
        load_params(tmp_path / "nope.npz")
    with pytest.raises(IsADirectoryError, match="load_params: cannot read"):
        load_params(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"load_pickled_params: cannot read .*nope\.pkl"):
        load_pickled_params(tmp_path / "nope.pkl")


def test_a_read_error_starts_with_the_function_and_keeps_its_errno(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_params(tmp_path / "nope.npz")
    assert str(info.value) == f"load_params: cannot read {tmp_path / 'nope.npz'}: " + (
        "No such file or directory"
    )
    assert info.value.errno == errno.ENOENT
    with pytest.raises(IsADirectoryError) as info:
        load_pickled_params(tmp_path)
    assert str(info.value).startswith("load_pickled_params: cannot read")
    assert info.value.errno == errno.EISDIR


@pytest.mark.parametrize("function", [load_params, load_pickled_params, load_weights])
def test_a_path_of_the_wrong_type_is_a_type_error(function):
    with pytest.raises(TypeError, match=f"{function.__name__}: path must be a str or os.PathLike"):
        function(3)


def test_save_params_names_the_missing_folder_not_a_temporary_file(tmp_path):
    target = tmp_path / "no-such-folder" / "p.npz"
    with pytest.raises(FileNotFoundError) as info:
        save_params(target, {"W": np.ones(2)})
    message = str(info.value)
    assert f"save_params: cannot write {target}" in message
    assert f"the directory {target.parent} does not exist" in message
    assert ".tmp" not in message
    assert not target.parent.exists()


def test_save_params_onto_a_folder_or_under_a_file_says_so(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"save_params: {tmp_path} is a directory"):
        save_params(tmp_path, {"W": np.ones(2)})
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        save_params(tmp_path / "file" / "p.npz", {"W": np.ones(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no temporary file


NOT_A_PICKLE = {
    "empty": (lambda p: p.write_bytes(b""), "it is empty"),
    "text": (lambda p: p.write_text("not a pickle at all"), "it is a text file"),
    "npz": (lambda p: save_params(p, {"W": np.ones(2)}), "load it with load_params"),
    "npy": (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00" + b"{}" * 10), ".npy array"),
    "gzip": (lambda p: p.write_bytes(gzip.compress(pickle.dumps({}))), "gzip-compressed"),
    "truncated": (lambda p: p.write_bytes(pickle.dumps({"W": np.ones(9)})[:30]), "truncated"),
}


@pytest.mark.parametrize("kind", sorted(NOT_A_PICKLE))
def test_the_pickle_reader_given_a_non_pickle_says_so(tmp_path, kind):
    make, what = NOT_A_PICKLE[kind]
    path = tmp_path / "w.pkl"
    make(path)
    with pytest.raises(WeightPickleError) as info:
        load_pickled_params(path)
    assert_clean_error(info, path, "is not a valid weight pickle", what)
    assert isinstance(info.value, ParamsFileError)
    assert isinstance(info.value, pickle.UnpicklingError)  # as before: callers may catch it


def test_refused_pickles_and_non_dicts_are_params_file_errors(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"b1": RunsCommand("true")}))
    with pytest.raises(ParamsFileError, match="refusing to load"):
        load_pickled_params(path)
    (tmp_path / "l.pkl").write_bytes(pickle.dumps([np.ones(2)]))
    with pytest.raises(ParamsFileError, match="holds a list"):
        load_pickled_params(tmp_path / "l.pkl")
