"""capsedu.data.smallnorb on tiny files written in the NORB binary-matrix format (plain and gzipped):
the header checks, the 96 -> 48 resize, missing and corrupt files, and training with the paper's crops."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from capsedu.data import CenterCrop, DataError, RandomCrop, load_smallnorb, load_split
from capsedu.data.smallnorb import SMALLNORB_FILES, SMALLNORB_FOLDER, SMALLNORB_URL, downsample_2x
from capsedu.train import TrainConfig, fit
from dataset_files import BYTE_MAGIC, INT_MAGIC, write_norb_matrix, write_smallnorb
from run_fixtures import quiet

DAT, CAT, _INFO = SMALLNORB_FILES["train"]


@pytest.fixture
def norb_root(tmp_path):
    write_smallnorb(tmp_path, n=8, seed=0)
    return tmp_path


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def block_means(images: np.ndarray) -> np.ndarray:
    """The reference resize: each 2x2 block's mean, rounded half up (written without the loader's code)."""
    n, c, h, w = images.shape
    out = np.zeros((n, c, h // 2, w // 2), np.uint8)
    for y in range(h // 2):
        for x in range(w // 2):
            total = images[:, :, 2 * y:2 * y + 2, 2 * x:2 * x + 2].astype(int).sum(axis=(2, 3))
            out[:, :, y, x] = np.floor(total / 4 + 0.5)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_stereo_pairs_load_resized_to_48x48_with_both_cameras_as_channels(tmp_path, gz):
    written = write_smallnorb(tmp_path, n=6, seed=1, gz=gz)
    for split in ("train", "test"):
        images, labels = written[split]
        ds = load_smallnorb(split, root=tmp_path)
        assert (ds.name, ds.source, ds.n_classes, len(ds)) == ("smallnorb", "full", 5, 6)
        assert ds.images.dtype == torch.uint8 and ds.image_shape == (2, 48, 48) and ds.labels.dtype == torch.int64
        assert np.array_equal(ds.images.numpy(), block_means(images))
        assert ds.labels.tolist() == labels.tolist()
        assert ds.origin == str(tmp_path / SMALLNORB_FOLDER)


def test_the_resize_averages_each_2x2_block_and_rounds_halves_up():
    images = np.array([[[[0, 1, 255, 255], [1, 0, 255, 254], [4, 4, 0, 0], [4, 4, 0, 3]]]], np.uint8)  # (1, 1, 4, 4)
    # block means: 0.5 -> 1, 254.75 -> 255, 4 -> 4, 0.75 -> 1
    assert downsample_2x(images).tolist() == [[[[1, 255], [4, 1]]]]
    assert downsample_2x(images, chunk=1).dtype == np.uint8


def test_load_split_finds_smallnorb_in_the_registry(norb_root):
    assert len(load_split("smallnorb", "test", root=norb_root)) == 8


def test_missing_files_name_both_files_the_folder_and_the_url(tmp_path):
    with pytest.raises(DataError) as info:
        load_smallnorb("train", root=tmp_path)
    message = one_line(info)
    assert DAT in message and CAT in message and str(tmp_path / SMALLNORB_FOLDER) in message
    assert SMALLNORB_URL in message and "does not download" in message


def test_a_missing_label_file_is_named_alone(norb_root):
    (norb_root / SMALLNORB_FOLDER / CAT).unlink()
    with pytest.raises(DataError) as info:
        load_smallnorb("train", root=norb_root)
    message = one_line(info)
    assert CAT in message and DAT not in message


def test_subset_true_is_refused_because_none_is_shipped(norb_root):
    with pytest.raises(DataError, match="no subset is shipped for smallnorb"):
        load_smallnorb("train", root=norb_root, subset=True)


@pytest.mark.parametrize("name, cut, problem", [
    (DAT, 0.5, "truncated or corrupt"),
    (CAT, 0.9, "truncated or corrupt"),
    (DAT, 10, "truncated inside its header"),
    (DAT, 5, "shorter than the header"),
])
def test_a_truncated_file_is_an_error_naming_it(norb_root, name, cut, problem):
    path = norb_root / SMALLNORB_FOLDER / name
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut) if cut < 1 else cut])
    with pytest.raises(DataError, match=problem) as info:
        load_smallnorb("train", root=norb_root)
    assert str(path) in one_line(info)
    assert len(load_smallnorb("test", root=norb_root)) == 8  # the other split is intact


def test_a_padded_file_is_an_error_too(norb_root):
    path = norb_root / SMALLNORB_FOLDER / DAT
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="header promises shape") as info:
        load_smallnorb("train", root=norb_root)
    assert str(path) in one_line(info)


def test_a_truncated_gzip_is_an_error_naming_it(tmp_path):
    write_smallnorb(tmp_path, n=4, seed=2, gz=True)
    path = tmp_path / SMALLNORB_FOLDER / f"{DAT}.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        load_smallnorb("train", root=tmp_path)
    assert str(path) in one_line(info)


def test_the_label_file_where_the_image_file_belongs_is_caught_by_its_magic_number(norb_root):
    folder = norb_root / SMALLNORB_FOLDER
    (folder / DAT).write_bytes((folder / CAT).read_bytes())
    with pytest.raises(DataError, match=f"magic number 0x{INT_MAGIC:08X}, expected 0x{BYTE_MAGIC:08X}") as info:
        load_smallnorb("train", root=norb_root)
    assert str(folder / DAT) in one_line(info)


@pytest.mark.parametrize("images, labels, problem", [
    (np.zeros((4, 1, 96, 96), np.uint8), np.zeros(4), "expected (N, 2, 96, 96) stereo pairs"),
    (np.zeros((4, 2, 96, 96), np.uint8), np.zeros(3), "holds 4 image pairs but"),
    (np.zeros((2, 2, 96, 96), np.uint8), np.array([0, 5]), "labels span 0..5, expected 0..4"),
])
def test_files_with_wrong_contents_are_errors_naming_them(norb_root, images, labels, problem):
    folder = norb_root / SMALLNORB_FOLDER
    write_norb_matrix(folder / DAT, images, BYTE_MAGIC)
    write_norb_matrix(folder / CAT, labels, INT_MAGIC)
    with pytest.raises(DataError) as info:
        load_smallnorb("train", root=norb_root)
    message = one_line(info)
    assert problem in message and (str(folder / DAT) in message or str(folder / CAT) in message)


def test_a_header_promising_more_than_the_file_holds_never_allocates_it(norb_root):
    path = norb_root / SMALLNORB_FOLDER / DAT
    huge = struct.pack("<iiiiii", BYTE_MAGIC, 4, 2 ** 30, 2, 96, 96)
    path.write_bytes(huge + b"\0" * 100)
    with pytest.raises(DataError, match="header promises shape"):
        load_smallnorb("train", root=norb_root)
    gz = norb_root / SMALLNORB_FOLDER / f"{DAT}.gz"
    path.unlink()
    gz.write_bytes(gzip.compress(huge + b"\0" * 100))
    with pytest.raises(DataError, match="header promises shape"):
        load_smallnorb("train", root=norb_root)


def test_fit_trains_the_mnist_architecture_on_random_32x32_crops_and_tests_on_the_centre(norb_root):
    write_smallnorb(norb_root, n=16, seed=3)
    config = TrainConfig(dataset="smallnorb", data=str(norb_root), batch_size=8, test_limit=8, eval_batch_size=8,
                         output=str(norb_root / "run"), seed=0)
    assert config.transforms() == (RandomCrop(32), CenterCrop(32))
    result = fit(config, progress=False, log=quiet)
    cfg = result.model.config
    assert (cfg.in_channels, cfg.image_size, cfg.n_classes, cfg.conv_channels, cfg.primary_types) == (2, 32, 5, 256, 32)
    assert result.model.preset == "smallnorb" and len(result.history) == 1
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
