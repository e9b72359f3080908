import gzip

import numpy as np
import pytest

from minilenet.idx import IDX_TYPES, IdxError, read_idx, write_idx


@pytest.mark.parametrize("dtype", [dt.newbyteorder("=") for dt in IDX_TYPES.values()])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_element_type(tmp_path, rng, dtype, suffix):
    a = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_big_endian_on_disk(tmp_path):
    write_idx(tmp_path / "x", np.array([1, 2], dtype=np.int32))
    assert (tmp_path / "x").read_bytes() == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2,
                                                   0, 0, 0, 1, 0, 0, 0, 2])


def test_unsupported_dtype_refused(tmp_path):
    with pytest.raises(IdxError, match="no IDX type"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


def _raw(code=0x08, dims=(2, 3), body=b"\x00" * 6, magic=b"\x00\x00"):
    return magic + bytes([code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + body


@pytest.mark.parametrize("data,pattern", [
    (_raw(magic=b"\x08\x03"), "bad magic number"),
    (_raw(code=0x07), "unknown element type code 0x07"),
    (_raw(dims=()), "0 dimensions declared"),
    (_raw(body=b"\x00" * 5), "declares shape \\(2, 3\\).*holds 17 bytes"),
    (_raw(body=b"\x00" * 7), "holds 19 bytes"),
    (_raw()[:6], "dimension sizes cut off"),
    (b"\x00\x00", "truncated header"),
    (_raw(dims=(2 ** 31, 2 ** 31), body=b""), "declares shape"),
])
@pytest.mark.parametrize("compress", [False, True])
def test_corrupt_files_give_clear_errors(tmp_path, data, pattern, compress):
    path = tmp_path / "bad"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(IdxError, match=pattern):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "t.gz"
    write_idx(path, np.arange(1000, dtype=np.uint8).reshape(10, 100), compress=True)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(IdxError, match="t.gz"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")
