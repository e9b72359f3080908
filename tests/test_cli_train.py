"""The train / evaluate / predict commands, end to end on small MNIST-format files,
and a kill during training followed by --resume."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minilenet import mnist
from minilenet.cli import main
from minilenet.fileio import load_npz
from minilenet.idx import write_idx

from test_train import _arrays


def _train_args(data_dir, out, *extra):
    """Train flags; --epochs 2 unless ``extra`` sets it (argparse keeps the last)."""
    return ["train", "--data", str(data_dir), "--no-verify", "--out", str(out), "--quiet",
            "--epochs", "2", *extra]


def test_train_writes_everything_and_ends_with_the_test_error(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(data_dir, out)) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("test error: ") and lines[-1].endswith("%")
    for name in ("checkpoint.npz", "weights.npz", "history.json", "curves.png",
                 "learning_rates.png", "confusion.png", "misclassified.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_and_predict(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    main(_train_args(data_dir, out, "--epochs", "1"))
    train_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["evaluate", str(out / "checkpoint.npz"), "--data", str(data_dir),
                 "--no-verify", "--figures", str(tmp_path / "figs")]) == 0
    text = capsys.readouterr().out
    assert "confusion matrix" in text and text.strip().splitlines()[-1] == train_line
    assert (tmp_path / "figs" / "confusion.png").exists()
    # weights.npz needs the variant; it is the paper's by default
    assert main(["evaluate", str(out / "weights.npz"), "--data", str(data_dir),
                 "--no-verify"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == train_line

    images = _arrays(n_train=3, n_test=3)["test_images"]
    write_idx(tmp_path / "three.idx", images)
    from matplotlib.image import imsave
    imsave(tmp_path / "digit.png", 255 - images[0], cmap="gray", vmin=0, vmax=255)
    assert main(["predict", str(out / "checkpoint.npz"), str(tmp_path / "three.idx"),
                 str(tmp_path / "digit.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and "three.idx[2]: digit" in lines[2]
    assert lines[3].startswith(f"{tmp_path / 'digit.png'}: digit")
    assert "RBF distances" in lines[0] and len(lines[0].split("RBF distances:")[1].split()) == 10
    # (what a photo of a digit reads as is tested in test_handwriting.py, on real digits)


def test_predict_rejects_wrong_sizes(tmp_path, data_dir, capsys):
    main(_train_args(data_dir, tmp_path / "run", "--epochs", "1"))
    write_idx(tmp_path / "big.idx", np.zeros((2, 30, 30), np.uint8))
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run" / "weights.npz"),
                 str(tmp_path / "big.idx")]) == 2
    err = capsys.readouterr().err
    assert "big.idx" in err and "28x28" in err


def test_missing_data_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(mnist.time, "sleep", lambda s: None)
    monkeypatch.setattr(mnist, "MIRRORS", ("http://127.0.0.1:9/",))
    assert main(["train", "--data", str(tmp_path / "empty"), "--quiet"]) == 2
    assert "MINILENET_DATA" in capsys.readouterr().err


def test_corrupt_data_file_is_a_clear_error(data_dir, tmp_path, capsys):
    path = data_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    assert main(_train_args(data_dir, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train-images-idx3-ubyte.gz" in err


@pytest.mark.slow
def test_kill_then_resume_loses_at_most_the_epoch_in_progress(data_dir, tmp_path):
    """SIGKILL a real training process after its second epoch, while it is still
    running; --resume must end at the weights of an uninterrupted run."""
    epochs = 6
    args = ["--limit", "200", "--epochs", str(epochs), "--seed", "3"]
    cmd = [sys.executable, "-m", "minilenet"]
    env = dict(os.environ, MINILENET_BACKEND="numpy")
    straight = subprocess.run(cmd + _train_args(data_dir, tmp_path / "straight", *args),
                              env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd + _train_args(data_dir, out, *args), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        ckpt = out / "checkpoint.npz"
        if ckpt.exists() and int(load_npz(ckpt)["epoch"]) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: nothing to resume"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epoch_at_kill = int(load_npz(out / "checkpoint.npz")["epoch"])
    assert 2 <= epoch_at_kill < epochs
    resumed = subprocess.run(cmd + _train_args(data_dir, out, *args, "--resume"), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_npz(tmp_path / "straight" / "weights.npz"), load_npz(out / "weights.npz")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
