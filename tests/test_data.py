"""Datasets, splits and preprocessing."""
from __future__ import annotations

import pytest
import torch

from components.data import CIFAR10Source, DataNotFoundError, DigitsSource, ImageFolderSource, SyntheticSource
from components.preprocess import ZeroCenter


def test_digits_splits_are_deterministic_disjoint_and_complete():
    a, b = DigitsSource().load(seed=7), DigitsSource().load(seed=7)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    c = DigitsSource().load(seed=8)
    assert not torch.equal(a.train.y, c.train.y)
    rows = lambda s: {tuple(r.flatten().tolist()) for r in s.x}  # noqa: E731
    assert not rows(a.val) & rows(a.test) - rows(a.train)  # no val/test image leaks from one to the other
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert 0.0 <= float(a.train.x.min()) and float(a.train.x.max()) <= 1.0


def test_digits_are_read_from_scikit_learns_file_exactly_as_load_digits_reads_them():
    import numpy as np
    from sklearn.datasets import load_digits

    from components.data.digits import digits_arrays

    images, target = digits_arrays()
    bunch = load_digits()
    assert images.shape == (1797, 8, 8) and np.array_equal(images, bunch.images) and np.array_equal(target, bunch.target)


def test_digits_class_subset_is_relabelled():
    s = DigitsSource(classes=[5, 6, 7, 8, 9]).load(seed=0)
    assert s.classes == ["5", "6", "7", "8", "9"]
    assert set(s.train.y.tolist()) == {0, 1, 2, 3, 4}


def test_synthetic_any_shape():
    s = SyntheticSource(num_samples=100, shape=(2, 5, 7), num_classes=4).load(seed=0)
    assert s.input_shape == (2, 5, 7) and s.num_classes == 4


def test_cifar_reads_local_files(fake_cifar):
    s = CIFAR10Source(str(fake_cifar), val_fraction=0.2).load(seed=0)
    assert s.train.x.dtype == torch.uint8 and s.input_shape == (3, 32, 32)
    assert len(s.train) == 80 and len(s.val) == 20 and len(s.test) == 20
    assert s.classes == [f"label{i}" for i in range(10)]


def test_missing_cifar_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError, match="cifar-10-python.tar.gz"):
        CIFAR10Source(str(tmp_path / "nowhere"))


def test_imagefolder_reads_and_resizes(fake_imagefolder):
    s = ImageFolderSource(str(fake_imagefolder), image_size=(8, 8), channels=3).load(seed=0)
    assert s.classes == ["blue", "red"] and s.input_shape == (3, 8, 8)
    gray = ImageFolderSource(str(fake_imagefolder), image_size=(8, 8), channels=1).load(seed=0)
    assert gray.input_shape == (1, 8, 8)


def test_imagefolder_missing_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist"):
        ImageFolderSource(str(tmp_path / "nope"))


@pytest.mark.parametrize("mode", ["per_channel", "per_dataset"])
def test_statistics_come_from_the_training_split_only(mode):
    splits = DigitsSource().load(seed=0)
    norm = ZeroCenter(mode=mode, scale=True).fit(splits.train.as_float())
    train = splits.train.as_float().double()
    expected = train.mean(dim=(0, 2, 3)) if mode == "per_channel" else train.mean().repeat(1)
    assert torch.allclose(norm.mean.double(), expected, atol=1e-6)
    everything = torch.cat([splits.train.x, splits.val.x, splits.test.x]).double()
    assert not torch.allclose(norm.mean.double(), everything.mean(dim=(0, 2, 3)), atol=1e-6)
    centred = norm(splits.train.as_float())
    assert abs(float(centred.mean())) < 1e-4 and abs(float(centred.std()) - 1) < 1e-3


def test_per_channel_differs_from_per_dataset_on_colour_images():
    x = torch.rand(50, 3, 4, 4) * torch.tensor([1.0, 0.5, 0.1]).view(1, 3, 1, 1)
    per_channel = ZeroCenter("per_channel").fit(x)
    per_dataset = ZeroCenter("per_dataset").fit(x)
    assert len(set(per_channel.mean.tolist())) == 3 and len(set(per_dataset.mean.tolist())) == 1


def test_imagefolder_streamed_from_files_trains_exactly_like_in_memory(compose_train, fake_imagefolder):
    """in_memory=false decodes each batch in DataLoader worker processes; the images, their
    order and so every metric are the same as with the folder held in memory."""
    from omegaconf import OmegaConf

    from components.data.files import ImageFiles
    from pipelines.runtime import build
    from pipelines.runtime.worker import LocalSession, run_training

    def run(in_memory: bool) -> list[dict]:
        config = OmegaConf.to_container(compose_train([
            "data=imagefolder", f"data.root={fake_imagefolder}", "data.image_size=[8,8]", f"data.in_memory={in_memory}",
            "trainer.epochs=2", "trainer.batch_size=4", "augment=flip_crop", "diagnostics=off"]), resolve=True)
        session = LocalSession()
        run_training(config, session)
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in session.reports]

    streamed = build.load_splits(compose_train(["data=imagefolder", f"data.root={fake_imagefolder}", "data.in_memory=false"]).data, 0)
    assert isinstance(streamed.train.x, ImageFiles) and streamed.input_shape == (3, 32, 32)
    assert run(False) == run(True)


def test_image_files_read_on_demand(fake_imagefolder):
    files = ImageFolderSource(str(fake_imagefolder), image_size=(8, 8), in_memory=False, loader_workers=0).load(seed=0)
    held = ImageFolderSource(str(fake_imagefolder), image_size=(8, 8)).load(seed=0)
    assert torch.equal(files.train.x[2:5], held.train.x[2:5]) and torch.equal(files.test.x[torch.tensor([1, 0])], held.test.x[torch.tensor([1, 0])])
    assert torch.equal(files.train.sample().x, held.train.x) and files.train.x.shape == held.train.x.shape
