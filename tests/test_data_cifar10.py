"""capsedu.data.cifar10 on tiny batches written in CIFAR-10's real format (pickled dicts): loading, the
safe unpickler, missing and corrupt files, and training with the paper's 24x24-crop recipe."""
from __future__ import annotations

import pickle
import urllib.error

import numpy as np
import pytest
import torch

from capsedu.data import CenterCrop, DataError, RandomCrop, load_cifar10, load_split
from capsedu.data.cifar10 import CIFAR10_FOLDER, CIFAR10_URL
from capsedu.train import TrainConfig, fit
from dataset_files import write_cifar10, write_cifar10_batch
from run_fixtures import quiet


@pytest.fixture
def cifar_root(tmp_path):
    write_cifar10(tmp_path, per_batch=4, seed=0)
    return tmp_path


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batches_load_as_uint8_rgb_planes_in_file_order(tmp_path, protocol):
    written = write_cifar10(tmp_path, per_batch=3, seed=protocol, protocol=protocol)
    for split, n in (("train", 15), ("test", 3)):
        ds = load_cifar10(split, root=tmp_path, download=False)
        images, labels = written[split]
        assert (ds.name, ds.source, ds.n_classes, len(ds)) == ("cifar10", "full", 10, n)
        assert ds.images.dtype == torch.uint8 and ds.image_shape == (3, 32, 32) and ds.labels.dtype == torch.int64
        assert np.array_equal(ds.images.numpy(), images) and np.array_equal(ds.labels.numpy(), labels)
        assert ds.origin == str(tmp_path / CIFAR10_FOLDER)


def test_a_row_of_3072_bytes_is_the_red_then_green_then_blue_32x32_plane(tmp_path):
    (tmp_path / CIFAR10_FOLDER).mkdir()
    row = np.zeros((1, 3072), np.uint8)
    row[0, 0], row[0, 1024 + 33], row[0, 2048 + 1023] = 10, 20, 30  # R(0,0), G(1,1), B(31,31)
    write_cifar10_batch(tmp_path / CIFAR10_FOLDER / "test_batch", row, np.array([7]))
    image = load_cifar10("test", root=tmp_path, download=False).images[0]
    assert (int(image[0, 0, 0]), int(image[1, 1, 1]), int(image[2, 31, 31])) == (10, 20, 30)
    assert int(image.sum()) == 60


def test_load_split_finds_cifar10_in_the_registry(cifar_root):
    assert len(load_split("cifar10", "test", root=cifar_root, download=False)) == 4


def test_missing_files_offline_name_the_files_the_folder_and_the_url(tmp_path):
    with pytest.raises(DataError) as info:
        load_cifar10("train", root=tmp_path, download=False)
    message = one_line(info)
    assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5" in message
    assert str(tmp_path / CIFAR10_FOLDER) in message and CIFAR10_URL in message


def test_a_failed_download_is_reported_with_its_reason(tmp_path, monkeypatch, capsys):
    import torchvision.datasets.utils as tv_utils

    asked = []

    def offline(url, *args, **kwargs):
        asked.append(url)
        print("Downloading ...")
        raise urllib.error.URLError("simulated: no network")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(DataError) as info:
        load_cifar10("test", root=tmp_path, download=True, verbose=False)
    message = one_line(info)
    assert asked == [CIFAR10_URL]
    assert "test_batch" in message and "simulated: no network" in message
    assert capsys.readouterr() == ("", "")  # verbose=False hides torchvision's messages


def test_subset_true_is_refused_because_none_is_shipped(cifar_root):
    with pytest.raises(DataError, match="no subset is shipped for cifar10"):
        load_cifar10("train", root=cifar_root, subset=True)


def test_a_truncated_batch_is_an_error_naming_it(cifar_root):
    path = cifar_root / CIFAR10_FOLDER / "data_batch_3"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        load_cifar10("train", root=cifar_root, download=False)
    assert str(path) in one_line(info)
    assert len(load_cifar10("test", root=cifar_root, download=False)) == 4  # the other split is intact


class _Payload:
    """Unpickling this would run its __reduce__: create a file."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_a_batch_that_names_other_classes_is_refused_without_running_them(cifar_root):
    path = cifar_root / CIFAR10_FOLDER / "test_batch"
    target = cifar_root / "pwned"
    path.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Payload(target)},
                                  protocol=2))
    with pytest.raises(DataError, match=r"it asks to run (io|builtins)\.open, which capsedu does not unpickle") as info:
        load_cifar10("test", root=cifar_root, download=False)
    assert str(path) in one_line(info)
    assert not target.exists()


@pytest.mark.parametrize("batch, problem", [
    ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, "expected uint8 (N, 3072)"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "expected uint8 (N, 3072)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but labels of shape (1,)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "labels span 0..10, expected 0..9"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "lacks labels"),
    ([1, 2, 3], "holds a list, not a dict"),
])
def test_a_batch_with_wrong_contents_is_an_error_naming_it(cifar_root, batch, problem):
    path = cifar_root / CIFAR10_FOLDER / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError) as info:
        load_cifar10("test", root=cifar_root, download=False)
    message = one_line(info)
    assert problem in message and str(path) in message


def test_fit_trains_the_cifar10_network_on_random_24x24_crops_and_tests_on_the_centre(cifar_root):
    config = TrainConfig(dataset="cifar10", data=str(cifar_root), batch_size=8, train_limit=16, eval_batch_size=4,
                         output=str(cifar_root / "run"), seed=0)
    assert config.transforms() == (RandomCrop(24), CenterCrop(24))
    result = fit(config, progress=False, log=quiet)
    net = result.model
    assert net.config.image_size == 24 and net.config.in_channels == 3 and net.config.primary_types == 64
    assert net.config.none_of_the_above and net.preset == "cifar10"
    assert len(result.history) == 1 and 0.0 <= result.test_accuracy <= 1.0
    assert all(torch.isfinite(p).all() for p in net.parameters())
    out = net.eval()(torch.rand(2, 3, 24, 24))
    assert out.lengths.shape == (2, 10) and out.reconstructions.shape == (2, 3, 24, 24)
