"""A photo or scan of a handwritten digit -> an MNIST-style uint8 (28, 28) image.

MNIST was made from scanned digits: grey levels, light ink (255) on a black
background (0), the digit scaled to fit a 20x20 box keeping its aspect ratio
(anti-aliased), then placed in a 28x28 field so that its centre of mass falls
on the field's centre, pixel (14, 14). ``mnist_style`` repeats those steps on
any picture, after steps a photograph needs and MNIST's clean scans did not:

1. The paper is modelled as a smooth surface (a quadratic in x and y, fitted
   to the pixels that are not ink), so uneven lighting is not taken for ink.
   Whichever side of that surface holds more mass is the ink: dark ink on light
   paper is inverted, light ink on a dark background is kept.
2. Paper grain, JPEG artefacts and specks are set apart from the digit by a
   two-level threshold: an ink region counts only if it holds strong ink (at
   least half the stroke's contrast), and at least 5% of what the largest
   region holds. The digit is cropped to the bounding box of what counts.
3. The stroke's contrast is stretched to MNIST's: full ink is 255.

Then the paper's own preprocessing applies (``minilenet.mnist.preprocess``:
2 pixels of padding to 32x32, background -0.1, ink 1.175).
"""
import os

import numpy as np

from .errors import UserError
from .idx import GZIP_MAGIC, read_idx

FIELD, BOX = 28, 20          # MNIST: a 28x28 field, the digit fit into 20x20
WORKING_SIZE = 512           # larger pictures are first reduced to this longest side
STRONG = 0.5                 # strong ink: at least this fraction of the stroke contrast
WEAK = 0.1                   # weak ink: at least this fraction (and above the noise)
MIN_REGION = 0.05            # a region is kept if its strong ink >= this x the largest's
MIN_CONTRAST = 16.0          # grey levels: less than this is a blank page
FIT_POINTS = 4096            # the paper's surface is fitted to about this many pixels
IDX_STARTS = (b"\x00\x00", GZIP_MAGIC)    # an IDX file's first two bytes, raw or gzip


def read_images(path):
    """The images a file holds, as uint8 (N, 28, 28) or (N, 32, 32).

    An IDX file gives all its images, unchanged (they must be 28x28 or 32x32).
    Any other file is read as a picture of one digit (PNG, JPEG, ...: what
    Pillow reads) and converted by ``mnist_style``: (1, 28, 28).
    """
    if _first_bytes(path) in IDX_STARTS:
        return _read_idx_images(path)
    return mnist_style(read_grey(path), name=path)[None]


def read_picture(path):
    """What the file shows, for display: a picture's grey levels (H, W) float64,
    or an IDX file's first image (H, W) uint8."""
    return _read_idx_images(path)[0] if _first_bytes(path) in IDX_STARTS else read_grey(path)


