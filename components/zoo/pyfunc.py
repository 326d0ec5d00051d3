"""Zoo versions as MLflow Models: a `python_function` flavor whose loader is this module,
reading the bundle (safetensors weights + bundle.json + manifest) that sits in the model's
`data/` folder. Nothing is unpickled: `mlflow.pyfunc.load_model("models:/NAME@ALIAS")` and
`mlflow models serve` build the network from bundle.json's allow-listed classes and load its
weights with safetensors.

Input: images as the dataset yields them before preprocessing, (N, C, H, W) or flattened
(N, C·H·W), uint8 0..255 or float 0..1; the model applies its own preprocessing (the bundle's
training-split statistics). Output: one row per image with `label` (the class name),
`class_index` and `p_<class>` (softmax probabilities).
"""
from __future__ import annotations

import os
from pathlib import Path
import shutil
import tempfile
from typing import Any

import numpy as np

LOADER = "components.zoo.pyfunc"


class ZooModel:
    """What `mlflow.pyfunc.load_model` wraps."""

    def __init__(self, bundle_dir: str | os.PathLike) -> None:
        from components.zoo.bundle import load_bundle

        self.net, self.normalizer, self.info = load_bundle(bundle_dir)  # every file checked against its manifest
        self.classes = [str(c) for c in self.info["classes"]]
        self.input_shape = tuple(int(s) for s in self.info["input_shape"])

    def images(self, model_input: Any) -> Any:
        import torch

        if hasattr(model_input, "to_numpy"):  # a DataFrame: one image per row
            model_input = model_input.to_numpy()
        x = np.asarray(model_input)
        scale = 255.0 if x.dtype == np.uint8 else 1.0
        try:
            x = x.astype(np.float32).reshape(-1, *self.input_shape) / scale
        except ValueError:
            raise ValueError(f"expected images of shape {list(self.input_shape)} (or flattened, {int(np.prod(self.input_shape))} values "
                             f"each), got an array of shape {list(np.asarray(model_input).shape)}") from None
        return torch.from_numpy(np.ascontiguousarray(x))

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import pandas as pd
        import torch

        with torch.no_grad():
            probabilities = torch.softmax(self.net(self.normalizer(self.images(model_input))), dim=1).numpy()
        index = probabilities.argmax(axis=1)
        frame = {"label": [self.classes[i] for i in index], "class_index": index.astype(np.int64)}
        frame.update({f"p_{c}": probabilities[:, j].astype(np.float64) for j, c in enumerate(self.classes)})
        return pd.DataFrame(frame)


def _load_pyfunc(data_path: str) -> ZooModel:
    """MLflow's entry point for a `loader_module` model: `data_path` is the bundle folder."""
    return ZooModel(data_path)


def save_model(bundle_dir: str | os.PathLike, path: str | os.PathLike) -> str:
    """An MLflow Model folder at `path` holding a copy of the bundle under `data/`; returns the
    bundle's path inside it (relative)."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    import torch

    model = ZooModel(bundle_dir)
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *model.input_shape))]),
        outputs=Schema([ColSpec("string", "label"), ColSpec("long", "class_index"),
                        *(ColSpec("double", f"p_{c}") for c in model.classes)]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bundle"
        shutil.copytree(bundle_dir, data)
        mlflow.pyfunc.save_model(
            str(path), loader_module=LOADER, data_path=str(data), signature=signature,
            input_example=np.zeros((2, *model.input_shape), dtype=np.float32),
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "safetensors", "pandas", "raysitter"],
        )
    return "data/bundle"
