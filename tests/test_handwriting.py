"""Reading real handwriting: pictures of digits made MNIST-style, then classified.

The pictures are drawn here: pen strokes (PIL.ImageDraw) or a digit in
matplotlib's bundled DejaVu Sans, large, off-centre, in colour, with paper
grain, specks and uneven light, saved as PNG and JPEG. The shipped network
must read each one.
"""
import os

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from minilenet import handwriting as hw
from minilenet import predict_labels, pretrained
from minilenet.cli import main
from minilenet.errors import UserError
from minilenet.idx import write_idx
from minilenet.mnist import pad_bytes, preprocess

REAL = os.environ.get("MINILENET_DATA")
FONT = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf",
                    "DejaVuSans.ttf")
BLUE_INK, CREAM = (25, 35, 140), (240, 232, 210)


# ----------------------------------------------------------------- drawings
def _strokes(digit, box):
    """A hand-drawn digit's strokes in box (x0, y0, x1, y1): [(kind, points, *angles)]."""
    x0, y0, x1, y1 = box

    def at(u, v):
        return x0 + u * (x1 - x0), y0 + v * (y1 - y0)
    return {
        0: [("ellipse", [at(0.1, 0.0), at(0.9, 1.0)])],
        1: [("line", [at(0.35, 0.12), at(0.55, 0.0), at(0.5, 1.0)])],
        2: [("arc", [at(0.1, 0.0), at(0.9, 0.5)], 180, 30),
            ("line", [at(0.79, 0.4), at(0.08, 1.0), at(0.95, 1.0)])],
        4: [("line", [at(0.65, 0.0), at(0.05, 0.65), at(0.95, 0.65)]),
            ("line", [at(0.68, 0.3), at(0.68, 1.0)])],
        7: [("line", [at(0.05, 0.05), at(0.95, 0.05), at(0.4, 1.0)])],
    }[digit]


def drawn(digit, size=(400, 300), box=(220, 60, 330, 260), width=18, ink=BLUE_INK,
          paper=CREAM, mode="RGB"):
    """A pen-drawn digit, off-centre (to the right) in a large picture."""
    img = Image.new(mode, size, paper)
    pen = ImageDraw.Draw(img)
    for kind, points, *angles in _strokes(digit, box):
        if kind == "line":
            pen.line(points, fill=ink, width=width, joint="curve")
        elif kind == "ellipse":
            pen.ellipse(points, outline=ink, width=width)
        else:
            pen.arc(points, *angles, fill=ink, width=width)
    return img


def typed(digit, size=(400, 300), at=(230, 30), px=220, ink=BLUE_INK, paper=CREAM):
    """A digit in DejaVu Sans, off-centre in a large picture."""
    img = Image.new("RGB", size, paper)
    ImageDraw.Draw(img).text(at, str(digit), fill=ink, font=ImageFont.truetype(FONT, px))
    return img


def lit(img, low=0.45):
    """Uneven light: full at the top left, ``low`` of it at the bottom right."""
    a = np.asarray(img, dtype=float)
    h, w = a.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    gain = 1 - (1 - low) * ((x / w) ** 2 + y / h) / 2
    return Image.fromarray(np.clip(a * (gain if a.ndim == 2 else gain[..., None]), 0, 255)
                           .astype(np.uint8))


def grainy(img, sigma=8, specks=40, seed=0):
    """Grey paper grain (Gaussian, ``sigma`` grey levels) and small dark specks."""
    rng = np.random.default_rng(seed)
    a = np.asarray(img.convert("L"), dtype=float) + rng.normal(0, sigma, img.size[::-1])
    for _ in range(specks):
        y, x = rng.integers(0, a.shape[0] - 3), rng.integers(0, a.shape[1] - 3)
        a[y:y + rng.integers(1, 4), x:x + rng.integers(1, 4)] = 30
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def save(img, path):
    img.save(path, quality=80) if str(path).endswith(".jpg") else img.save(path)
    return str(path)


