"""Models. Every constructor takes `input_shape` (C, H, W) and `num_classes` from the
dataset, plus an `activation` factory (a zero-argument callable returning a module)."""
from components.models.convnet import ConvNet
from components.models.mlp import MLP

__all__ = ["ConvNet", "MLP"]
