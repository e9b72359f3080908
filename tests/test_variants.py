"""The paper's Fig. 9 comparison networks (linear, fc300, fc1000, fc300-100,
LeNet-1, LeNet-4): shapes, parameter counts, the input each one reads,
deskewing, a few training steps, their gradient checks and the command line."""
import numpy as np
import pytest

from minilenet import losses, mnist
from minilenet.cli import main
from minilenet.gradcheck_suite import cases, run_case
from minilenet.idx import write_idx
from minilenet.models import (COMPARISON, INPUT_LAYOUTS, LENET1_C3_TABLE, LENET4_C3_TABLE,
                              VARIANTS, Repeat, comparison_net, lenet5)
from minilenet.optimizers import SGD
from minilenet.train import Data, TrainConfig, Trainer

from test_gradcheck import all_passed
from test_train import _arrays

#: variant: (input shape, trainable parameters, connections), counted by hand:
#: linear 785*10; fc300 785*300 + 301*10; fc1000 785*1000 + 1001*10;
#: fc300-100 785*300 + 301*100 + 101*10; LeNet-1 and LeNet-4 layer by layer below.
COUNTS = {
    "linear": ((1, 28, 28), 7_850, 7_850),
    "fc300": ((1, 28, 28), 238_510, 238_510),
    "fc1000": ((1, 28, 28), 795_010, 795_010),
    "fc300-100": ((1, 28, 28), 266_610, 266_610),
    # C1 4*26 (x 576), S2 4*2 (4*144*5), C3 20*25 + 12 (x 64), S4 12*2 (12*16*5), out 193*10
    "lenet1": ((1, 28, 28), 104 + 8 + 512 + 24 + 1_930,
               59_904 + 2_880 + 32_768 + 960 + 1_930),
    # C1 4*26 (x 784), S2 8*2 (8*196*5), C3 48*25 + 16 (x 100), S4 16*2 (16*25*5),
    # F5 401*120, out 121*10
    "lenet4": ((1, 32, 32), 104 + 16 + 1_216 + 32 + 48_120 + 1_210,
               81_536 + 7_840 + 121_600 + 2_000 + 48_120 + 1_210),
}


def _connections(model):
    return sum(row[4] for row in model.ledger())


@pytest.mark.parametrize("variant", COMPARISON)
def test_shapes_and_counts(variant):
    shape, params, connections = COUNTS[variant]
    model = lenet5(variant)
    assert model.input_shape == shape
    assert model.num_params() == params and _connections(model) == connections
    y = model.forward(np.zeros((3,) + shape, np.float32))
    assert y.shape == (3, 10) and y.dtype == np.float32
    # lenet5(variant) is comparison_net(variant): same weights from the same seed
    twin = comparison_net(variant, seed=0)
    assert all(np.array_equal(a, twin.state_dict()[k]) for k, a in model.state_dict().items())


def test_counts_against_the_paper():
    """The paper's figures: LeNet-1 about 2,600 parameters and 100,000 connections,
    LeNet-4 about 260,000 connections, and the multiply-adds of Fig. 11 for the
    fully connected nets (795 and 267 thousand). LeNet-4's "about 17,000
    parameters" cannot hold with a 120-unit layer fully connected to 16 maps of
    5x5 (48,120 parameters on its own), so only its connections are compared."""
    near = lambda value, paper, tol: abs(value - paper) <= tol * paper   # noqa: E731
    assert near(lenet5("lenet1").num_params(), 2_600, 0.02)
    assert near(_connections(lenet5("lenet1")), 100_000, 0.02)
    assert near(_connections(lenet5("lenet4")), 260_000, 0.02)
    assert lenet5("lenet4")["f5"].num_params() == 48_120
    assert near(_connections(lenet5("fc1000")), 795_000, 0.001)
    assert near(_connections(lenet5("fc300-100")), 267_000, 0.002)


def test_connection_tables():
    # LeNet-1: 20 kernels; 8 maps read one S2 map, 4 maps read three; every S2 map feeds 5
    assert LENET1_C3_TABLE.shape == (4, 12) and LENET1_C3_TABLE.sum() == 20
    assert sorted(LENET1_C3_TABLE.sum(axis=0)) == [1] * 8 + [3] * 4
    assert (LENET1_C3_TABLE.sum(axis=1) == 5).all()
    # LeNet-4: 48 kernels, three S2 maps per C3 map, no two C3 maps reading the same three
    assert LENET4_C3_TABLE.shape == (8, 16) and (LENET4_C3_TABLE.sum(axis=0) == 3).all()
    assert len({tuple(col) for col in LENET4_C3_TABLE.T}) == 16
    assert (LENET4_C3_TABLE.sum(axis=1) == 6).all()
    assert lenet5("lenet4")["c3"].params["weight"].shape == (48, 5, 5)


