import numpy as np
import pytest

from minilenet import config

BACKENDS = ["numpy", "numba"]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every backend; the numba one is skipped where Numba cannot be imported."""
    if request.param == "numba" and not config.numba_available():
        pytest.skip("numba is not installed (pip install numba)")
    return request.param


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
