"""Every user error, through the real command line: one line ``error: ...`` on
stderr naming the file or flag, exit status 2, and no traceback."""
import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from minilenet import config, lenet5, mnist
from minilenet.idx import write_idx

from test_train import _arrays

pytestmark = pytest.mark.slow


def _write_data(folder, **replace):
    """The four MNIST files in ``folder`` (small toy data), some replaced by raw bytes
    or other arrays: ``replace`` maps an array key to an array or to bytes."""
    arrays = _arrays(n_train=30, n_test=10)
    for key, name in mnist.FILES.items():
        path = folder / (name + ".gz")
        value = replace.get(key, arrays[key])
        if isinstance(value, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(value))
        else:
            write_idx(path, value)
    return folder


def _idx_header(code, *dims):
    return struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


def _bad_data(**replace):
    return lambda tmp: ["train", "--data", str(_write_data(tmp / "data", **replace)),
                        "--no-verify", "--quiet", "--out", str(tmp / "run")]


def _weights(tmp, **change):
    """A weights file of the paper network (untrained), with arrays changed."""
    state = lenet5().state_dict()
    state.update(change)
    path = tmp / "weights.npz"
    np.savez(path, **{k: v for k, v in state.items() if v is not None})
    return str(path)


def _file(name, content):
    def make(tmp):
        path = tmp / name
        path.write_bytes(content)
        return str(path)
    return make


def _evaluate(make_checkpoint, *extra):
    return lambda tmp: ["evaluate", make_checkpoint(tmp), "--data",
                        str(_write_data(tmp / "data")), "--no-verify", *extra]


def _train(*flags):
    return lambda tmp: ["train", "--data", str(_write_data(tmp / "data")), "--no-verify",
                        "--quiet", "--out", str(tmp / "run"), *flags]


def _truncated_npz(tmp):
    path = _weights(tmp)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    return path


def _object_npz(tmp):
    path = tmp / "objects.npz"
    np.savez(path, **{"c1.weight": np.array([object()], dtype=object)})
    return str(path)


def _modern_weights(tmp):
    path = tmp / "modern.npz"
    lenet5("modern").save(path)
    return str(path)


def _corrupt_checkpoint(tmp):
    (tmp / "run").mkdir()
    (tmp / "run" / "checkpoint.npz").write_bytes(b"PK\x03\x04 cut short")
    return _train("--resume")(tmp)


def _file_as_out_folder(tmp):
    (tmp / "taken").write_text("a file where the output folder should go")
    return ["train", "--data", str(_write_data(tmp / "data")), "--no-verify", "--quiet",
            "--out", str(tmp / "taken" / "run")]


IMAGES = _arrays(n_train=30, n_test=10)["train_images"]

