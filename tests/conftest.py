import numpy as np
import pytest

from minilenet import config

BACKENDS = ["numpy", "numba"]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every backend; the numba one is skipped where it does not run (not installed;
    a student copy, whose Numba twins of the withheld units are stubs)."""
    if request.param not in config.backends():
        pytest.skip(config.numba_left_out())
    return request.param


@pytest.fixture
def numba_runs():
    """For a test that compares the Numba kernels with NumPy's: skipped where they
    do not run (``config.numba_left_out``)."""
    if config.numba_left_out():
        pytest.skip(config.numba_left_out())


@pytest.fixture
def data_dir(tmp_path):
    """A folder with small MNIST-like IDX files (200 training and 60 test digits)."""
    from minilenet import mnist
    from minilenet.idx import write_idx
    from test_train import _arrays
    folder = tmp_path / "data"
    for key, array in _arrays(n_train=200, n_test=60).items():
        write_idx(folder / (mnist.FILES[key] + ".gz"), array)
    return folder
