"""minilenet: LeNet-5 (LeCun et al., 1998) from scratch in NumPy and Numba, for teaching."""
from . import config, kernels, losses, paper
from .activations import ReLU, ScaledTanh, Sigmoid, Tanh
from .bitmaps import load_digit_bitmaps
from .conv import Conv2D
from .dense import Dense, Flatten
from .graph import Sequential
from .layer import Layer
from .models import lenet5, predict_labels, pretrained, pretrained_info
from .paper import C3_TABLE
from .pooling import AvgPool2D, MaxPool2D
from .rbf import EuclideanRBF
from .subsampling import Subsampling
from .table_conv import TableConv2D

__version__ = "0.1.0"

__all__ = [
    "config", "kernels", "losses", "paper", "Layer", "Sequential", "Conv2D", "TableConv2D",
    "Subsampling", "AvgPool2D", "MaxPool2D", "ScaledTanh", "Tanh", "Sigmoid", "ReLU",
    "Dense", "Flatten", "EuclideanRBF", "C3_TABLE", "load_digit_bitmaps", "lenet5",
    "predict_labels", "pretrained", "pretrained_info",
]
