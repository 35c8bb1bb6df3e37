"""Experiment-tracked deepfake image detection: data, four CNNs, tuning, registry, serving."""

__version__ = "0.1.0"

LABELS = ("real", "fake")  # index = class id; the models output P(fake)
SPLITS = ("train", "valid", "test")