PICTURES = {
    "blue ink on cream paper, JPEG": lambda d: (drawn(d), "jpg"),
    "white chalk on a dark board, PNG": lambda d: (drawn(d, ink=(240, 240, 240),
                                                         paper=(20, 40, 30)), "png"),
    # drawing programs often keep the brush colour in fully transparent pixels
    "red ink on a transparent background, RGBA PNG": lambda d: (
        drawn(d, ink=(200, 20, 20, 255), paper=(200, 20, 20, 0), mode="RGBA"), "png"),
    "thin pen (3 px on 200), JPEG": lambda d: (drawn(d, width=3), "jpg"),
    "grey, uneven light, grain and specks, JPEG": lambda d: (
        grainy(lit(drawn(d, ink=(60, 60, 60)))), "jpg"),
    "DejaVu Sans, uneven light, 2000x1500 JPEG": lambda d: (
        lit(typed(d, size=(2000, 1500), at=(300, 500), px=700)), "jpg"),
}


@pytest.fixture(scope="module")
def model():
    return pretrained()


def classify(model, images):
    """Digits the network reads in uint8 (N, 28, 28) images."""
    return predict_labels(model, model.predict_scores(preprocess(images, model.dtype)))


# ------------------------------------------------------ reading photographs
@pytest.mark.parametrize("style", PICTURES)
@pytest.mark.parametrize("digit", [0, 1, 2, 4, 7])
def test_pictures_of_digits_are_read(model, tmp_path, style, digit):
    img, ext = PICTURES[style](digit)
    images = hw.read_images(save(img, tmp_path / f"digit.{ext}"))
    assert images.shape == (1, 28, 28) and images.dtype == np.uint8
    assert classify(model, images)[0] == digit


def test_typed_digits_are_read(model, tmp_path):
    """Every digit in DejaVu Sans (its 1 has a flag and a foot; MNIST's rarely do)."""
    images = np.concatenate([hw.read_images(save(typed(d), tmp_path / f"{d}.png"))
                             for d in range(10)])
    np.testing.assert_array_equal(classify(model, images), np.arange(10))


@pytest.mark.parametrize("ink, behind", [((20, 20, 20, 255), 255), ((250, 250, 250, 255), 0)])
def test_transparent_pixels_show_a_contrasting_background(tmp_path, ink, behind):
    img = drawn(7, ink=ink, paper=ink[:3] + (0,), mode="RGBA")
    grey = hw.read_grey(save(img, tmp_path / "clear.png"))
    opaque = np.asarray(img)[..., 3] > 0
    assert (grey[~opaque] == behind).all()
    np.testing.assert_allclose(grey[opaque], np.mean(ink[:3]), atol=1)