def test_repeat_copies_maps_in_pairs_and_sums_their_gradients(rng):
    layer = Repeat(2, np.float64)
    x = rng.standard_normal((2, 3, 4, 4))
    y = layer.forward(x)
    assert y.shape == (2, 6, 4, 4)
    for j in range(6):
        assert np.array_equal(y[:, j], x[:, j // 2])
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(dy), dy[:, 0::2] + dy[:, 1::2])
    assert lenet5("lenet4").shapes()["s2_pairs"] == ((4, 28, 28), (8, 28, 28))


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="lenet7"):
        lenet5("lenet7")
    with pytest.raises(ValueError, match="paper"):
        comparison_net("paper")


# ---------------------------------------------------------------- inputs
def test_each_variant_reads_its_own_input():
    images = _arrays(n_train=5, n_test=1)["train_images"]
    for variant in VARIANTS:
        config = TrainConfig(variant=variant, loss="map" if variant == "paper" else "ce")
        x = mnist.scale_bytes(config.input_bytes(images))
        assert x.shape == (5,) + lenet5(variant).input_shape, variant
        assert x.min() >= mnist.BACKGROUND - 1e-6 and x.max() <= mnist.FOREGROUND + 1e-6
    assert INPUT_LAYOUTS["lenet1"] == "shrink" and INPUT_LAYOUTS["lenet4"] == "pad"


def test_shrink_makes_the_20x20_box_16x16_and_keeps_it_centred():
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 4:24, 4:24] = 255                       # the box MNIST fits a digit into
    out = mnist.shrink_bytes(image)[0]
    rows, cols = np.nonzero(out > 127)
    assert rows.min() == 6 and rows.max() == 21 and cols.min() == 6 and cols.max() == 21
    assert out.shape == (28, 28)


def _slant(images):
    """cov(r, c) / var(r) of each image's ink."""
    p = images.astype(np.float64)
    r, c = np.indices(p.shape[1:])
    m = p.sum(axis=(1, 2))
    r0 = (p * r).sum(axis=(1, 2)) / m
    c0 = (p * c).sum(axis=(1, 2)) / m
    dr, dc = r - r0[:, None, None], c - c0[:, None, None]
    return (p * dr * dc).sum(axis=(1, 2)) / (p * dr * dr).sum(axis=(1, 2)), c0


def test_deskew_stands_a_slanted_stroke_upright():
    images = np.zeros((2, 28, 28), np.uint8)
    for r in range(6, 22):                           # strokes leaning by 0.5 and -0.3 px/row
        images[0, r, int(round(14 + 0.5 * (r - 14))):][:2] = 255
        images[1, r, int(round(13 - 0.3 * (r - 14))):][:2] = 255
    before, c_before = _slant(images)
    after, c_after = _slant(mnist.deskew(images))
    assert abs(before[0] - 0.5) < 0.05 and abs(before[1] + 0.3) < 0.05
    assert np.abs(after).max() < 0.03                # upright
    np.testing.assert_allclose(c_after, c_before, atol=0.3)   # not moved sideways
    upright = np.zeros((1, 28, 28), np.uint8)
    upright[0, 6:22, 12:15] = 200
    assert np.array_equal(mnist.deskew(upright), upright)
    blank = np.zeros((1, 28, 28), np.uint8)
    assert np.array_equal(mnist.deskew(blank), blank)


def test_deskew_flag_reaches_the_training_data():
    arrays = _arrays(n_train=20, n_test=5)
    plain = Data.from_mnist(arrays, TrainConfig(variant="linear", loss="ce"))
    straight = Data.from_mnist(arrays, TrainConfig(variant="linear", loss="ce", deskew=True))
    assert np.array_equal(straight.train_images, mnist.deskew(arrays["train_images"]))
    assert not np.array_equal(plain.train_images, straight.train_images)
    assert straight.test_x.shape == (5, 1, 28, 28)


# -------------------------------------------------------------- training
@pytest.mark.parametrize("variant", COMPARISON)
def test_loss_falls_in_a_few_steps(variant):
    arrays = _arrays(n_train=32, n_test=1)
    config = TrainConfig(variant=variant, loss="ce", optimizer="sgd")
    x, y = mnist.scale_bytes(config.input_bytes(arrays["train_images"])), arrays["train_labels"].astype(np.int64)
    model, optimizer = lenet5(variant, backend="numpy"), SGD(lr=0.1, momentum=0.9)
    history = []
    for _ in range(40):
        loss, dscores = losses.softmax_cross_entropy(model.forward(x), y)
        model.backward(dscores)
        optimizer.step(model)
        history.append(loss)
    assert abs(history[0] - np.log(10)) < 0.05       # ten near-equal logits at the start
    assert history[-1] < 0.6 * history[0], history[::10]


