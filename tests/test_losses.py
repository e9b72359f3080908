import numpy as np
import pytest

from minilenet import losses


def test_mse_is_the_mean_correct_penalty():
    y = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    loss, grad = losses.mse_loss(y, np.array([2, 0]))
    assert loss == pytest.approx((3 + 4) / 2)
    np.testing.assert_array_equal(grad, [[0, 0, 0.5], [0.5, 0, 0]])


@pytest.mark.parametrize("j", [0.1, 1.0, 5.0])
def test_map_loss_two_ways_and_nonnegative(rng, j):
    y = rng.uniform(0, 10, (6, 10))
    labels = rng.integers(0, 10, 6)
    loss, _ = losses.map_loss(y, labels, j=j)
    direct = np.mean(y[np.arange(6), labels] + np.log(np.exp(-j) + np.exp(-y).sum(axis=1)))
    assert loss == pytest.approx(direct, rel=1e-12)
    assert loss >= 0


def test_map_loss_stays_finite_for_huge_penalties():
    y = np.full((2, 10), 1e4)
    y[0, 3] = 0.5
    loss, grad = losses.map_loss(y, np.array([3, 3]), j=0.1)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    # Second sample: every penalty is 1e4; log(e^-j + 10 e^-1e4) = -j exactly in float64.
    assert loss == pytest.approx((0.5 + np.log(np.exp(-0.1) + np.exp(-0.5)) + 1e4 - 0.1) / 2)


def test_cross_entropy_shifts_each_row_by_its_own_max():
    """A batch-wide shift would underflow the second row to log(0)."""
    z = np.array([[1000.0, 0.0], [0.0, 1.0]])
    loss, grad = losses.softmax_cross_entropy(z, np.array([0, 1]))
    assert np.isfinite(loss)
    assert loss == pytest.approx(np.log1p(np.exp(-1.0)) / 2)
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-15)


def test_losses_keep_float32():
    y = np.ones((2, 10), np.float32)
    for name in ("mse", "map", "ce"):
        assert losses.get(name)(y, np.array([0, 1]))[1].dtype == np.float32


@pytest.mark.parametrize("labels,pattern", [
    (np.array([0, 10]), r"labels must lie in \[0, 10\)"),
    (np.array([0.0, 1.0]), "integer labels"),
    (np.array([0]), r"shape \(2,\)"),
])
def test_bad_labels(labels, pattern):
    with pytest.raises(ValueError, match=pattern):
        losses.mse_loss(np.ones((2, 10)), labels)


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("hinge")