def test_camera_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with an EXIF orientation tag is read upright."""
    upright = drawn(7)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6                         # "rotate 90 degrees clockwise to display"
    sideways.save(tmp_path / "sideways.jpg", quality=95, exif=exif)
    upright.save(tmp_path / "upright.jpg", quality=95)
    a = hw.read_images(str(tmp_path / "sideways.jpg"))[0].astype(int)
    b = hw.read_images(str(tmp_path / "upright.jpg"))[0].astype(int)
    assert np.abs(a - b).mean() < 3


def test_16_bit_scans_read_like_8_bit(tmp_path):
    grey = np.asarray(drawn(4).convert("L"), dtype=np.uint16)
    Image.fromarray(grey * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    Image.fromarray(grey.astype(np.uint8)).save(tmp_path / "flat.png")
    np.testing.assert_array_equal(hw.read_images(str(tmp_path / "deep.png")),
                                  hw.read_images(str(tmp_path / "flat.png")))


# -------------------------------------------------------- the pipeline steps
def grey_of(img):
    return np.asarray(img.convert("L"), dtype=np.float64)


def test_polarity_is_detected():
    """Dark ink on light paper and light ink on dark paper give the same digit."""
    grey = grey_of(drawn(2))
    ink, _ = hw.ink_map(grey)
    stroke = grey < 128
    assert ink[stroke].min() > 100 and ink[~stroke].max() < 20
    np.testing.assert_array_equal(hw.mnist_style(grey), hw.mnist_style(255 - grey))


def test_uneven_light_is_not_ink():
    """Light falling to 30% across the page: the page stays background, and the
    ink in the shade counts as much as the ink in full light."""
    grey, even = grey_of(lit(drawn(7), low=0.3)), grey_of(drawn(7))
    ink, _ = hw.ink_map(grey)
    stroke = even < 128
    assert ink[~stroke].max() < 0.25 * ink[stroke].min()
    assert np.percentile(ink[stroke], 10) > 0.8 * np.percentile(ink[stroke], 90)
    diff = hw.mnist_style(grey).astype(int) - hw.mnist_style(even)
    assert np.abs(diff).mean() < 2


def test_specks_are_left_out():
    clean = grey_of(drawn(1))
    speckled = clean.copy()
    speckled[10:14, 10:14] = speckled[280:283, 30:32] = 0       # dust, far from the digit
    speckled[150:152, 380:383] = 40
    np.testing.assert_array_equal(hw.mnist_style(speckled), hw.mnist_style(clean))


def test_label_regions():
    mask = np.zeros((6, 8), bool)
    mask[0:2, 0:2] = True                    # region A
    mask[2, 2] = True                        # touches A by a corner: still A
    mask[4:6, 5:8] = True                    # region B
    mask[0, 7] = True                        # region C, one pixel
    labels = hw.label_regions(mask)
    assert (labels[~mask] == -1).all()
    assert len(np.unique(labels[mask])) == 3
    assert labels[2, 2] == labels[0, 0] != labels[5, 7] != labels[0, 7]


def test_digit_mask_keeps_the_strokes_and_drops_specks():
    ink = np.zeros((60, 60))
    ink[10:50, 28:33] = 200                  # a stroke
    ink[5, 5] = ink[55, 50:52] = 200         # specks
    ink[20:25, 40:45] = 15                   # a faint smudge (under 10% of the stroke)
    keep = hw.digit_mask(ink, level=200.0, noise=1.0)
    rows, cols = np.nonzero(keep)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (9, 50, 27, 33)


def test_crop_to_ink():
    ink = np.zeros((50, 40))
    ink[12:30, 7:11] = 1.0
    ink[25, 20] = 0.5
    crop = hw.crop_to_ink(ink)
    assert crop.shape == (18, 14)
    assert crop[0, 0] == 1.0 and crop[13, 13] == 0.5


@pytest.mark.parametrize("shape, fitted", [((200, 50), (20, 5)), ((30, 90), (7, 20)),
                                           ((4, 2), (20, 10)), ((20, 13), (20, 13)),
                                           ((300, 1), (20, 1))])
def test_fit_box_keeps_the_aspect_ratio(shape, fitted):
    out = hw.fit_box(np.full(shape, 200.0))
    assert out.shape == fitted
    assert out.min() >= 0 and out.max() <= 255


def test_fit_box_is_anti_aliased():
    """Shrinking averages areas: fine stripes become an even grey, not aliased stripes."""
    stripes = np.zeros((200, 200))
    stripes[:, ::2] = 255
    out = hw.fit_box(stripes)
    assert np.abs(out - 127.5).max() < 10


@pytest.mark.parametrize("seed", range(5))
def test_centre_of_mass_is_at_14_14(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(3, 21, 2)
    digit = rng.random((h, w)) ** 4 * 255                     # lopsided mass
    out = hw.centre_by_mass(digit)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out.astype(int).sum() == np.rint(digit).sum()                # nothing cut off
    out = out.astype(float)
    idx = np.arange(28)
    cy, cx = out.sum(1) @ idx / out.sum(), out.sum(0) @ idx / out.sum()
    assert abs(cy - 14) <= 0.5 + 1e-3 and abs(cx - 14) <= 0.5 + 1e-3


def test_pictures_become_mnist_style():
    """Light ink on 0, fit into 20x20, reaching 255, centred by mass."""
    out = hw.mnist_style(grey_of(lit(drawn(4))))
    rows, cols = np.nonzero(out)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 in (20, 21)    # Lanczos may spill a pixel
    assert out.max() == 255 and (out[:, :3] == 0).all() and (out[:, -3:] == 0).all()
    idx = np.arange(28)
    assert abs(out.sum(1) @ idx / out.sum() - 14) <= 0.5 + 1e-3


@pytest.mark.parametrize("digit", [0, 2, 7])
def test_mnist_style_is_idempotent(model, tmp_path, digit):
    """An MNIST-style 28x28 image passes through essentially unchanged: the
    stroke contrast is renormalised (a few grey levels), nothing moves."""
    first = hw.mnist_style(grey_of(drawn(digit)))
    again = [hw.read_images(save(Image.fromarray(first), tmp_path / "mnist.png"))[0],
             # the paper's padded 32x32 form, dark ink on white
             hw.read_images(save(Image.fromarray(255 - pad_bytes(first[None])[0]),
                                 tmp_path / "padded.png"))[0]]
    for second in again:
        diff = np.abs(first.astype(int) - second)
        assert diff.mean() < 0.5 and diff.max() <= 16
    assert (classify(model, np.stack([first, *again])) == digit).all()


@pytest.mark.skipif(not REAL, reason="real MNIST not available (set MINILENET_DATA)")
def test_mnist_test_digits_pass_through(model):
    from minilenet.mnist import load_mnist
    images = load_mnist(progress=False)["test_images"][:300]
    out = np.stack([hw.mnist_style(im) for im in images])
    diff = np.abs(out.astype(int) - images)
    assert diff.mean() < 1                                  # grey levels
    assert np.mean(diff.max(axis=(1, 2)) <= 3) > 0.95
    assert np.mean(classify(model, out) == classify(model, images)) >= 0.99


# ------------------------------------------------------------- IDX and errors
def test_idx_files_are_read_unchanged(tmp_path, rng):
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "three.idx", images)
    np.testing.assert_array_equal(hw.read_images(str(tmp_path / "three.idx")), images)
    write_idx(tmp_path / "big.idx.gz", np.zeros((2, 30, 30), np.uint8))
    with pytest.raises(UserError, match="big.idx.gz: expected 28x28 or 32x32"):
        hw.read_images(str(tmp_path / "big.idx.gz"))


def _bad_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("my digit, as words\n")
    buffer = tmp_path / "whole.png"
    drawn(7).save(buffer)
    (tmp_path / "cut.png").write_bytes(buffer.read_bytes()[:buffer.stat().st_size // 2])
    save(grainy(lit(Image.new("RGB", (400, 300), CREAM)), specks=0), tmp_path / "blank.jpg")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "bad.idx").write_bytes(b"\x00\x00\x99\x03" + bytes(20))
    return {"missing.png": "no such file", "empty.png": "empty", "notes.png": "not an image",
            "cut.png": "damaged or unreadable", "blank.jpg": "no ink found",
            "folder.png": "not a file", "bad.idx": "unknown element type"}


def test_bad_files_are_user_errors(tmp_path):
    for name, message in _bad_files(tmp_path).items():
        path = str(tmp_path / name)
        with pytest.raises(UserError, match=message) as e:
            hw.read_images(path)
        assert str(e.value).startswith(path + ": ")


# ----------------------------------------------------------------- the CLI
@pytest.fixture
def weights(model, tmp_path):
    path = tmp_path / "weights.npz"
    model.save(path)
    return str(path)


def test_predict_reads_a_photo_and_shows_it(weights, tmp_path, capsys):
    photo = save(grainy(lit(drawn(4))), tmp_path / "photo.jpg")
    write_idx(tmp_path / "two.idx", np.stack([hw.read_images(photo)[0]] * 2))
    show = tmp_path / "figs" / "seen.png"
    assert main(["predict", weights, photo, str(tmp_path / "two.idx"),
                 "--show", str(show)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"{photo}: digit 4   RBF distances: ")
    assert len(lines[0].split("RBF distances:")[1].split()) == 10
    assert lines[1].startswith(f"{tmp_path / 'two.idx'}[0]: digit 4")
    assert lines[-1] == f"wrote {show}"
    assert show.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_bad_pictures_are_one_line_errors(weights, tmp_path, capsys):
    for name, message in _bad_files(tmp_path).items():
        assert main(["predict", weights, str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / name}: ") and message in err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_show_needs_the_rbf_output(tmp_path, capsys):
    from minilenet import lenet5
    lenet5("modern").save(tmp_path / "modern.npz")
    photo = save(drawn(1), tmp_path / "one.png")
    assert main(["predict", str(tmp_path / "modern.npz"), photo, "--variant", "modern",
                 "--show", str(tmp_path / "seen.png")]) == 2
    assert "--show draws the ten RBF distances" in capsys.readouterr().err
    assert not (tmp_path / "seen.png").exists()
