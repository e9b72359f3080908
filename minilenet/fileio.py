"""Atomic file writes and pickle-free .npz reading.

Every file minilenet writes (weights, checkpoints, downloads, histories) goes
to a temporary file in the target folder first and is renamed into place, so
a crash never leaves a truncated file where a good one was.
"""
import contextlib
import os
import tempfile
import zipfile
import zlib

import numpy as np

from .errors import UserError

#: What NumPy raises for a file that is not a readable .npz archive.
_NPZ_ERRORS = (ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path``; rename it onto ``path`` on success."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())       # mkstemp makes 0600; give the usual permissions
    try:
        with open(tmp, mode) as f:           # f.name is the temporary path
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npz(path, arrays):
    """Write a dict of arrays to ``path`` (.npz) atomically."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def load_npz(path):
    """Read a .npz into a dict of arrays, refusing pickled objects.

    A file that is missing raises FileNotFoundError; one that is empty,
    truncated, not an .npz archive or holds Python objects raises UserError.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(6)
    if head and not head.startswith((b"PK", b"\x93NUMPY")):   # np.load would try pickle
        raise UserError(f"{path}: not a NumPy .npz archive (it is not a zip archive)")
    try:
        data = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as e:
        raise UserError(f"{path}: not a NumPy .npz archive ({_reason(e)})") from e
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise UserError(f"{path}: a single .npy array, not an .npz archive of named arrays")
    with data:
        try:
            return {key: data[key] for key in data.files}
        except _NPZ_ERRORS as e:
            raise UserError(f"{path}: unreadable .npz archive ({_reason(e)})") from e


def _reason(error):
    text = str(error) or type(error).__name__
    if "pickle" in text or "Object arrays" in text:
        return "it holds Python objects, which minilenet never unpickles"
    return text.splitlines()[0]