def read_grey(path):
    """A picture file as grey levels: float64 (H, W) in [0, 255].

    The camera's orientation tag is applied; colour becomes luminance;
    transparent pixels show the background: white behind dark content,
    black behind light content.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError
    _first_bytes(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
    except UnidentifiedImageError as e:
        raise UserError(f"{path}: not an image (Pillow cannot read it) nor an IDX file; "
                        f"give a PNG or JPEG picture of one digit") from e
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: damaged or unreadable image ({e}); "
                        f"save it again as PNG or JPEG") from e
    if img.mode == "I" or img.mode.startswith("I;16"):     # 16-bit grey scans
        return np.asarray(img, dtype=np.float64) / 257
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
    grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114])      # ITU-R 601 luma
    alpha = rgba[..., 3] / 255
    if alpha.min() < 1:
        content = (grey * alpha).sum() / max(alpha.sum(), 1e-12)
        grey = alpha * grey + (1 - alpha) * (255.0 if content < 128 else 0.0)
    return grey


def mnist_style(grey, name="image"):
    """Grey levels (H, W) of a digit, any size and polarity -> uint8 (28, 28), MNIST-style.

    Light ink on a black background, the digit cropped, fit into 20x20 keeping
    its aspect ratio, its centre of mass on pixel (14, 14). ``name`` (the file)
    goes into the error raised when there is no ink. The picture should show
    only paper around the digit: a table edge or ruled lines would count as ink.
    """
    grey = _reduce(np.asarray(grey, dtype=np.float64))
    ink, noise = ink_map(grey)
    level = _stroke_level(ink, noise)
    if level < max(MIN_CONTRAST, 8 * noise):
        raise UserError(f"{name}: no ink found (a blank page?); the digit must be clearly "
                        f"darker or lighter than the paper")
    keep = digit_mask(ink, level, noise)
    ink = np.where(keep, np.minimum(ink * (255 / level), 255), 0.0)
    ink[ink < 0.5] = 0                          # what would round to 0 is not ink
    digit = fit_box(crop_to_ink(ink))
    return centre_by_mass(digit * (255 / digit.max()))      # MNIST digits all reach 255


def ink_map(grey):
    """Ink per pixel over the paper, whatever the polarity: ((H, W) float64 >= 0, noise).

    The paper is a quadratic surface fitted to the non-ink pixels: starting
    from the median grey level, five rounds leave out the pixels more than 3
    noise deviations off the surface, on either side, and refit. The ink is on
    the side of the surface with more mass. Dark ink is measured relative to
    the paper's brightness around it (in grey levels of the median paper), so
    that a shadow does not make it fainter. ``noise``: the paper's robust
    standard deviation, in grey levels.
    """
    h, w = grey.shape
    step = max(1, round(np.sqrt(h * w / FIT_POINTS)))     # the surface is smooth: fit a sample
    y, x = np.mgrid[0:h, 0:w] / np.array([max(h - 1, 1), max(w - 1, 1)])[:, None, None] - 0.5
    basis = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)
    sample, values = basis[::step, ::step].reshape(-1, 6), grey[::step, ::step].ravel()
    residual, paper = values - np.median(values), np.ones(values.shape, bool)
    for _ in range(5):
        noise = 1.4826 * np.median(np.abs(residual[paper]))
        paper = np.abs(residual) <= max(3 * noise, 2.0)
        coef = np.linalg.lstsq(sample[paper], values[paper], rcond=None)[0]
        residual = values - sample @ coef
    noise = 1.4826 * np.median(np.abs(residual[paper]))
    surface = basis @ coef
    residual = grey - surface
    if residual[np.abs(residual) > max(3 * noise, 2.0)].sum() > 0:
        return np.maximum(residual, 0), float(noise)
    # Dark ink reflects a fixed fraction of the light that falls on it: measured
    # relative to the paper around it, it is as dark in a shadow as in full light.
    return np.maximum(-residual, 0) * (np.median(surface) / np.maximum(surface, 1)), float(noise)


def digit_mask(ink, level, noise):
    """Bool (H, W): the digit's pixels, without paper grain and specks.

    Weak ink (above the noise and WEAK x ``level``) is grouped into 8-connected
    regions; a region counts if its strong ink (>= STRONG x ``level``) is at
    least MIN_REGION of the largest region's. The mask is widened by one pixel
    to keep the strokes' anti-aliased edges.
    """
    weak = ink > max(4 * noise, WEAK * level)
    labels = label_regions(weak)
    strong = np.bincount(labels[weak], weights=np.where(ink >= STRONG * level, ink, 0)[weak],
                         minlength=labels.size)
    kept = strong >= MIN_REGION * strong.max()
    return _dilate(weak & kept[np.maximum(labels, 0)])


def label_regions(mask):
    """8-connected regions of a bool (H, W) mask: int64 (H, W), -1 off the mask,
    else the flat index of the region's first pixel (its label).

    Each pixel takes the smallest label among its neighbours, then the label of
    the pixel it names (pointer jumping), until nothing changes.
    """
    h, w = mask.shape
    off = h * w
    labels = np.where(mask, np.arange(off).reshape(h, w), off)
    while True:
        padded = np.pad(labels, 1, constant_values=off)
        new = np.minimum.reduce([padded[i:i + h, j:j + w] for i in range(3) for j in range(3)])
        new = np.where(mask, new, off).ravel()
        on = new < off
        new[on] = new[new[on]]
        new = new.reshape(h, w)
        if np.array_equal(new, labels):
            return np.where(mask, labels, -1)
        labels = new


def crop_to_ink(ink):
    """(H, W) -> (h, w): the bounding box of the nonzero pixels."""
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def fit_box(ink, box=BOX):
    """(h, w) -> (h', w') with max(h', w') = ``box``, keeping the aspect ratio.

    Lanczos resampling (anti-aliased when shrinking); values clipped to [0, 255].
    """
    from PIL import Image
    h, w = ink.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = Image.fromarray(ink.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(out, dtype=np.float64), 0, 255)


def centre_by_mass(digit, field=FIELD):
    """(h, w) ink -> uint8 (field, field), shifted by whole pixels so that the
    centre of mass lies within half a pixel of (field/2, field/2)."""
    h, w = digit.shape
    mass = digit.sum()
    cy = (digit.sum(axis=1) @ np.arange(h)) / mass
    cx = (digit.sum(axis=0) @ np.arange(w)) / mass
    top, left = int(np.rint(field / 2 - cy)), int(np.rint(field / 2 - cx))
    canvas = np.zeros((field + 2 * h, field + 2 * w))      # room for a digit pushed off an edge
    canvas[h + top:2 * h + top, w + left:2 * w + left] = digit
    out = canvas[h:h + field, w:w + field]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _stroke_level(ink, noise):
    """The stroke's contrast: the 95th percentile of the ink above 4 x the noise."""
    above = ink[ink > max(4 * noise, 2.0)]
    return float(np.percentile(above, 95)) if above.size else 0.0


def _dilate(mask):
    """Bool (H, W) grown by one pixel in all 8 directions."""
    h, w = mask.shape
    padded = np.pad(mask, 1)
    return np.logical_or.reduce([padded[i:i + h, j:j + w] for i in range(3) for j in range(3)])


def _reduce(grey, size=WORKING_SIZE):
    """Shrink (H, W) by area averaging so that its longest side is at most ``size``."""
    from PIL import Image
    h, w = grey.shape
    if max(h, w) <= size:
        return grey
    scale = size / max(h, w)
    small = Image.fromarray(grey.astype(np.float32)).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


def _first_bytes(path):
    """The first two bytes of a file; UserError if it is missing, unreadable or empty."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file; check the path")
    if not os.path.isfile(path):
        raise UserError(f"{path}: not a file; give a PNG or JPEG picture of a digit "
                        f"or an IDX image file")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as e:
        raise UserError(f"{path}: cannot read the file ({e.strerror}); check its "
                        f"permissions") from e
    if not head:
        raise UserError(f"{path}: the file is empty (0 bytes); give a PNG or JPEG picture "
                        f"of a digit or an IDX image file")
    return head


def _read_idx_images(path):
    """uint8 (N, 28, 28) or (N, 32, 32) from an IDX image file (IdxError if it is not IDX)."""
    images = read_idx(path)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[1:] not in ((28, 28), (32, 32)):
        raise UserError(f"{path}: expected 28x28 or 32x32 images, got shape {images.shape}; "
                        f"an IDX image file holds (N, 28, 28) uint8 images")
    if images.dtype != np.uint8:
        raise UserError(f"{path}: expected uint8 images, got {images.dtype}")
    return images
