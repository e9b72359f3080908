"""The IDX file format (MNIST's): read and write, gzip or raw, every element type.

Layout: two zero bytes, a type code, the number of dimensions, one big-endian
uint32 per dimension, then the elements in big-endian order. ``read_idx``
checks the header and the declared size against the actual byte count before
it allocates anything.
"""
import gzip
import os
import struct

import numpy as np

from .errors import UserError
from .fileio import atomic_write

#: type code -> big-endian NumPy dtype
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
GZIP_MAGIC = b"\x1f\x8b"
MAX_DIMS = 8
MAX_DEFLATE_RATIO = 1032


class IdxError(UserError):
    """A file that is not valid IDX (bad magic, truncated, wrong size...)."""


def _is_gzip(path):
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def _gzip_size(path):
    """Uncompressed size mod 2**32, from the gzip trailer (ISIZE)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 18:
            raise IdxError(f"{path}: truncated gzip file ({f.tell()} bytes)")
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def read_header(f, path):
    """Parse the header from an open binary stream: (dtype, shape, header_bytes)."""
    head = f.read(4)
    if len(head) < 4:
        raise IdxError(f"{path}: truncated header ({len(head)} of 4 bytes)")
    if head[:2] != b"\x00\x00":
        raise IdxError(f"{path}: bad magic number {head.hex()} (IDX files start 0000)")
    code, ndim = head[2], head[3]
    if code not in IDX_TYPES:
        raise IdxError(f"{path}: unknown element type code 0x{code:02X} "
                       f"(expected one of {', '.join(f'0x{c:02X}' for c in IDX_TYPES)})")
    if not 1 <= ndim <= MAX_DIMS:
        raise IdxError(f"{path}: {ndim} dimensions declared (expected 1 to {MAX_DIMS})")
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise IdxError(f"{path}: truncated header (dimension sizes cut off)")
    return IDX_TYPES[code], struct.unpack(f">{ndim}I", dims), 4 + 4 * ndim


def read_idx(path):
    """Read an IDX file (gzip-compressed or raw) into an array in native byte order."""
    path = os.fspath(path)
    gz = _is_gzip(path)
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            dtype, shape, header = read_header(f, path)
            expected = header + int(np.prod(shape, dtype=object)) * dtype.itemsize
            actual = _gzip_size(path) if gz else os.path.getsize(path)
            # ISIZE is the size mod 2**32; deflate never expands more than 1032:1.
            too_big = gz and expected > MAX_DEFLATE_RATIO * os.path.getsize(path)
            if too_big or actual != (expected % 2 ** 32 if gz else expected):
                raise IdxError(f"{path}: header declares shape {shape} of {dtype.name} "
                               f"({expected:,} bytes with the header) but the file holds "
                               f"{actual:,} bytes{' uncompressed' if gz else ''}")
            body = f.read(expected - header)
            if len(body) != expected - header or f.read(1):
                raise IdxError(f"{path}: size does not match the header")
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise IdxError(f"{path}: corrupt or truncated file ({e})") from e
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array, compress=None):
    """Write ``array`` as IDX (atomically). ``compress`` defaults to a ``.gz`` suffix."""
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
    dtype = array.dtype.newbyteorder("=")
    if dtype not in codes:
        raise IdxError(f"write_idx: no IDX type for dtype {array.dtype} "
                       f"(use one of {sorted(str(d) for d in codes)})")
    if not 1 <= array.ndim <= MAX_DIMS:
        raise IdxError(f"write_idx: IDX holds 1 to {MAX_DIMS} dimensions, got {array.ndim}")
    code = codes[dtype]
    data = (struct.pack(">BBBB", 0, 0, code, array.ndim)
            + struct.pack(f">{array.ndim}I", *array.shape)
            + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes())
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    with atomic_write(path) as f:
        f.write(gzip.compress(data, mtime=0) if compress else data)
