"""A trained network on labelled digits: its error rate, its predictions and the
confusion matrix (for ``minilenet evaluate``, ``predict`` and the trainer's
per-epoch test error)."""
import numpy as np

from .models import predict_labels


def evaluate(model, x, labels, batch_size=1000):
    """(error rate, predicted labels (N,), scores (N, K)) of ``model`` on the
    preprocessed input x (N, C, H, W), ``batch_size`` samples at a time."""
    scores = model.predict_scores(x, batch_size)
    predicted = predict_labels(model, scores)
    return float(np.mean(predicted != labels)), predicted, scores


def confusion_matrix(labels, predicted, classes=10):
    """(classes, classes) counts: row = true class, column = predicted class."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (labels, predicted), 1)
    return m
