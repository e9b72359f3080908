"""MNIST loading: real files, checksums, preprocessing, and the download path
against a local HTTP server on 127.0.0.1 serving IDX files written here."""
import functools
import gzip
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from minilenet import mnist
from minilenet.idx import IdxError, write_idx

SHARED = os.environ.get("MINILENET_DATA")


def _fake_mnist(folder, n_train=20, n_test=10, seed=0):
    """Write four small MNIST-format files; return their content SHA-256 and gz MD5."""
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, n_test).astype(np.uint8)}
    raw_sha, gz_md5 = {}, {}
    for key, name in mnist.FILES.items():
        path = os.path.join(folder, name + ".gz")
        write_idx(path, arrays[key])
        data = open(path, "rb").read()
        gz_md5[name] = hashlib.md5(data).hexdigest()
        raw_sha[name] = hashlib.sha256(gzip.decompress(data)).hexdigest()
    return arrays, raw_sha, gz_md5


class _Server:
    """A static file server on 127.0.0.1 (random port) for one folder."""

    def __init__(self, folder):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    src = tmp_path / "mirror"
    src.mkdir()
    arrays, raw_sha, gz_md5 = _fake_mnist(src)
    with _Server(src) as server:
        yield server, src, arrays, raw_sha, gz_md5


def test_download_from_a_local_mirror(served, tmp_path, monkeypatch):
    server, _, arrays, raw_sha, gz_md5 = served
    monkeypatch.setattr(mnist, "MIRROR_GZ_MD5", gz_md5)
    monkeypatch.setattr(mnist.time, "sleep", lambda s: None)     # no back-off wait in tests
    dest = tmp_path / "cache"
    data = mnist.load_mnist(dest, mirrors=["http://127.0.0.1:9/nothing/", server.url],
                            checksums=raw_sha, progress=False)
    for key in mnist.FILES:
        np.testing.assert_array_equal(data[key], arrays[key])
    assert sorted(os.listdir(dest)) == sorted(n + ".gz" for n in mnist.FILES.values())


def test_corrupted_download_is_rejected_and_leaves_nothing(served, tmp_path, monkeypatch):
    server, src, _, raw_sha, gz_md5 = served
    monkeypatch.setattr(mnist, "MIRROR_GZ_MD5", gz_md5)
    name = "train-labels-idx1-ubyte"
    good = (src / f"{name}.gz").read_bytes()
    bad = gzip.compress(gzip.decompress(good)[:-1] + b"\x09")     # one label changed
    (src / f"{name}.gz").write_bytes(bad)
    dest = tmp_path / "cache"
    with pytest.raises(mnist.MnistError, match=f"could not download {name}.gz"):
        mnist.load_mnist(dest, mirrors=[server.url], checksums=raw_sha, progress=False)
    assert not (dest / f"{name}.gz").exists()
    assert not [f for f in os.listdir(dest) if f.startswith(".tmp")]


def test_truncated_download_is_rejected(served, tmp_path, monkeypatch):
    server, src, _, raw_sha, _ = served
    monkeypatch.setattr(mnist, "MIRROR_GZ_MD5", {})
    name = "t10k-images-idx3-ubyte"
    (src / f"{name}.gz").write_bytes((src / f"{name}.gz").read_bytes()[:300])
    with pytest.raises(mnist.MnistError, match="corrupt download"):
        mnist.load_mnist(tmp_path / "c", mirrors=[server.url], checksums=raw_sha,
                         progress=False)
    assert not (tmp_path / "c" / f"{name}.gz").exists()


def test_no_network_message_names_minilenet_data(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist.time, "sleep", lambda s: None)
    with pytest.raises(mnist.MnistError, match="MINILENET_DATA"):
        mnist.load_mnist(tmp_path, mirrors=["http://127.0.0.1:9/"], progress=False)


def test_folder_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILENET_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mnist.data_dir("given") == "given"
    assert mnist.data_dir() == str(tmp_path / "env")
    monkeypatch.delenv("MINILENET_DATA")
    assert mnist.data_dir() == str(tmp_path / "xdg" / "minilenet" / "mnist")


def test_other_mnist_format_data_needs_the_explicit_switch(tmp_path):
    """A Fashion-MNIST-like folder: same file names, other content."""
    arrays, _, _ = _fake_mnist(tmp_path)
    with pytest.raises(mnist.MnistError, match="verify=False"):
        mnist.load_mnist(tmp_path, download_missing=False)
    data = mnist.load_mnist(tmp_path, download_missing=False, verify=False)
    np.testing.assert_array_equal(data["test_labels"], arrays["test_labels"])


def test_raw_uncompressed_files_load_too(tmp_path):
    arrays, _, _ = _fake_mnist(tmp_path)
    for name in mnist.FILES.values():
        (tmp_path / f"{name}.gz").rename(tmp_path / name)
        (tmp_path / name).write_bytes(gzip.decompress((tmp_path / name).read_bytes()))
    data = mnist.load_mnist(tmp_path, download_missing=False, verify=False)
    np.testing.assert_array_equal(data["train_images"], arrays["train_images"])


def test_corrupt_local_file_is_a_clear_error(tmp_path):
    _fake_mnist(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(IdxError, match="t10k-labels"):
        mnist.load_mnist(tmp_path, download_missing=False, verify=False)


def test_preprocessing_is_the_papers():
    images = np.zeros((2, 28, 28), np.uint8)
    images[0, 0, 0], images[1, 27, 27] = 255, 51
    x = mnist.preprocess(images)
    assert x.shape == (2, 1, 32, 32) and x.dtype == np.float32
    assert x[0, 0, 2, 2] == pytest.approx(1.175)
    assert x[1, 0, 29, 29] == pytest.approx(-0.1 + 1.275 * 51 / 255)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert (x[:, 0][:, border] == np.float32(-0.1)).all()


def test_validation_split():
    x, y = np.arange(100), np.arange(100) % 10
    tx, ty, vx, vy = mnist.split_validation(x, y, 20, seed=3)
    assert len(vx) == 20 and len(tx) == 80 and set(tx) | set(vx) == set(range(100))
    with pytest.raises(ValueError, match="fewer than the 100 training images"):
        mnist.split_validation(x, y, 100)


@pytest.mark.skipif(not SHARED, reason="MINILENET_DATA (set by .ci/run) names the real MNIST")
def test_real_mnist_checksums_and_statistics():
    data = mnist.load_mnist(progress=False)
    assert data["train_images"].shape == (60000, 28, 28)
    assert data["test_labels"].shape == (10000,)
    x = mnist.preprocess(data["train_images"])
    assert float(x.mean()) == pytest.approx(0.0275, abs=1e-3)     # docs/paper.md 1: mean ~0 holds,
    assert float(x.std()) == pytest.approx(0.351, abs=1e-3)       # variance ~1 does not