#: (id, argv maker, environment additions, text the one-line message must contain)
CASES = [
    ("batch size 0", _train("--batch-size", "0"), {}, "--batch-size"),
    ("epochs -1", _train("--epochs", "-1"), {}, "--epochs"),
    ("epochs not a number", _train("--epochs", "ten"), {}, "--epochs"),
    ("limit 0", _train("--limit", "0"), {}, "--limit"),
    ("test limit 0", _train("--test-limit", "0"), {}, "--test-limit"),
    ("mu 0", _train("--mu", "0"), {}, "--mu"),
    ("learning rate negative", _train("--lr", "-0.1"), {}, "--lr"),
    ("j 0", _train("--j", "0"), {}, "--j"),
    ("j nan", _train("--j", "nan"), {}, "--j"),
    ("momentum 1", _train("--momentum", "1"), {}, "--momentum"),
    ("unknown backend flag", _train("--backend", "cuda"), {}, "--backend"),
    ("unknown backend variable", _train("--epochs", "1"), {"MINILENET_BACKEND": "cuda"},
     "MINILENET_BACKEND"),
    ("unknown product variable", _train("--epochs", "1"), {"MINILENET_GEMM": "cublas"},
     "MINILENET_GEMM"),
    ("validation too large", _train("--validation", "500"), {}, "--validation"),
    ("unknown flag", _train("--epohcs", "1"), {}, "--epohcs"),
    ("missing data folder",
     lambda tmp: ["train", "--data", str(tmp / "nowhere"), "--quiet"],
     {"MINILENET_MNIST_MIRRORS": "http://127.0.0.1:9/"}, "nowhere"),
    ("idx bad magic", _bad_data(train_images=b"\x01\x02\x08\x03" + b"\x00" * 40), {},
     "train-images-idx3-ubyte.gz"),
    ("idx truncated", _bad_data(test_images=_idx_header(8, 10, 28, 28) + b"\x00" * 100), {},
     "t10k-images-idx3-ubyte.gz"),
    ("idx unknown element type", _bad_data(train_labels=_idx_header(0x07, 30) + b"\x00" * 30),
     {}, "train-labels-idx1-ubyte.gz"),
    ("idx sizes do not match the file",
     _bad_data(test_labels=_idx_header(8, 12) + b"\x01" * 10), {}, "t10k-labels-idx1-ubyte.gz"),
    ("image and label counts differ", _bad_data(train_labels=np.zeros(29, np.uint8)), {},
     "29 labels"),
    ("labels outside 0..9", _bad_data(test_labels=np.full(10, 12, np.uint8)), {},
     "t10k-labels-idx1-ubyte.gz"),
    ("images not 28x28", _bad_data(train_images=np.zeros((30, 30, 30), np.uint8)), {},
     "train-images-idx3-ubyte.gz"),
    ("float images", _bad_data(test_images=np.zeros((10, 28, 28), np.float32)), {},
     "t10k-images-idx3-ubyte.gz"),
    ("bitmaps file missing", _train("--bitmaps", "/nonexistent/codes.txt"), {},
     "/nonexistent/codes.txt"),
    ("bitmaps with 2 codes",
     lambda tmp: _train("--bitmaps", _file("two.txt", b"digit 0\n" + b".......\n" * 12
                                           + b"digit 1\n" + b"#######\n" * 12)(tmp))(tmp),
     {}, "two.txt"),
    ("resume from a corrupt checkpoint", _corrupt_checkpoint, {}, "checkpoint.npz"),
    ("output folder under a file", _file_as_out_folder, {}, "taken"),
    ("checkpoint missing", _evaluate(lambda tmp: str(tmp / "nope.npz")), {}, "nope.npz"),
    ("checkpoint empty", _evaluate(_file("empty.npz", b"")), {}, "empty.npz"),
    ("checkpoint not a zip", _evaluate(_file("text.npz", b"not an archive\n" * 10)), {},
     "text.npz: not a NumPy .npz archive (it is not a zip archive)"),
    ("checkpoint truncated", _evaluate(_truncated_npz), {}, "weights.npz"),
    ("checkpoint with pickled objects", _evaluate(_object_npz), {}, "Python objects"),
    ("weights of the modern variant", _evaluate(_modern_weights), {}, "--variant modern"),
    ("weights with a wrong shape",
     _evaluate(lambda tmp: _weights(tmp, **{"c3.weight": np.zeros((60, 3, 3), np.float32)})),
     {}, "c3.weight"),
    ("weights with a wrong dtype",
     _evaluate(lambda tmp: _weights(tmp, **{"f6.bias": np.zeros(84, np.int64)})), {},
     "f6.bias"),
    ("weights with an array missing", _evaluate(lambda tmp: _weights(tmp, **{"c5.bias": None})),
     {}, "c5.bias"),
    ("evaluate test limit 0", _evaluate(_weights, "--test-limit", "0"), {}, "--test-limit"),
    ("predict: not an image",
     lambda tmp: ["predict", _weights(tmp), _file("digit.png", b"not a picture")(tmp)], {},
     "digit.png"),
    ("predict: missing image", lambda tmp: ["predict", _weights(tmp), str(tmp / "gone.png")],
     {}, "gone.png"),
    ("bitmaps command: malformed file",
     lambda tmp: ["bitmaps", _file("codes.txt", b"digit 0\n###\n")(tmp)], {}, "codes.txt"),
    ("bench batch 0", lambda tmp: ["bench", "--batches", "0"], {}, "--batches"),
    ("summary unknown variant", lambda tmp: ["summary", "--variant", "lenet7"], {},
     "--variant"),
]


@pytest.mark.parametrize("make_argv,env,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_user_error_is_one_line_and_exit_2(tmp_path, make_argv, env, expected):
    if "MINILENET_GEMM" in env and config.numba_left_out():
        pytest.skip("MINILENET_GEMM chooses the Numba kernels' products: "
                    + config.numba_left_out())
    argv = make_argv(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "minilenet", *argv], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env},
                          stdin=subprocess.DEVNULL)
    err = proc.stderr
    assert proc.returncode == 2, (argv, proc.stdout, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], err


def test_debug_shows_the_traceback(tmp_path):
    argv = ["evaluate", str(tmp_path / "nope.npz"), "--debug"]
    proc = subprocess.run([sys.executable, "-m", "minilenet", *argv], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
