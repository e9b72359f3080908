"""MNIST: find the four IDX files, download them if missing, verify, preprocess.

Where the files are looked for, in order: the ``folder`` argument (``--data``),
the ``MINILENET_DATA`` environment variable, then the user cache
(``$XDG_CACHE_HOME/minilenet/mnist``, by default ``~/.cache/minilenet/mnist``).
Only the cache is downloaded into.
"""
import gzip
import hashlib
import os
import time
import urllib.error
import urllib.request

import numpy as np

from .distort import warp
from .errors import UserError
from .fileio import atomic_write
from .idx import read_idx

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: SHA-256 of the uncompressed files (the content, whatever the wrapper).
RAW_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: MD5 of the .gz files as the public mirrors serve them.
MIRROR_GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: Public mirrors, tried in turn (``MINILENET_MNIST_MIRRORS``: space-separated URLs).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: Paper preprocessing: background (byte 0) -> -0.1, full ink (255) -> 1.175.
BACKGROUND, FOREGROUND = -0.1, 1.175
PAD = 2


class MnistError(UserError):
    """MNIST could not be found, downloaded or verified."""


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "minilenet", "mnist")


def data_dir(folder=None):
    """The folder to read: the argument, else $MINILENET_DATA, else the user cache."""
    return os.fspath(folder or os.environ.get("MINILENET_DATA") or cache_dir())


def find_file(folder, name):
    """``name.gz`` or ``name`` in folder, or None."""
    for candidate in (name + ".gz", name):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _digest(data, algorithm):
    return hashlib.new(algorithm, data).hexdigest()


def raw_bytes(path):
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def verify_file(path, name, checksums=RAW_SHA256):
    """Check the uncompressed content's SHA-256 when it is known for ``name``."""
    expected = checksums.get(name)
    if expected is None:
        return
    try:
        actual = _digest(raw_bytes(path), "sha256")
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise MnistError(f"{path}: corrupt or truncated file ({e})") from e
    if actual != expected:
        raise MnistError(
            f"{path}: checksum mismatch (SHA-256 of the content {actual[:16]}..., expected "
            f"{expected[:16]}...). The file is corrupt, or it is another MNIST-format data set "
            f"(Fashion-MNIST, say): then pass verify=False (--no-verify) to skip the check.")


def _fetch(url, dest, progress, timeout):
    """Stream ``url`` into the open file ``dest``, with a progress bar."""
    from tqdm.auto import tqdm
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(url),
                  disable=not progress, leave=False) as bar:
            while chunk := response.read(1 << 16):
                dest.write(chunk)
                bar.update(len(chunk))


def download(name, folder, mirrors=None, retries=3, progress=True, timeout=30,
             gz_md5=MIRROR_GZ_MD5, checksums=RAW_SHA256):
    """Download ``name.gz`` into ``folder`` from the first mirror that serves a good copy.

    Each mirror is tried ``retries`` times (with back-off) on network errors;
    a copy that fails its checksum moves on to the next mirror. The file only
    appears in ``folder`` once verified (temporary file, then rename).
    """
    mirrors = mirrors or os.environ.get("MINILENET_MNIST_MIRRORS", "").split() or MIRRORS
    dest = os.path.join(folder, name + ".gz")
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name + ".gz"
        for attempt in range(1, retries + 1):
            try:
                with atomic_write(dest) as f:
                    _fetch(url, f, progress, timeout)
                    f.flush()
                    _check_download(f.name, name, gz_md5, checksums)
                return dest
            except MnistError as e:              # a bad copy: retrying this mirror won't help
                errors.append(f"{url}: rejected: {e}")
                break
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                if attempt == retries:
                    errors.append(f"{url}: {e} ({retries} attempts)")
                else:
                    time.sleep(0.5 * 2 ** (attempt - 1))
    raise MnistError(f"could not download {name}.gz:\n  " + "\n  ".join(errors))


def _check_download(path, name, gz_md5, checksums):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x1f\x8b":
        raise MnistError(f"{name}.gz: the server did not send a gzip file")
    expected_md5 = gz_md5.get(name)
    if expected_md5 and _digest(data, "md5") != expected_md5:
        raise MnistError(f"{name}.gz: MD5 of the download does not match the mirrors' file")
    try:
        content = gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        raise MnistError(f"{name}.gz: corrupt download ({e})") from e
    if checksums.get(name) and _digest(content, "sha256") != checksums[name]:
        raise MnistError(f"{name}.gz: content checksum mismatch (corrupt download)")


def load_mnist(folder=None, *, download_missing=True, verify=True, progress=True,
               mirrors=None, checksums=RAW_SHA256):
    """Load the four MNIST arrays as uint8 images (N, 28, 28) and labels (N,).

    Returns a dict with keys ``train_images``, ``train_labels``,
    ``test_images``, ``test_labels``. Files missing from the folder are
    downloaded into it (unless ``download_missing=False``). Checksums are
    verified for the files whose checksums are known, unless ``verify=False``.
    """
    folder = data_dir(folder)
    out, paths = {}, {}
    for key, name in FILES.items():
        path = find_file(folder, name)
        if path is None:
            if not download_missing:
                raise MnistError(_missing_message(folder, name))
            try:
                path = download(name, folder, mirrors, progress=progress,
                                checksums=checksums if verify else {},
                                gz_md5=MIRROR_GZ_MD5 if verify else {})
            except MnistError as e:
                raise MnistError(f"{e}\n{_missing_message(folder, name)}") from e
        elif verify:
            verify_file(path, name, checksums)
        out[key], paths[key] = read_idx(path), path
    check_arrays(out, paths)
    return out


