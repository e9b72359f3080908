import numpy as np
import pytest

from minilenet import config

BACKENDS = ["numpy", "numba"]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every backend; numba is a hard dependency, so it always runs."""
    assert config.numba_available(), "numba is a dependency of minilenet"
    return request.param