@pytest.mark.parametrize("variant", ["lenet1", "lenet4"])
def test_trainer_runs_a_variant_with_sdlm_too(tmp_path, variant):
    """The trainer's SDLM (curvature from the softmax's Gauss-Newton diagonal)
    works through these networks as well as SGD does."""
    config = TrainConfig(variant=variant, loss="ce", optimizer="sdlm", epochs=1,
                         hessian_samples=20)
    data = Data.from_mnist(_arrays(n_train=60, n_test=10), config)
    assert data.train_images.shape[1:] == lenet5(variant).input_shape[1:]
    trainer = Trainer(config, data, str(tmp_path), progress=False, log=lambda s: None)
    record = trainer.fit()[0]
    assert np.isfinite(record["train_loss"]) and 0 <= record["test_error"] <= 1
    assert not trainer.use_fused


# --------------------------------------------------------- gradient checks
def test_every_variant_is_in_the_gradcheck_suite_and_passes():
    whole = [c for c in cases() if c.group == "whole networks"]
    for variant in COMPARISON:
        mine = [c for c in whole if c.label.startswith(f"{variant} + ce [")]
        assert mine, variant
        for case in mine:
            results = run_case(case)
            assert all_passed(results), [(r.tensor, r.error) for r in results]
            names = {r.tensor for r in results}
            assert "dx" in names and "output.weight" in names
    assert any(c.label.startswith("Repeat") for c in cases() if c.group == "layer gradients")


def test_gradcheck_catches_a_wrong_repeat_gradient(monkeypatch):
    """The Repeat case fails when backward forgets one of the two copies."""
    case = next(c for c in cases() if c.label.startswith("Repeat"))
    assert all(r.passed for r in run_case(case))
    monkeypatch.setattr(Repeat, "backward", lambda self, dy: self.check_upstream(dy)[:, 0::2])
    assert not all(r.passed for r in run_case(case))


# ----------------------------------------------------------- command line
@pytest.mark.parametrize("variant", COMPARISON)
def test_summary_prints_the_counts(variant, capsys):
    assert main(["summary", "--variant", variant]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1].split()
    _, params, connections = COUNTS[variant]
    assert last == ["total", f"{params:,}", f"{connections:,}"]


def test_train_evaluate_predict_and_a_wrong_variant(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--data", str(data_dir), "--no-verify"]
    assert main(["train", "--variant", "lenet1", "--epochs", "1", "--quiet", "--out", str(out),
                 *flags]) == 0
    text = capsys.readouterr().out
    assert "training the lenet1 network" in text and "sgd, loss ce, batch 64" in text
    train_line = text.strip().splitlines()[-1]
    for argv in (["evaluate", str(out / "checkpoint.npz")],
                 ["evaluate", str(out / "weights.npz"), "--variant", "lenet1"]):
        assert main([*argv, *flags]) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1] == train_line
    write_idx(tmp_path / "two.idx", _arrays(n_train=2, n_test=2)["test_images"])
    assert main(["predict", str(out / "checkpoint.npz"), str(tmp_path / "two.idx")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "scores:" in lines[0] and len(lines[0].split("scores:")[1].split()) == 10
    # the wrong variant: one line naming the right one, exit status 2
    for argv, expected in ((["evaluate", str(out / "checkpoint.npz"), "--variant", "fc300"],
                            "--variant lenet1"),
                           (["evaluate", str(out / "weights.npz"), "--variant", "linear"],
                            "--variant lenet1"),
                           (["evaluate", str(out / "weights.npz")], "--variant lenet1"),
                           (["predict", str(out / "checkpoint.npz"), str(tmp_path / "two.idx"),
                             "--variant", "paper"], "lenet1")):
        assert main([*argv, *flags] if argv[0] == "evaluate" else argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_same_names_other_shapes_name_the_right_variant(tmp_path, capsys, data_dir):
    """fc300 and fc1000 have the same array names: the shapes tell them apart."""
    lenet5("fc1000").save(tmp_path / "w.npz")
    assert main(["evaluate", str(tmp_path / "w.npz"), "--variant", "fc300",
                 "--data", str(data_dir), "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert "h1.weight" in err and "--variant fc1000" in err
