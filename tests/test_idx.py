"""read_idx / parse_idx: every validation branch, gzip and raw, on files the tests write."""

import gzip
import re

import numpy as np
import pytest

from funcnet.datasets.idx import parse_idx, read_idx


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array (magic from its ndim unless given)."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    dims = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return magic.to_bytes(4, "big") + dims + np.ascontiguousarray(array, np.uint8).tobytes()


def write(path, data: bytes, gz: bool):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)


@pytest.fixture
def labels():
    return np.random.default_rng(1).integers(0, 10, size=(7,), dtype=np.uint8)


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_read_idx_round_trips_images_and_labels(tmp_path, images, labels, gz):
    for name, array in (("img", images), ("lbl", labels)):
        got = read_idx(write(tmp_path / name, idx_bytes(array), gz))
        assert got.dtype == np.uint8
        assert got.shape == array.shape
        np.testing.assert_array_equal(got, array)
        got[0] = 0  # writable, like the book's arrays


def test_read_idx_tells_gzip_from_raw_by_content_not_name(tmp_path, labels):
    raw_named_gz = write(tmp_path / "raw.gz", idx_bytes(labels), gz=False)
    gz_named_raw = write(tmp_path / "compressed", idx_bytes(labels), gz=True)
    np.testing.assert_array_equal(read_idx(raw_named_gz), labels)
    np.testing.assert_array_equal(read_idx(gz_named_raw), labels)


def test_read_idx_accepts_a_multi_member_gzip(tmp_path, images):
    data = idx_bytes(images)
    path = tmp_path / "two-members.gz"
    path.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    np.testing.assert_array_equal(read_idx(path), images)


def raises_naming(path, *fragments):
    """pytest.raises(ValueError) whose message names the file and every fragment."""
    pattern = re.escape(str(path)) + ".*" + ".*".join(re.escape(f) for f in fragments)
    return pytest.raises(ValueError, match=re.compile(pattern, re.S))


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_read_idx_rejects_a_bad_magic_number(tmp_path, images, gz):
    data = bytearray(idx_bytes(images))
    data[0] = 0x1F  # not two zero bytes
    path = write(tmp_path / "bad-magic", bytes(data), gz)
    with raises_naming(path, "bad magic number"):
        read_idx(path)


def test_read_idx_rejects_an_unsupported_dimension_count(tmp_path, images):
    path = write(tmp_path / "2d", idx_bytes(images[0], magic=0x0802), gz=True)  # 2 dims
    with raises_naming(path, "bad magic number 2050", "2051", "2049"):
        read_idx(path)


@pytest.mark.parametrize("code,kind", [(0x0D, "float32"), (0x09, "signed byte")])
def test_read_idx_rejects_a_wrong_type_code(tmp_path, labels, code, kind):
    path = write(tmp_path / "typed", idx_bytes(labels, magic=(code << 8) | 1), gz=True)
    with raises_naming(path, f"wrong type code 0x{code:02x}", kind, "unsigned byte"):
        read_idx(path)


def test_read_idx_rejects_a_file_too_short_for_a_magic_number(tmp_path):
    path = write(tmp_path / "tiny", b"\0\0", gz=False)
    with raises_naming(path, "too short"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_read_idx_rejects_a_truncated_header(tmp_path, images, gz):
    path = write(tmp_path / "short-header", idx_bytes(images)[:10], gz)
    with raises_naming(path, "truncated header", "16 header bytes", "10 bytes"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_read_idx_rejects_truncated_data(tmp_path, images, gz):
    path = write(tmp_path / "truncated", idx_bytes(images)[:-1], gz)
    with raises_naming(path, "truncated", "7×28×28 = 5,488 bytes", "only 5,487"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_read_idx_rejects_extra_bytes_after_the_data(tmp_path, labels, gz):
    path = write(tmp_path / "padded", idx_bytes(labels) + b"\0\0\0", gz)
    with raises_naming(path, "3 extra bytes", "7 bytes of data"):
        read_idx(path)


def test_read_idx_rejects_a_broken_gzip_stream(tmp_path, images):
    compressed = gzip.compress(idx_bytes(images))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])  # an interrupted download
    with raises_naming(path, "not a valid gzip file"):
        read_idx(path)


def test_read_idx_reports_a_missing_file_as_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")


def test_parse_idx_returns_a_view_without_copying(images):
    buffer = np.frombuffer(bytearray(idx_bytes(images)), dtype=np.uint8)
    array = parse_idx(buffer, "buffer")
    assert np.shares_memory(array, buffer)
    np.testing.assert_array_equal(array, images)


def test_parse_idx_rejects_a_buffer_that_is_not_1d_uint8():
    with pytest.raises(ValueError, match="1-D uint8"):
        parse_idx(np.zeros((2, 8), np.uint8))


# --------------------------------------------------------------------------------------
# files of the wrong kind: reported as such, never as a truncated file of absurd size


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_a_labels_file_with_the_images_magic_is_a_wrong_magic_not_a_truncation(tmp_path, gz):
    labels = np.arange(60000) % 10  # MNIST-sized: its bytes read as dims give ~1e20 bytes
    path = write(tmp_path / "labels", idx_bytes(labels, magic=0x0803), gz)
    with raises_naming(
        path, "wrong magic number", "2051", "fit a labels file of 60,000 labels (magic 2049)"
    ):
        read_idx(path)
    with pytest.raises(ValueError) as info:
        read_idx(path)
    assert "truncated" not in str(info.value)


def test_an_images_file_with_the_labels_magic_is_a_wrong_magic(tmp_path, images):
    data = bytearray(idx_bytes(images))
    data[3] = 0x01  # labels' magic 2049 over an images file
    path = write(tmp_path / "images", bytes(data), gz=False)
    with raises_naming(path, "wrong magic number", "2049", "fit an images file of shape 7×28×28"):
        read_idx(path)


@pytest.mark.parametrize(
    "which,shape,fragments",
    [
        ("images", (7,), ("wrong kind of file", "magic number 2051", "images", "labels file")),
        ("labels", (7, 28, 28), ("wrong kind of file", "magic number 2049", "images file")),
    ],
)
def test_a_file_of_the_other_kind_is_named_when_the_shape_is_known(
    tmp_path, images, labels, which, shape, fragments
):
    array = images if which == "images" else labels
    path = write(tmp_path / which, idx_bytes(array), gz=True)
    with raises_naming(path, *fragments):
        read_idx(path, shape=shape)


def test_the_header_dims_are_checked_against_the_expected_shape_before_the_size(tmp_path):
    labels = np.arange(60000) % 10
    path = write(tmp_path / "labels", idx_bytes(labels, magic=0x0803), gz=False)
    # expected images: the magic's kind fits, the dims do not
    with raises_naming(path, "announces shape (60000, 66051, 67438087)", "(10000, 28, 28)"):
        read_idx(path, shape=(10000, 28, 28))


def test_read_idx_with_the_right_shape_reads_the_file(tmp_path, images):
    path = write(tmp_path / "ok", idx_bytes(images), gz=True)
    np.testing.assert_array_equal(read_idx(path, shape=(7, 28, 28)), images)
