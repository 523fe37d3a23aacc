"""One small description per IDX data set: files, payload digests, where to look, mirrors.

Every IDX data set (MNIST, Fashion-MNIST, ...) is four files: train and test images
(``(N, 28, 28)`` unsigned bytes, IDX magic 2051) and train and test labels (``(N,)``,
magic 2049). A data set is fully described by an :class:`IdxSpec`; the loader, the
downloader and the ``python -m funcnet.datasets`` command line work from these values
only, so adding a data set is adding one entry to :data:`SPECS`. For example KMNIST::

    KMNIST = IdxSpec(
        name="kmnist", title="Kuzushiji-MNIST",
        train_images=IdxFile("train-images-idx3-ubyte.gz", "<md5>", (60000, 28, 28)),
        train_labels=IdxFile("train-labels-idx1-ubyte.gz", "<md5>", (60000,)),
        test_images=IdxFile("t10k-images-idx3-ubyte.gz", "<md5>", (10000, 28, 28)),
        test_labels=IdxFile("t10k-labels-idx1-ubyte.gz", "<md5>", (10000,)),
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    )

Digests are MD5s of the *decompressed* file (IDX header and data), so a recompressed
copy of the same data (Debian recompresses Fashion-MNIST, people re-gzip MNIST) matches,
and any changed byte does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple


class IdxFile(NamedTuple):
    """One IDX file of a data set.

    Attributes:
        filename: the name it is distributed under, e.g. ``"train-images-idx3-ubyte.gz"``.
            The same name without ``.gz`` (an uncompressed copy) is accepted too.
        md5: hex MD5 of the decompressed file (header and data).
        shape: the array shape its header announces, e.g. ``(60000, 28, 28)``.
    """

    filename: str
    md5: str
    shape: tuple[int, ...]


class IdxSpec(NamedTuple):
    """An IDX data set: four files, class names, where to find and fetch them.

    Attributes:
        name: the name used by ``load(name)`` and ``--dataset``, e.g. ``"fashion-mnist"``;
            also the sub-directory of ``$FUNCNET_DATA_DIR`` and of the cache dir.
        title: a human-readable name for messages.
        train_images, train_labels, test_images, test_labels: the four files.
        class_names: one name per label value (label ``k`` is ``class_names[k]``).
        mirrors: base URLs (ending in ``/``) tried in order; a file's URL is base + filename.
        system_dirs: read-only directories where an OS package installs the files.
        system_package: how to install that package, for error messages.
    """

    name: str
    title: str
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    system_package: str | None = None

    @property
    def files(self) -> tuple[IdxFile, IdxFile, IdxFile, IdxFile]:
        """The four files in the order train images, train labels, test images, labels."""
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


MNIST = IdxSpec(
    name="mnist",
    title="MNIST",
    train_images=IdxFile(
        "train-images-idx3-ubyte.gz", "6bbc9ace898e44ae57da46a324031adb", (60000, 28, 28)
    ),
    train_labels=IdxFile(
        "train-labels-idx1-ubyte.gz", "a25bea736e30d166cdddb491f175f624", (60000,)
    ),
    test_images=IdxFile(
        "t10k-images-idx3-ubyte.gz", "2646ac647ad5339dbf082846283269ea", (10000, 28, 28)
    ),
    test_labels=IdxFile("t10k-labels-idx1-ubyte.gz", "27ae3e4e09519cfbb04c329615203637", (10000,)),
    class_names=tuple(str(k) for k in range(10)),
    mirrors=(
        # the mirror the book's dataset/mnist.py uses (also torchvision's first mirror)
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
)

FASHION_MNIST = IdxSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    train_images=IdxFile(
        "train-images-idx3-ubyte.gz", "f4a8712d7a061bf5bd6d2ca38dc4d50a", (60000, 28, 28)
    ),
    train_labels=IdxFile(
        "train-labels-idx1-ubyte.gz", "9018921c3c673c538a1fc5bad174d6f9", (60000,)
    ),
    test_images=IdxFile(
        "t10k-images-idx3-ubyte.gz", "8181f5470baa50b63fa0f6fddb340f0a", (10000, 28, 28)
    ),
    test_labels=IdxFile("t10k-labels-idx1-ubyte.gz", "15d484375f8d13e6eb1aabb0c3f46965", (10000,)),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    mirrors=(
        # the data set's official location (Zalando Research), then its GitHub repository
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    system_package="Debian/Ubuntu package dataset-fashion-mnist "
    "(sudo apt-get install dataset-fashion-mnist)",
)

SPECS: Mapping[str, IdxSpec] = MappingProxyType({s.name: s for s in (MNIST, FASHION_MNIST)})
"""Every IDX data set by name (read-only). The loader looks names up here at call time."""
