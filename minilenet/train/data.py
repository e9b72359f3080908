"""The images a training run reads, as the network reads them, made once."""
from dataclasses import dataclass

import numpy as np

from .. import mnist


@dataclass
class Data:
    """Training images as the network's uint8 input (N, H, W) (``TrainConfig.input_bytes``:
    padded to 32x32 for LeNet-5; scaled to floats batch by batch, so the float
    data set is never held twice); test images both as uint8 (N, 28, 28) for
    figures and as the network's scaled input (N, 1, H, W); an optional
    validation set held out of the training images."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_x: np.ndarray
    test_labels: np.ndarray
    test_images: np.ndarray
    val_x: np.ndarray = None
    val_labels: np.ndarray = None

    @classmethod
    def from_mnist(cls, arrays, config, dtype=np.float32):
        """From ``mnist.load_mnist``'s arrays, cut to ``config.limit`` and
        ``config.test_limit``, with ``config.validation`` images held out."""
        train_images, train_labels = arrays["train_images"], arrays["train_labels"]
        test_images, test_labels = arrays["test_images"], arrays["test_labels"]
        if config.limit:
            train_images = train_images[:config.limit]
            train_labels = train_labels[:config.limit]
        if config.test_limit:
            test_images = test_images[:config.test_limit]
            test_labels = test_labels[:config.test_limit]
        val_x = val_labels = None
        if config.validation:
            train_images, train_labels, val_images, val_labels = mnist.split_validation(
                train_images, train_labels, config.validation, seed=config.seed)
            val_x = mnist.scale_bytes(config.input_bytes(val_images), dtype)
            val_labels = val_labels.astype(np.int64)
        return cls(config.input_bytes(train_images), train_labels.astype(np.int64),
                   mnist.scale_bytes(config.input_bytes(test_images), dtype),
                   test_labels.astype(np.int64), test_images, val_x, val_labels)
