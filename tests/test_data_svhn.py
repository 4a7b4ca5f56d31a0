"""capsedu.data.svhn on tiny ``.mat`` files written in SVHN's real format (MATLAB v5, X (32, 32, 3, N), y 1..10):
loading, the 10 -> 0 label mapping, missing and corrupt files, and training the paper's SVHN network."""
from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import scipy.io
import torch

from capsedu.data import DataError, load_split, load_svhn
from capsedu.data.svhn import SVHN_FOLDER, SVHN_URL
from capsedu.train import TrainConfig, fit
from dataset_files import write_svhn, write_svhn_mat
from run_fixtures import quiet


@pytest.fixture
def svhn_root(tmp_path):
    write_svhn(tmp_path, n=12, seed=0)
    return tmp_path


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("split", ["train", "test"])
def test_mat_files_load_as_uint8_nchw_images_and_digit_labels(tmp_path, split):
    images, digits = write_svhn(tmp_path, n=12, seed=1)[split]
    ds = load_svhn(split, root=tmp_path, download=False)
    assert (ds.name, ds.source, ds.n_classes, len(ds)) == ("svhn", "full", 10, 12)
    assert ds.images.dtype == torch.uint8 and ds.image_shape == (3, 32, 32) and ds.labels.dtype == torch.int64
    assert np.array_equal(ds.images.numpy(), images)
    assert ds.labels.tolist() == digits.tolist()  # the file says 10 where the digit is 0
    assert ds.origin == str(tmp_path / SVHN_FOLDER)


def test_x_is_height_width_channel_example(tmp_path):
    (tmp_path / SVHN_FOLDER).mkdir()
    x = np.zeros((32, 32, 3, 2), np.uint8)
    x[3, 5, 2, 1] = 200  # row 3, column 5, blue, second image
    scipy.io.savemat(str(tmp_path / SVHN_FOLDER / "test_32x32.mat"), {"X": x, "y": np.array([[10], [4]], np.uint8)})
    ds = load_svhn("test", root=tmp_path, download=False)
    assert int(ds.images[1, 2, 3, 5]) == 200 and int(ds.images.sum()) == 200
    assert ds.labels.tolist() == [0, 4]


def test_load_split_finds_svhn_in_the_registry(svhn_root):
    assert len(load_split("svhn", "train", root=svhn_root, download=False)) == 12


def test_a_missing_file_offline_names_it_the_folder_and_the_url(tmp_path):
    with pytest.raises(DataError) as info:
        load_svhn("test", root=tmp_path, download=False)
    message = one_line(info)
    assert "test_32x32.mat" in message and str(tmp_path / SVHN_FOLDER) in message and SVHN_URL in message


def test_a_failed_download_is_reported_with_its_reason(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("simulated: no network")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(DataError) as info:
        load_svhn("train", root=tmp_path, download=True, verbose=False)
    message = one_line(info)
    assert "train_32x32.mat" in message and "simulated: no network" in message


def test_subset_true_is_refused_because_none_is_shipped(svhn_root):
    with pytest.raises(DataError, match="no subset is shipped for svhn"):
        load_svhn("test", root=svhn_root, subset=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_file_is_an_error_naming_it(svhn_root, damage):
    path = svhn_root / SVHN_FOLDER / "train_32x32.mat"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a MATLAB file at all" * 20)
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        load_svhn("train", root=svhn_root, download=False)
    assert str(path) in one_line(info)
    assert len(load_svhn("test", root=svhn_root, download=False)) == 12  # the other split is intact


@pytest.mark.parametrize("variables, problem", [
    ({"X": np.zeros((32, 32, 3, 2), np.uint8)}, "lacks the variable(s) y"),
    ({"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1))}, "expected uint8 (32, 32, 3, N)"),
    ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))}, "2 images but y is"),
    ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1], [11]])}, "labels span 1..11"),
])
def test_a_file_with_wrong_contents_is_an_error_naming_it(svhn_root, variables, problem):
    path = svhn_root / SVHN_FOLDER / "test_32x32.mat"
    scipy.io.savemat(str(path), variables)
    with pytest.raises(DataError) as info:
        load_svhn("test", root=svhn_root, download=False)
    message = one_line(info)
    assert problem in message and str(path) in message


def test_fit_trains_the_svhn_network_on_whole_images(svhn_root):
    write_svhn_mat(svhn_root / SVHN_FOLDER / "train_32x32.mat",
                   np.random.default_rng(2).integers(0, 256, (16, 3, 32, 32), dtype=np.uint8), np.arange(16) % 10)
    config = TrainConfig(dataset="svhn", data=str(svhn_root), batch_size=8, eval_batch_size=6,
                         output=str(svhn_root / "run"), seed=0)
    assert config.transforms() == (None, None)  # the paper describes no augmentation for SVHN
    result = fit(config, progress=False, log=quiet)
    cfg = result.model.config
    assert (cfg.in_channels, cfg.image_size, cfg.conv_channels, cfg.primary_types, cfg.primary_dim, cfg.digit_dim) \
        == (3, 32, 64, 16, 6, 8)
    assert result.model.decoder.net[0].in_features == 80  # 10 digit capsules x 8 dimensions
    assert len(result.history) == 1 and result.history[0]["test_accuracy"] == result.test_accuracy
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