def _missing_message(folder, name):
    return (f"MNIST file {name}(.gz) is not in {folder}. Without network access, copy the four "
            f"MNIST files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a folder and point "
            f"MINILENET_DATA at it (export MINILENET_DATA=/path/to/mnist), or pass --data DIR.")


def check_arrays(data, paths):
    """Refuse, before any training, what the network cannot take: images that are
    not uint8 (N, 28, 28), labels that are not integers (N,) in 0..9, or counts
    of images and labels that differ. ``paths`` names the file of each array."""
    for split in ("train", "test"):
        images, labels = data[f"{split}_images"], data[f"{split}_labels"]
        image_file, label_file = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise MnistError(f"{image_file}: expected uint8 images of 28x28, (N, 28, 28), got "
                             f"{images.dtype} {images.shape}")
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise MnistError(f"{label_file}: expected one integer label per image, (N,), got "
                             f"{labels.dtype} {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise MnistError(f"{label_file}: labels must be digits 0 to 9, found "
                             f"{labels.min()} to {labels.max()}")
        if len(images) != len(labels):
            raise MnistError(f"{image_file} holds {len(images):,} images but {label_file} "
                             f"{len(labels):,} labels: they must pair up")


def pad_bytes(images):
    """uint8 (N, 28, 28) -> (N, 32, 32): 2 pixels of background (0) on every side.

    The paper pads, it does not resize (section II-A).
    """
    return np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD)))


def scale_bytes(images, dtype=np.float32):
    """uint8 (N, H, W) -> (N, 1, H, W) of ``dtype``: x = -0.1 + 1.275 * byte / 255.

    Background (0) becomes -0.1 and full ink (255) 1.175, as in the paper.
    """
    t = np.dtype(dtype).type
    # BEGIN SOLUTION preprocess
    x = images.astype(dtype) * t((FOREGROUND - BACKGROUND) / 255) + t(BACKGROUND)
    # END SOLUTION
    return x[:, None]


def preprocess(images, dtype=np.float32):
    """The paper's input: uint8 (N, 28, 28) -> (N, 1, 32, 32) in [-0.1, 1.175]."""
    return scale_bytes(pad_bytes(images), dtype)


#: LeNet-1's input: the 20x20 box MNIST fits each digit into, down-sampled to 16x16.
SHRINK = 16 / 20


def shrink_bytes(images):
    """uint8 (N, 28, 28) -> (N, 28, 28), every digit scaled by 16/20 about the
    centre (bilinear): its 20x20 box becomes 16x16, still centred by mass."""
    inverse = np.broadcast_to(np.eye(2) / SHRINK, (len(images), 2, 2))
    return warp(images, inverse, np.zeros((len(images), 2)))


def deskew(images):
    """uint8 (N, H, W) -> (N, H, W), each image sheared horizontally so that its
    ink's principal axis is vertical (bilinear): with the ink's centre of mass
    (r0, c0) and second moments, the slant a = cov(r, c) / var(r), and output
    pixel (r, c) reads input (r, c + a (r - r0)). Blank images stay as they are."""
    N, H, W = images.shape
    p = images.astype(np.float64)
    mass = np.maximum(p.sum(axis=(1, 2)), 1e-12)
    rows, cols = np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64)
    r0 = np.einsum("nhw,h->n", p, rows) / mass
    c0 = np.einsum("nhw,w->n", p, cols) / mass
    dr, dc = rows[None, :] - r0[:, None], cols[None, :] - c0[:, None]
    var_r = np.einsum("nhw,nh->n", p, dr * dr) / mass
    cov = np.einsum("nhw,nh,nw->n", p, dr, dc) / mass
    slant = np.where(var_r > 1e-12, cov / np.maximum(var_r, 1e-12), 0.0)
    inverse = np.zeros((N, 2, 2))
    inverse[:, 0, 0] = inverse[:, 1, 1] = 1.0
    inverse[:, 1, 0] = slant
    shift = np.stack([np.zeros(N), slant * (r0 - (H - 1) / 2)], axis=1)
    return warp(images, inverse, shift)


#: The input layouts of ``models.INPUT_LAYOUTS``.
LAYOUTS = {"pad": pad_bytes, "raw": lambda images: images, "shrink": shrink_bytes}


def input_bytes(images, layout="pad", deskewed=False, chunk=2000):
    """uint8 (N, 28, 28) MNIST digits -> a network's uint8 input (N, H, W):
    optionally ``deskew``-ed, then laid out as ``layout`` says ("pad": 32x32,
    the paper's; "raw": 28x28; "shrink": 28x28 with the digit at 16x16)."""
    if layout not in LAYOUTS:
        raise ValueError(f"input layout must be one of {tuple(LAYOUTS)}, got {layout!r}")
    if not deskewed and layout != "shrink":
        return LAYOUTS[layout](images)
    out = [LAYOUTS[layout](deskew(block) if deskewed else block)
           for block in np.array_split(images, max(1, -(-len(images) // chunk)))]
    return np.concatenate(out) if out else images


def split_validation(images, labels, n_val, seed=0):
    """Hold out ``n_val`` random training samples: (train_x, train_y, val_x, val_y)."""
    if not 0 <= n_val < len(images):
        raise UserError(f"the validation set must hold fewer than the {len(images):,} "
                        f"training images, got {n_val:,} (--validation)")
    order = np.random.default_rng(seed).permutation(len(images))
    val, train = order[:n_val], order[n_val:]
    return images[train], labels[train], images[val], labels[val]
