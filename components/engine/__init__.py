"""The training step, evaluation and checkpoints: plain PyTorch, runnable in-process or in a Ray worker."""
