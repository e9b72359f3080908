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
