"""Models. Every constructor takes `input_shape` (C, H, W) and `num_classes` from the
dataset, plus an `activation` factory (a zero-argument callable returning a module). Each
model has a `head` (the final linear layer) that transfer learning replaces."""
from components.model.activations import Maxout
from components.model.convnet import ConvNet
from components.model.mlp import MLP
from components.model.resnet import ResNet

__all__ = ["ConvNet", "MLP", "Maxout", "ResNet"]
