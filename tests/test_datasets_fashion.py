"""Fashion-MNIST, full size, on the real files of Debian's dataset-fashion-mnist package.

The data is loaded once per module (in a temporary cache). Without the package these
tests skip with a message naming it.
"""

import gzip
import hashlib
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from funcnet import datasets
from funcnet.datasets import specs

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

pytestmark = pytest.mark.skipif(
    not all((DEBIAN_DIR / f.filename).is_file() for f in specs.FASHION_MNIST.files),
    reason=f"needs Debian's dataset-fashion-mnist package ({DEBIAN_DIR}): "
    "sudo apt-get install dataset-fashion-mnist",
)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Module-wide temporary cache and data dirs; downloads disabled."""
    root = tmp_path_factory.mktemp("fashion")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNCNET_CACHE_DIR", str(root / "cache"))
        mp.setenv("FUNCNET_DATA_DIR", str(root / "data"))
        mp.setenv("FUNCNET_OFFLINE", "1")
        yield root


@pytest.fixture(scope="module")
def fashion(env):
    """The default load (normalized, flattened, integer labels), done once."""
    return datasets.load("fashion-mnist")


@pytest.fixture(scope="module")
def fashion_u8(fashion):
    """A second load (from the cache): uint8, not flattened, one-hot labels."""
    return datasets.load_fashion_mnist(normalize=False, flatten=False, one_hot_label=True)


def test_fashion_shapes_and_dtypes(fashion):
    (x, t), (xt, tt) = fashion.train, fashion.test
    assert x.shape == (60000, 784) and x.dtype == np.float32
    assert t.shape == (60000,) and t.dtype == np.int32
    assert xt.shape == (10000, 784) and xt.dtype == np.float32
    assert tt.shape == (10000,) and tt.dtype == np.int32
    assert fashion.name == "fashion-mnist" and fashion.notice is None
    assert fashion.class_names == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip


def test_fashion_has_6000_per_class_in_train_and_1000_in_test(fashion):
    np.testing.assert_array_equal(np.bincount(fashion.train[1]), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(fashion.test[1]), [1000] * 10)


def test_fashion_first_test_labels_are_the_published_ones(fashion):
    # the first test images are an ankle boot, a pullover, two trousers, a shirt
    # (Fashion-MNIST's README / Keras tutorial)
    np.testing.assert_array_equal(fashion.test[1][:5], [9, 2, 1, 1, 6])


def test_debian_files_match_the_payload_checksums(env):
    for f in specs.FASHION_MNIST.files:
        data = gzip.decompress((DEBIAN_DIR / f.filename).read_bytes())
        assert hashlib.md5(data).hexdigest() == f.md5, f.filename


def test_fashion_options_flatten_false_and_one_hot(fashion, fashion_u8):
    (x, t), (xt, tt) = fashion_u8
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.uint8
    assert xt.shape == (10000, 1, 28, 28)
    assert t.shape == (60000, 10) and t.dtype == np.float32
    np.testing.assert_array_equal(t.argmax(axis=1), fashion.train[1])
    np.testing.assert_array_equal(tt.argmax(axis=1), fashion.test[1])
    np.testing.assert_array_equal(t.sum(axis=1), 1.0)


def test_fashion_normalization_is_uint8_divided_by_255(fashion, fashion_u8):
    x_u8 = fashion_u8[1][0].reshape(10000, 784)
    np.testing.assert_array_equal(fashion.test[0], x_u8.astype(np.float32) / np.float32(255))
    assert fashion.train[0].min() == 0.0 and fashion.train[0].max() == 1.0


def test_fashion_load_makes_no_float64_copy(fashion):
    # a float64 copy of the train images alone would be 60000*784*8 bytes = 376 MB
    tracemalloc.start()
    try:
        datasets.load("fashion-mnist")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    float32_output = 70000 * 784 * 4  # what the result itself needs (220 MB)
    assert peak < 70000 * 784 * 8 * 0.9
    assert peak >= float32_output  # the measurement does see NumPy's buffers


def test_a_corrupted_copy_is_rejected_naming_the_file(env, tmp_path):
    name = specs.FASHION_MNIST.test_labels.filename
    data = bytearray(gzip.decompress((DEBIAN_DIR / name).read_bytes()))
    data[8] = (data[8] + 1) % 10  # one label changed: valid IDX, wrong data
    (tmp_path / name).write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(ValueError, match=f"{tmp_path / name}: checksum mismatch"):
        datasets.load_fashion_mnist(data_dir=tmp_path)


def test_a_recompressed_copy_is_accepted(fashion, tmp_path):
    name = specs.FASHION_MNIST.test_labels.filename
    recompressed = gzip.compress(gzip.decompress((DEBIAN_DIR / name).read_bytes()), 1, mtime=0)
    assert recompressed != (DEBIAN_DIR / name).read_bytes()
    (tmp_path / name).write_bytes(recompressed)
    assert datasets.locate(specs.FASHION_MNIST, tmp_path)[3].path == tmp_path / name
    (_, _), (_, tt) = datasets.load_fashion_mnist(data_dir=tmp_path)
    np.testing.assert_array_equal(tt, fashion.test[1])


def test_files_in_the_data_dir_take_precedence_over_debians(env, tmp_path):
    shutil.copy(DEBIAN_DIR / specs.FASHION_MNIST.train_labels.filename, tmp_path)
    found = datasets.locate(specs.FASHION_MNIST, tmp_path)
    assert [s.path.parent for s in found] == [DEBIAN_DIR, tmp_path, DEBIAN_DIR, DEBIAN_DIR]
